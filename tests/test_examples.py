"""The examples run end to end with tiny budgets."""

import importlib.util
import json
from pathlib import Path

import pytest
from stable_baselines3 import PPO

from worldsim.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_train_in_world_smoke(tmp_path, capsys, monkeypatch, tiny_world):
    ckpt = tiny_world(tmp_path / "wm")
    out = tmp_path / "agents"
    summary = load("train_in_world").main([
        "--scene", "Reacher-v5", "--checkpoint", str(ckpt), "--steps", "32", "--num-envs", "2",
        "--episodes", "2", "--out", str(out), "--quiet", "--reward", "task"])
    printed = capsys.readouterr().out
    for name in ("world-trained", "random", "real-trained", "exploitation gap"):
        assert name in printed
    assert len(summary["world-trained"]["real"]) == 2 and len(summary["random"]["real"]) == 2
    for name in ("world", "real"):
        assert PPO.load(out / name / "agent.zip", device="cpu").observation_space.shape == (10,)
        assert json.loads((out / name / "settings.json").read_text())["algo"] == "ppo"
    assert main(["agent", "eval", str(out / "world" / "agent.zip"), "--episodes", "2", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    # The same held-out seeds as the example's own scoring on the real env.
    assert scored["where"] == "MuJoCo" and scored["returns"] == pytest.approx(summary["world-trained"]["real"], rel=1e-4)
    # In the world it trained in, with its reward (both from settings.json), as the example scored it.
    assert main(["agent", "eval", str(out / "world" / "agent.zip"), "--world", "--episodes", "2", "--device", "cpu",
                 "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["where"] == f"world {ckpt}, task reward"
    assert scored["returns"] == pytest.approx(summary["world-trained"]["world"], abs=1e-3)
    assert json.loads((out / "results.json").read_text())["settings"]["steps"] == 32
    # The settings name the world by an absolute path: the agent scores in it from any directory.
    assert json.loads((out / "world" / "settings.json").read_text())["checkpoint"] == str(ckpt)
    monkeypatch.chdir(tmp_path / "wm")
    assert main(["agent", "eval", str(out / "world" / "agent.zip"), "--world", "--episodes", "2", "--device", "cpu",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["returns"] == pytest.approx(summary["world-trained"]["world"], abs=1e-3)


def _fake_run(args, checkpoint, out):
    """Stands in for the training: writes what a run writes, and the settings it would record."""
    for name in ("world",) if args.skip_real else ("world", "real"):
        (out / name).mkdir()
        (out / name / "settings.json").write_text(json.dumps({"checkpoint": checkpoint}))
    (out / "results.json").write_text(json.dumps({"settings": {"skip_real": args.skip_real}}))
    return {}


def test_train_in_world_checks_every_argument_before_training(tmp_path, capsys, monkeypatch, tiny_world):
    mod = load("train_in_world")
    monkeypatch.setattr(mod, "run", None)  # training would fail loudly
    (tmp_path / "file").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("mine")
    (tmp_path / "earlier" / "world").mkdir(parents=True)
    ckpt = str(tiny_world(tmp_path / "wm"))
    for argv, message in [
        (["--scene", "bounce"], "--scene 'bounce' has no Gymnasium env to deploy the agent on"),
        (["--out", str(tmp_path / "file")], "exists and is not a directory"),
        (["--out", str(tmp_path / "notes"), "--force"], "holds thesis.tex, which no run of this example writes"),
        (["--out", str(tmp_path / "earlier")], "holds an earlier run (world); refusing to replace it"),
        (["--scene", "InvertedPendulum-v5", "--checkpoint", ckpt], f"--checkpoint {ckpt} is a world of scene 'Reacher-v5'"),
    ]:
        with pytest.raises(SystemExit) as exc:
            mod.main(["--steps", "8", *argv] + ([] if "--out" in argv else ["--out", str(tmp_path / "new")]))
        assert exc.value.code == 2 and message in capsys.readouterr().err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "file", "notes", "wm"]
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "mine"


def test_train_in_world_replaces_an_earlier_run_whole(tmp_path, monkeypatch, tiny_world):
    mod = load("train_in_world")
    monkeypatch.setattr(mod, "run", _fake_run)
    monkeypatch.chdir(tmp_path)
    tiny_world(tmp_path / "wm")
    out = tmp_path / "agents"
    mod.main(["--scene", "Reacher-v5", "--checkpoint", "wm", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["real", "results.json", "world"]
    assert json.loads((out / "world" / "settings.json").read_text())["checkpoint"] == str(tmp_path / "wm")
    with pytest.raises(SystemExit):
        mod.main(["--scene", "Reacher-v5", "--out", str(out), "--skip-real"])
    assert sorted(p.name for p in out.iterdir()) == ["real", "results.json", "world"]
    # With --force the earlier run goes whole: no real/ of the earlier run beside the new results.
    mod.main(["--scene", "Reacher-v5", "--out", str(out), "--skip-real", "--force"])
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "world"]
    assert json.loads((out / "world" / "settings.json").read_text())["checkpoint"] is None
    mod.main(["--scene", "Reacher-v5", "--checkpoint", "Reacher-v5", "--out", str(out), "--force"])
    assert json.loads((out / "world" / "settings.json").read_text())["checkpoint"] == "worldsim:world-reacher"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agents", "wm"]  # no temporary directory left
