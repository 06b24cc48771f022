import subprocess
import sys
from pathlib import Path

import pytest

from worldsim.cli import build_parser, main


def test_subpackages_import_from_outside_the_repo(tmp_path):
    code = "import worldsim, worldsim.model, worldsim.kernels, worldsim.envs, worldsim.eval; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for top in ("model", "eval", "envs", "kernels"):
        r = subprocess.run([sys.executable, "-c", f"import {top}"], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"a top-level {top!r} is installed"


def test_version(capsys):
    import worldsim

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"worldsim {worldsim.__version__}"


def _all_commands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_commands(sub, (*prefix, name))


@pytest.mark.parametrize("cmd", [(), *_all_commands(build_parser())], ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: worldsim" in capsys.readouterr().out


def test_console_script_runs():
    # The console script lives beside this interpreter (the venv's bin/, which may not be on PATH).
    script = Path(sys.executable).parent / "worldsim"
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "scenes" in r.stdout


def test_scenes_and_info_commands(capsys):
    import json

    assert main(["scenes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["scene"] for r in rows} >= {"InvertedPendulum-v5", "Reacher-v5", "Pusher-v5", "bounce"}
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device_auto"] in ("cpu", "cuda")


def test_render_writes_a_real_video(tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "r.mp4"
    assert main(["render", "--scene", "Reacher-v5", "--steps", "10", "--scale", "2", "--out", str(out)]) == 0
    with imageio.get_reader(out) as reader:
        frames = list(reader.iter_data())
    assert len(frames) == 11 and frames[0].shape == (128, 128, 3)
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_bad_input_is_a_clear_error(capsys):
    assert main(["render", "--scene", "nope", "--out", "x.mp4"]) == 2
    assert "known scenes" in capsys.readouterr().err
