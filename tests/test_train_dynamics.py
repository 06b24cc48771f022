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


def test_state_noise_perturbs_inputs_only_in_training():
    """Noise on the input states changes the training loss (the targets stay the true next states),
    leaves evaluation alone, and never touches static dimensions."""
    from worldsim.model.dynamics import DynamicsConfig
    from worldsim.model.world_model import WorldModelConfig
    from worldsim.train_dynamics import batch_loss

    dyn = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2,
                         context=2, ffn_hidden=64)
    torch.manual_seed(0)
    wm = WorldModel(WorldModelConfig(scene="test", preset="dense", tokenizer=TokenizerConfig(
        channels=(8, 16, 16), levels=(5, 4, 3)), dynamics=dyn, static_state_dims=(2,)))
    g = torch.Generator().manual_seed(0)
    batch = {"codes": torch.randint(0, 60, (4, 3, 64), generator=g), "states": torch.randn(4, 3, 3, generator=g),
             "actions": torch.randn(4, 3, 2, generator=g), "rewards": torch.randn(4, 3, generator=g),
             "terminated": torch.zeros(4, 3, dtype=torch.bool), "act_mask": torch.ones(4, 3, dtype=torch.bool)}
    quiet = DynamicsTrainConfig(corrupt_prob=0.0, rollout_prob=0.0)
    noisy = quiet.replace(state_noise=0.5)
    seen = []
    hook = wm.dynamics.state_in.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    wm.train()
    clean_loss, _ = batch_loss(wm, batch, quiet, torch.Generator().manual_seed(1))
    noisy_loss, _ = batch_loss(wm, batch, noisy, torch.Generator().manual_seed(1))
    wm.eval()
    eval_a, _ = batch_loss(wm, batch, quiet)
    eval_b, _ = batch_loss(wm, batch, noisy)
    hook.remove()
    assert not torch.allclose(clean_loss, noisy_loss) and torch.equal(eval_a, eval_b)
    delta = seen[1] - seen[0]  # noisy minus clean inputs of the two training passes
    assert delta[..., :2].abs().max() > 0.1 and torch.equal(delta[..., 2], torch.zeros_like(delta[..., 2]))
    with pytest.raises(ValueError, match="state_noise must be >= 0"):
        DynamicsTrainConfig(state_noise=-0.1)
