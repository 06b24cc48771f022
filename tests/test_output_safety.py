"""Nothing of the user's is lost or silently wrong: output paths, name resolution, checksums, crash-safe
saves, references inside checkpoints, file modes and the CLI's failures."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import mujoco
import pytest
import torch

import worldsim.envs
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint, recover_checkpoint, save_checkpoint
from worldsim.core.config import ConfigBase
from worldsim.core.registry import SHIPPED, WEIGHTS_DIR, resolve_checkpoint
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel
from worldsim.train.state import load_train_state, prepare_outputs

TINY_TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))


@dataclass(frozen=True)
class NetConfig(ConfigBase):
    width: int = 4


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 4)


def _precious(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("precious")
    return root


def _untouched(root: Path) -> bool:
    return sorted(p.name for p in root.iterdir()) == ["notes.txt", "sub"] and (root / "notes.txt").read_text() == \
        "precious"


# --- 1. outputs are written only where nothing would be lost -------------------------------------


@pytest.mark.parametrize("argv", [
    ["train", "tokenizer", "--data", "D"],
    ["train", "dynamics", "--data", "D", "--tokenizer", "Reacher-v5"],
    ["train", "pathway", "--checkpoint", "Reacher-v5", "--state-data", "D"],
    ["train", "outcome", "--checkpoint", "Reacher-v5", "--state-data", "D"],
    ["train", "renderer", "--checkpoint", "Reacher-v5", "--data", "D"],
    ["export", "Reacher-v5"],
])
def test_every_writer_refuses_a_directory_holding_other_files(tmp_path, capsys, argv):
    keep = _precious(tmp_path / "keep")
    # The refusal comes before any work: the data named does not even exist.
    assert main([*argv, "--out", str(keep), "--steps", "2"][: None if argv[0] == "train" else -2]) == 2
    err = capsys.readouterr().err
    assert f"--out '{keep}' holds notes.txt, sub" in err and "refusing to replace it" in err
    assert _untouched(keep) and sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    # --force never replaces a directory holding other files.
    assert main([*argv, "--out", str(keep), "--force"]) == 2 and _untouched(keep)


def test_model_saves_refuse_datasets_files_and_other_kinds(tmp_path):
    tok = Tokenizer(TINY_TOK)
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    (data / "shard_00000.h5").write_bytes(b"h5")
    with pytest.raises(ValueError, match=r"holds manifest.json, shard_00000.h5, which no worldsim checkpoint holds"):
        tok.save(data)
    assert sorted(p.name for p in data.iterdir()) == ["manifest.json", "shard_00000.h5"]
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a checkpoint directory"):
        tok.save(f)
    assert f.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["data", "file"]
    # A checkpoint of another kind is replaced only with force; one of the same kind is replaced.
    save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    with pytest.raises(ValueError, match=r"holds a 'test' checkpoint, and this writes a 'tokenizer' one.*--force"):
        tok.save(tmp_path / "ck")
    tok.save(tmp_path / "ck", force=True)
    tok.save(tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck").kind == "tokenizer"
    empty = tmp_path / "empty"
    empty.mkdir()
    tok.save(empty)
    assert load_checkpoint(empty).kind == "tokenizer"


@pytest.mark.parametrize("argv", [["train", "tokenizer", "--data", "D"], ["eval", "--scene", "Reacher-v5"],
                                  ["export", "Reacher-v5"]])
def test_an_unwritable_out_is_refused_before_any_work(capsys, argv):
    assert main([*argv, "--out", "/proc/worldsim-out"]) == 1  # /proc takes no new files, even from root
    err = capsys.readouterr().err
    assert err.startswith("worldsim: error: --out '/proc/worldsim-out' cannot be written") and err.count("\n") == 1


def test_videos_never_overwrite_a_file_without_force(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "notes.mp4"
    notes.write_text("notes")
    (tmp_path / "dir.mp4").mkdir()
    real_make_scene = worldsim.envs.make_scene
    monkeypatch.setattr(worldsim.envs, "make_scene", None)  # any work would fail loudly
    monkeypatch.setattr("worldsim.cli.view.paired_rollout", None)
    for argv in (["render", "--scene", "bounce"], ["rollout", "--scene", "Reacher-v5"]):
        assert main([*argv, "--out", str(notes)]) == 2
        assert "notes.mp4' exists; refusing to overwrite it (choose another --out, or pass --force" in \
            capsys.readouterr().err
        assert main([*argv, "--out", str(tmp_path / "dir.mp4"), "--force"]) == 2
        assert "is a directory; refusing to replace it" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["rollout", "--out", str(tmp_path / "new.mp4"), "--fps", "0"])
    assert exc.value.code == 2 and "--fps: expected a number > 0, got '0'" in capsys.readouterr().err
    assert notes.read_text() == "notes"
    monkeypatch.setattr(worldsim.envs, "make_scene", real_make_scene)
    assert main(["render", "--scene", "bounce", "--steps", "2", "--scale", "1", "--out", str(notes), "--force"]) == 0
    assert notes.read_bytes()[4:8] == b"ftyp" and sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4", "notes.mp4"]


# --- 2. scene names resolve to the shipped weights; a path is a path ---------------------------


def test_a_folder_named_like_a_scene_never_replaces_the_shipped_model(tmp_path, monkeypatch, tiny_world):
    monkeypatch.chdir(tmp_path)
    tiny_world(tmp_path / "Reacher-v5")
    (tmp_path / "Pusher-v5").mkdir()
    assert resolve_checkpoint("Reacher-v5", "world_model") == WEIGHTS_DIR / "world-reacher"
    assert resolve_checkpoint("Reacher-v5", "tokenizer") == WEIGHTS_DIR / "tokenizer-reacher"
    assert resolve_checkpoint("./Reacher-v5", "world_model") == Path("./Reacher-v5")
    assert resolve_checkpoint(Path("Reacher-v5"), "world_model") == Path("Reacher-v5")
    shipped = WorldModel.from_pretrained("Reacher-v5")
    assert shipped.cfg == WorldModel.from_pretrained(WEIGHTS_DIR / "world-reacher").cfg
    assert WorldModel.from_pretrained("./Reacher-v5").cfg.dynamics.width == 32  # the tiny one
    monkeypatch.delitem(SHIPPED["world_model"], "Pusher-v5")  # a scene with no world shipped
    with pytest.raises(ValueError, match=r"no world_model is shipped for scene 'Pusher-v5'.*write ./Pusher-v5"):
        resolve_checkpoint("Pusher-v5", "world_model")


# --- 3. corrupt weights are refused at load; a non-finite step raises ----------------------------


def test_flipped_bytes_and_nan_tensors_are_refused(tmp_path, capsys):
    save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    f = tmp_path / "ck" / "model.safetensors"
    raw = bytearray(f.read_bytes())
    for i in range(len(raw) - 200, len(raw)):  # the tensor data, at the end of the file
        raw[i] ^= 0x5A
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"ck/model.safetensors: SHA-256 differs from the one in config.json"):
        load_checkpoint(tmp_path / "ck")
    bad = {"weight": torch.full((4, 3), float("nan")), "bias": torch.zeros(4)}
    save_checkpoint(tmp_path / "nan", bad, NetConfig(), kind="test")
    with pytest.raises(ValueError, match=r"tensor\(s\) weight hold NaN or infinite values"):
        load_checkpoint(tmp_path / "nan")
    assert main(["info", str(tmp_path / "nan")]) == 2
    assert "hold NaN or infinite values" in capsys.readouterr().err


def test_a_checkpoint_without_checksums_loads_with_a_warning(tmp_path):
    save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    del meta["files"]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no checksums"):
        load_checkpoint(tmp_path / "ck")


def test_a_world_whose_step_goes_non_finite_raises(tmp_path, tiny_world):
    wm = WorldModel.from_pretrained(tiny_world(tmp_path / "w"))
    with torch.no_grad():  # weights that overflow float32 on the way out, as corrupt or diverged ones do
        wm.dynamics.reward_head.weight.fill_(3e38)
    tokens = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    h = wm.start(tokens, torch.zeros(1, 1, 10))
    with pytest.raises(FloatingPointError, match=r"step 0 gave a non-finite state or reward in rows \[0\]"):
        wm.step(h, torch.zeros(1, 2))


# --- 4. saves are crash-safe at every instant ---------------------------------------------------

_SAVE_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, torch
    import worldsim.core.outputs as out
    from worldsim.model.tokenizer import TokenizerConfig
    from worldsim.train.state import save_train_state
    if sys.argv[3] == "fallback":
        out._renameat2_exchange = lambda a, b: False
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 4)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_train_state(sys.argv[1], m, opt, TokenizerConfig(), kind="test", step=int(sys.argv[2]),
                     rng=np.random.default_rng(0), run={"data": ["x"]})
""")


def _save_state(path: Path, step: int, mode: str = "atomic", kill_at: str | None = None) -> int:
    env = dict(os.environ)
    if kill_at:
        env["WORLDSIM_TEST_KILL_AT"] = kill_at
    r = subprocess.run([sys.executable, "-c", _SAVE_SCRIPT, str(path), str(step), mode], env=env,
                       capture_output=True, text=True, timeout=120)
    return r.returncode


@pytest.mark.slow
@pytest.mark.parametrize("mode,stage,survivor", [
    ("atomic", "written", 1),        # the new state is whole beside the old one; the old is kept
    ("atomic", "swapped", 2),        # switched; the old one waits to be removed
    ("fallback", "written", 1),
    ("fallback", "moved-aside", 2),  # between the two renames: the name is empty for an instant
    ("fallback", "swapped", 2),
])
def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_state(tmp_path, mode, stage, survivor):
    state = tmp_path / "run.train"
    assert _save_state(state, 1, mode) == 0
    assert _save_state(state, 2, mode, kill_at=stage) == -9  # SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run.train"]
    assert leftovers  # the killed save left its directories behind
    prepare_outputs(tmp_path / "run", "test")  # what a trainer does first on a rerun
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.train"]
    m = torch.nn.Linear(3, 4)
    step, _, _ = load_train_state(state, m, torch.optim.AdamW(m.parameters()), TokenizerConfig, kind="test",
                                  run={"data": ["x"]})
    assert step == survivor


def test_recovery_leaves_a_live_process_alone(tmp_path):
    save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    live = tmp_path / f".ck.tmp-{os.getppid()}-abc"  # a save in progress in another process
    live.mkdir()
    dead = tmp_path / ".ck.old-999999999-abc"
    dead.mkdir()
    recover_checkpoint(tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "ck"]


# --- 13 / 14. references and fields inside a checkpoint; modes; the CLI's failures ---------------


def test_a_config_json_missing_a_field_is_named(tmp_path):
    save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    del meta["config"]
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"ck/config.json: missing field 'config'"):
        load_checkpoint(tmp_path / "ck", config_cls=NetConfig)


def test_tokenizer_references_stay_inside_the_checkpoint_or_the_shipped_weights(tmp_path, tiny_world):
    path = tiny_world(tmp_path / "w")
    meta = json.loads((path / "config.json").read_text())
    for ref in ("/etc", "../../other", "tok/../../x", "worldsim:nosuch"):
        meta["extra"]["tokenizer_ref"] = ref
        (path / "config.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=r"points outside the checkpoint directory|names no shipped weights"):
            WorldModel.from_pretrained(path)
    # A reference inside the checkpoint works, and says what is missing when the folder is gone.
    wm = WorldModel.from_pretrained(tiny_world(tmp_path / "w2"))
    wm.tokenizer.save(tmp_path / "w3" / "tok")
    with pytest.raises(ValueError, match="holds tok, which no worldsim checkpoint holds"):
        wm.save(tmp_path / "w3", tokenizer_ref="tok")  # a directory holding a folder is not replaced
    with pytest.raises(ValueError, match="points outside the checkpoint directory"):
        wm.save(tmp_path / "w4", tokenizer_ref="../w3/tok")
    assert not (tmp_path / "w4").exists()


def test_a_shipped_world_copied_alone_still_loads(tmp_path):
    shutil.copytree(WEIGHTS_DIR / "world-pendulum", tmp_path / "pendulum")
    copy = WorldModel.from_pretrained(tmp_path / "pendulum")
    ref = WorldModel.from_pretrained("InvertedPendulum-v5")
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), ref.state_dict().values()))
    # A tokenizer other than the one it was saved with is named, not loaded.
    meta = json.loads((tmp_path / "pendulum" / "config.json").read_text())
    assert meta["extra"]["tokenizer_ref"] == "worldsim:tokenizer-pendulum"
    meta["extra"]["tokenizer_ref"] = "worldsim:tokenizer-reacher"  # the same encoder, another decoder
    (tmp_path / "pendulum" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not the one this world was saved with"):
        WorldModel.from_pretrained(tmp_path / "pendulum")


@pytest.mark.parametrize("mask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_checkpoints_follow_the_umask(tmp_path, mask, dir_mode, file_mode):
    old = os.umask(mask)
    try:
        save_checkpoint(tmp_path / "ck", _net(), NetConfig(), kind="test")
    finally:
        os.umask(old)
    assert (tmp_path / "ck").stat().st_mode & 0o777 == dir_mode
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "ck").iterdir()} == {
        "config.json": file_mode, "model.safetensors": file_mode}


def test_expected_failures_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/x")

    monkeypatch.setattr(worldsim.envs, "make_scene", full_disk)
    assert main(["render", "--scene", "bounce", "--out", "x.mp4"]) == 1
    assert capsys.readouterr().err == "worldsim: error: No space left on device: /data/x\n"

    def no_gl(*a, **k):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(worldsim.envs, "make_scene", no_gl)
    assert main(["render", "--scene", "bounce", "--out", "x.mp4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("worldsim: error: rendering failed (FatalError: an OpenGL") and err.count("\n") == 1
    with pytest.raises(mujoco.FatalError):
        main(["--debug", "render", "--scene", "bounce", "--out", "x.mp4"])
