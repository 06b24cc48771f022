import os
import shutil
import subprocess
import sys

import pytest
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel
from worldsim.train_dynamics import DynamicsTrainConfig, train_dynamics


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dyn")
    generate(GenerateSpec(scene="Reacher-v5", out=str(root / "data"), episodes=5, seed=1, shard_size=5, max_steps=8),
             progress_bar=False)
    torch.manual_seed(0)
    Tokenizer(TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))).save(root / "tok")
    return root


@pytest.mark.parametrize("preset", ["dense", "v4"])
def test_train_resume_and_step(setup, tmp_path, preset):
    cfg = DynamicsTrainConfig(steps=2, batch_size=2, save_every=1, warmup=1, val_batches=1)
    out = tmp_path / preset
    metrics = train_dynamics(str(setup / "data"), str(setup / "tok"), out, preset=preset, cfg=cfg, device="cpu",
                             context=3, progress=False)
    assert {"val_token_acc", "val_state_mse"} <= set(metrics)
    assert load_checkpoint(out.with_name(preset + ".train")).extra["step"] == 2
    # A rerun with a larger budget resumes from step 2.
    train_dynamics(str(setup / "data"), str(setup / "tok"), out, preset=preset, cfg=cfg.replace(steps=3),
                   device="cpu", context=3, progress=False)
    assert load_checkpoint(out).extra["steps"] == 3
    wm = WorldModel.from_pretrained(out)
    assert wm.cfg.preset == preset and wm.cfg.dynamics.prune == (preset == "v4")
    assert float(wm.state_std.min()) > 0


def test_cli_train_dynamics(setup, tmp_path):
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "dense", "--out", str(tmp_path / "d"), "--steps", "1", "--batch-size", "2", "--context", "2",
                 "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "v9", "--out", str(tmp_path / "e"), "--steps", "1", "--quiet", "--device", "cpu"]) == 2


@pytest.mark.slow
def test_torchrun_two_cpu_processes_keep_replicas_equal(setup, tmp_path):
    # torchrun lives beside this interpreter (the venv's bin/, which may not be on PATH).
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun (installed with torch) not found"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "worldsim", "train", "dynamics",
                        "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset", "v4",
                        "--out", str(tmp_path / "ddp"), "--steps", "3", "--batch-size", "2", "--context", "2",
                        "--save-every", "3", "--quiet", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp").extra["steps"] == 3


def test_killed_run_resumes_to_the_same_weights(setup, tmp_path, monkeypatch):
    """Sampler and corruption streams are checkpointed or step-seeded, so resuming changes nothing."""
    import worldsim.train_dynamics as td

    cfg = DynamicsTrainConfig(steps=4, batch_size=2, save_every=2, warmup=1, val_batches=1)
    kw = dict(preset="v4", cfg=cfg, device="cpu", context=3, progress=False)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "straight", **kw)

    calls = {"n": 0}
    real_validate = td.validate

    def validate_then_die(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # at step 4, after the step-2 state was saved
            raise KeyboardInterrupt
        return real_validate(*a, **k)

    monkeypatch.setattr(td, "validate", validate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "killed", **kw)
    assert load_checkpoint(tmp_path / "killed.train").extra["step"] == 2
    monkeypatch.setattr(td, "validate", real_validate)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "killed", **kw)
    a, b = load_checkpoint(tmp_path / "straight").tensors, load_checkpoint(tmp_path / "killed").tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k
