import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import worldsim.train.dynamics as td
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig
from worldsim.train.dynamics import DynamicsTrainConfig, batch_loss, train_dynamics
from worldsim.train.open_loop import OpenLoopProbe
from worldsim.train.samplers import Sequences


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dyn")
    generate(GenerateSpec(scene="Reacher-v5", out=str(root / "data"), episodes=5, seed=1, shard_size=5, max_steps=8),
             progress_bar=False)
    torch.manual_seed(0)
    Tokenizer(TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))).save(root / "tok")
    return root


@pytest.mark.parametrize("preset", ["dense", "v4", "v4-lite", "mlp"])
def test_train_resume_and_step(setup, tmp_path, preset):
    cfg = DynamicsTrainConfig(open_loop_horizon=0, steps=2, batch_size=2, save_every=1, warmup=1, val_batches=1, state_batch=8,
                              state_pretrain=2)
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
    assert wm.cfg.preset == preset and wm.cfg.dynamics.prune == (preset != "dense")
    assert float(wm.state_std.min()) > 0
    # Rollout states are bounded by the training data's range, widened by half of it on each side.

    st = EpisodeDataset(setup / "data").arrays["states"]
    lo, hi = torch.tensor(wm.cfg.state_low), torch.tensor(wm.cfg.state_high)
    assert (lo <= torch.from_numpy(st.min(0)).float() + 1e-6).all() and (hi >= torch.from_numpy(st.max(0)).float() - 1e-6).all()
    if preset in ("v4-lite", "mlp"):  # the head factorized over the tokenizer's own FSQ levels
        assert wm.cfg.dynamics.code_levels == (5, 4, 3)
    # The mlp baseline's state comes from its pathway; every other preset's from the transformer.
    assert (wm.pathway is not None) == (preset == "mlp") and (wm.dynamics.state_head is None) == (preset == "mlp")
    tokens = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    h = wm.start(tokens, torch.zeros(1, 1, wm.cfg.dynamics.state_dim))
    codes, state, _, _ = wm.step(h, torch.zeros(1, wm.cfg.dynamics.action_dim))
    assert codes.shape == (1, 8, 8) and int(codes.max()) < 60 and torch.isfinite(state).all()


def test_resume_continues_only_the_same_run(setup, tmp_path):
    cfg = DynamicsTrainConfig(open_loop_horizon=0, steps=1, batch_size=2, save_every=1, warmup=1, val_batches=1)
    kw = dict(preset="dense", device="cpu", context=2, progress=False)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "run", cfg=cfg, **kw)
    before = load_checkpoint(tmp_path / "run.train").tensors
    # Other training arguments, another preset or another context: refused with the differences named.
    with pytest.raises(ValueError, match=r"holds another run \(train_config.lr: begun with 0.001, asked for 0.01\)"):
        train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "run", cfg=cfg.replace(lr=1e-2), **kw)
    with pytest.raises(ValueError, match=r"model_config.dynamics: begun with .*; only --steps may change"):
        train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "run", cfg=cfg,
                       **{**kw, "context": 3})
    with pytest.raises(ValueError, match=r"model_config.preset: begun with 'dense', asked for 'v4'"):
        train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "run", cfg=cfg, **{**kw, "preset": "v4"})
    after = load_checkpoint(tmp_path / "run.train").tensors
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was trained on or written
    # More steps resume the same run.
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "run", cfg=cfg.replace(steps=2), **kw)
    assert load_checkpoint(tmp_path / "run").extra["steps"] == 2


def test_transitions_never_cross_an_episode_end(setup):


    data = EpisodeDataset(setup / "data")
    st, act = data.arrays["states"], data.arrays["actions"]
    wm = WorldModel(WorldModelConfig(scene="test", tokenizer=TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3)),
                                     dynamics=DynamicsConfig(state_dim=st.shape[1], action_dim=act.shape[1],
                                                             codebook_size=60, width=32, layers=2, heads=2)))
    tr = Sequences([data], wm, unroll=1)  # identity normalisation (mean 0, std 1)
    assert len(tr) == int(data.lengths.sum()) - len(data.lengths)  # every frame that has an action
    pairs = {(tr.state[i].numpy().tobytes(), tr.state[i + 1].numpy().tobytes()) for i in tr.starts.tolist()}
    for o, n in zip(data.offsets, data.lengths):
        for t in range(n - 1):
            assert (st[o + t].astype(np.float32).tobytes(), st[o + t + 1].astype(np.float32).tobytes()) in pairs
        if o + n < len(st):  # the last frame of an episode and the first of the next are no transition
            assert (st[o + n - 1].astype(np.float32).tobytes(), st[o + n].astype(np.float32).tobytes()) not in pairs
    batch = tr.sample(16, np.random.default_rng(0))
    states, actions = batch["states"], batch["actions"]
    assert states.shape == (16, 2, st.shape[1]) and actions.shape == (16, 1, act.shape[1])
    # A state-only read (for --state-data) skips the frames and gives the same transitions.
    lean = EpisodeDataset(setup / "data", frames=False)
    assert "frames" not in lean.arrays and np.array_equal(lean.arrays["states"], st)
    other = Sequences([lean], wm, unroll=1)
    assert torch.equal(other.state, tr.state) and torch.equal(other.starts, tr.starts)


def test_cli_train_dynamics(setup, tmp_path):
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "dense", "--out", str(tmp_path / "d"), "--steps", "1", "--batch-size", "2", "--context", "2",
                 "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "v9", "--out", str(tmp_path / "e"), "--steps", "1", "--quiet", "--device", "cpu"]) == 2
    # The mlp baseline with its own options: pruning capacity and the state pathway's fitting.
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "mlp", "--out", str(tmp_path / "f"), "--steps", "1", "--batch-size", "2", "--context", "2",
                 "--capacity", "0.25", "--state-batch", "4", "--state-pretrain", "1", "--quiet", "--device", "cpu"]) == 0
    wm = WorldModel.from_pretrained(tmp_path / "f")
    assert wm.cfg.dynamics.capacity == 0.25 and wm.cfg.dynamics.frame_head == "factorized"
    assert not wm.cfg.dynamics.state_head and wm.dynamics.state_head is None and wm.pathway is not None
    assert main(["train", "dynamics", "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset",
                 "mlp", "--out", str(tmp_path / "g"), "--steps", "1", "--batch-size", "2", "--context", "2",
                 "--state-residual", "--quiet", "--device", "cpu"]) == 0
    assert WorldModel.from_pretrained(tmp_path / "g").dynamics.state_head is not None
    r = subprocess.run([sys.executable, "benchmarks/pathway_alone.py", str(tmp_path / "g"), str(tmp_path / "h")],
                       capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not WorldModel.from_pretrained(tmp_path / "h").dynamics.state_head.weight.detach().any()
    assert load_checkpoint(tmp_path / "f").extra["train_config"]["state_pretrain"] == 1


def test_state_data_adds_transitions_of_the_same_scene_only(setup, tmp_path):

    cfg = DynamicsTrainConfig(steps=1, batch_size=2, warmup=1, val_batches=1, state_batch=4)
    kw = dict(cfg=cfg, device="cpu", context=2, progress=False)
    data, tok = str(setup / "data"), str(setup / "tok")
    train_dynamics(data, tok, tmp_path / "a", preset="mlp", state_data=[data], **kw)
    assert load_checkpoint(tmp_path / "a").extra["state_data"] == [data]
    other = tmp_path / "other"
    shutil.copytree(setup / "data", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["scene_config_hash"] = "0" * 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="scene_config_hash"):
        train_dynamics(data, tok, tmp_path / "b", preset="mlp", state_data=[str(other)], **kw)
    with pytest.raises(ValueError, match="state pathway"):
        train_dynamics(data, tok, tmp_path / "c", preset="v4", state_data=[data], **kw)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes_keep_replicas_equal(setup, tmp_path):
    # torchrun lives beside this interpreter (the venv's bin/, which may not be on PATH).
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun (installed with torch) not found"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "worldsim", "train", "dynamics",
                        "--data", str(setup / "data"), "--tokenizer", str(setup / "tok"), "--preset", "v4",
                        "--out", str(tmp_path / "ddp"), "--steps", "3", "--batch-size", "2", "--context", "2",
                        "--save-every", "3", "--open-loop-horizon", "0", "--quiet", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp").extra["steps"] == 3


@pytest.mark.parametrize("preset", ["v4", "mlp"])
def test_killed_run_resumes_to_the_same_weights(setup, tmp_path, monkeypatch, preset):
    """Sampler, corruption and transition streams are checkpointed or step-seeded, so resuming
    changes nothing."""

    cfg = DynamicsTrainConfig(open_loop_horizon=0, steps=4, batch_size=2, save_every=2, warmup=1, val_batches=1, state_batch=8,
                              state_pretrain=2)
    kw = dict(preset=preset, cfg=cfg, device="cpu", context=3, progress=False)
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
    # The validation windows are the run's own, so the resumed run reports what the straight one does.
    ea, eb = load_checkpoint(tmp_path / "straight").extra, load_checkpoint(tmp_path / "killed").extra
    val = sorted(k for k in ea if k.startswith("val_"))
    assert "val_token_acc" in val and {k: ea[k] for k in val} == {k: eb[k] for k in val}


def test_state_noise_perturbs_inputs_only_in_training():
    """Noise on the input states changes the training loss (the targets stay the true next states),
    leaves evaluation alone, and never touches static dimensions."""

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


def test_rollout_steps_add_the_k_step_loss_and_resume_exactly(setup, tmp_path):
    cfg = DynamicsTrainConfig(steps=3, batch_size=2, save_every=1, warmup=1, val_batches=1, rollout_steps=3)
    kw = dict(preset="v4", device="cpu", context=2, progress=False)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "straight", cfg=cfg, **kw)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "resumed", cfg=cfg.replace(steps=2), **kw)
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "resumed", cfg=cfg, **kw)
    a, b = load_checkpoint(tmp_path / "straight").tensors, load_checkpoint(tmp_path / "resumed").tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The K-step loss changes what the transformer learns.
    train_dynamics(str(setup / "data"), str(setup / "tok"), tmp_path / "off", cfg=cfg.replace(rollout_steps=0), **kw)
    c = load_checkpoint(tmp_path / "off").tensors
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("dynamics.blocks."))


def test_state_only_windows_train_the_transformer_from_frameless_data(setup, tmp_path):
    states = tmp_path / "states"
    generate(GenerateSpec(scene="Reacher-v5", out=str(states), episodes=4, seed=7, shard_size=4, max_steps=8,
                          frames=False), progress_bar=False)
    cfg = DynamicsTrainConfig(steps=3, batch_size=2, save_every=1, warmup=1, val_batches=1, state_only_batch=4)
    kw = dict(preset="v4", device="cpu", context=2, progress=False, state_data=[str(states)])
    data, tok = str(setup / "data"), str(setup / "tok")
    train_dynamics(data, tok, tmp_path / "straight", cfg=cfg, **kw)
    train_dynamics(data, tok, tmp_path / "resumed", cfg=cfg.replace(steps=2), **kw)
    train_dynamics(data, tok, tmp_path / "resumed", cfg=cfg, **kw)
    a, b = load_checkpoint(tmp_path / "straight").tensors, load_checkpoint(tmp_path / "resumed").tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    train_dynamics(data, tok, tmp_path / "off", cfg=cfg.replace(state_only_batch=0), **{**kw, "state_data": ()})
    c = load_checkpoint(tmp_path / "off").tensors
    assert any(not torch.equal(a[k], c[k]) for k in a if ".attn." in k)


def test_frameless_windows_unroll_through_the_cache_and_resume_exactly(setup, tmp_path):
    cfg = DynamicsTrainConfig(steps=2, batch_size=2, save_every=1, warmup=1, val_batches=1, state_only_batch=3,
                              state_rollout_steps=3, rollout_steps=2, rollout_batch=1)
    kw = dict(preset="v4-lite", device="cpu", context=2, progress=False)
    data, tok = str(setup / "data"), str(setup / "tok")
    metrics = train_dynamics(data, tok, tmp_path / "straight", cfg=cfg, **kw)
    train_dynamics(data, tok, tmp_path / "resumed", cfg=cfg.replace(steps=1), **kw)
    train_dynamics(data, tok, tmp_path / "resumed", cfg=cfg, **kw)
    a, b = load_checkpoint(tmp_path / "straight").tensors, load_checkpoint(tmp_path / "resumed").tensors
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(tmp_path / "straight").extra["train_config"]["state_rollout_steps"] == 3
    assert "val_state_mse" in metrics
    # Teacher-forced frameless windows instead give other weights.
    train_dynamics(data, tok, tmp_path / "forced", cfg=cfg.replace(state_rollout_steps=0), **kw)
    c = load_checkpoint(tmp_path / "forced").tensors
    assert any(not torch.equal(a[k], c[k]) for k in a if ".attn." in k)


def test_init_starts_the_transformer_from_another_world(setup, tmp_path):
    cfg = DynamicsTrainConfig(steps=1, batch_size=2, save_every=1, warmup=1, val_batches=1, lr=1e-9,
                              balance=False)  # nothing but the optimiser moves the weights, and barely
    data, tok = str(setup / "data"), str(setup / "tok")
    kw = dict(device="cpu", context=2, progress=False)
    train_dynamics(data, tok, tmp_path / "mlp", preset="mlp", cfg=cfg.replace(lr=1e-3, balance=True), **kw)
    train_dynamics(data, tok, tmp_path / "grown", preset="v4-lite", cfg=cfg, init=str(tmp_path / "mlp"), **kw)
    src, dst = WorldModel.from_pretrained(tmp_path / "mlp"), WorldModel.from_pretrained(tmp_path / "grown")
    assert dst.pathway is None and dst.dynamics.state_head is not None
    ours = dst.dynamics.state_dict()
    for name, t in src.dynamics.state_dict().items():
        torch.testing.assert_close(ours[name], t, rtol=1e-4, atol=1e-5, msg=name)
    assert load_checkpoint(tmp_path / "grown").extra["init"] == str(tmp_path / "mlp")
    # A world over another tokenizer is refused before any work.
    torch.manual_seed(1)
    Tokenizer(TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))).save(tmp_path / "tok2")
    with pytest.raises(ValueError, match="tokenizer"):
        train_dynamics(data, str(tmp_path / "tok2"), tmp_path / "bad", preset="v4-lite", cfg=cfg,
                       init=str(tmp_path / "mlp"), **kw)
    assert not (tmp_path / "bad").exists()


def test_physics_first_stages_log_the_open_loop_score_and_keep_the_best(setup, tmp_path, monkeypatch):
    """physics (frameless teacher forcing) -> rollout (K ramped) -> frames (physics loss kept): each run
    logs the held-out open-loop score at every validation and its output is the best-scoring step."""
    base = dict(steps=3, batch_size=4, save_every=1, warmup=1, val_batches=1, open_loop_horizon=5, val_fraction=0.4)
    data, tok = str(setup / "data"), str(setup / "tok")
    kw = dict(device="cpu", context=2, progress=False, preset="v4-lite")
    with pytest.raises(ValueError, match="--init"):
        train_dynamics(data, tok, tmp_path / "r", cfg=DynamicsTrainConfig(stage="rollout", rollout_steps=3, **base), **kw)
    # A scripted score: best at step 2, so the output is step 2's weights whatever comes after.
    scores = iter([1.0, 5.0, 2.0, 2.0])
    real_call = OpenLoopProbe.__call__

    def scripted(self, wm, frames=False):
        return real_call(self, wm, frames) | {"open_score": next(scores)}

    monkeypatch.setattr(OpenLoopProbe, "__call__", scripted)
    train_dynamics(data, tok, tmp_path / "phys", cfg=DynamicsTrainConfig(stage="physics", state_noise=0.01, **base), **kw)
    monkeypatch.setattr(OpenLoopProbe, "__call__", real_call)
    ck = load_checkpoint(tmp_path / "phys")
    assert ck.extra["best_step"] == ck.extra["steps"] == 2 and ck.extra["open_score"] == 5.0
    lines = [json.loads(x) for x in (tmp_path / "phys.log" / "metrics.jsonl").read_text().splitlines()]
    scored = [x for x in lines if "open_valid_horizon" in x]
    assert [x["step"] for x in scored] == [1, 2, 3] and all("open_nrmse_h1" in x for x in scored)
    assert "state_only_loss" in lines[0] and "ce" not in lines[0]  # no frame was read
    roll = DynamicsTrainConfig(stage="rollout", rollout_steps=4, rollout_ramp=2, state_only_batch=2, **base)
    train_dynamics(data, tok, tmp_path / "roll", cfg=roll, init=str(tmp_path / "phys"), **kw)
    lines = [json.loads(x) for x in (tmp_path / "roll.log" / "metrics.jsonl").read_text().splitlines()]
    assert [x["unroll_k"] for x in lines] == [2.0, 4.0, 4.0] and all("unrolled_state_mse" in x for x in lines)
    frames = DynamicsTrainConfig(stage="frames", state_only_batch=2, rollout_prob=0.0, **base)
    train_dynamics(data, tok, tmp_path / "frames", cfg=frames, init=str(tmp_path / "roll"), **kw)
    lines = [json.loads(x) for x in (tmp_path / "frames.log" / "metrics.jsonl").read_text().splitlines()]
    assert all("ce" in x and "state_only_loss" in x for x in lines) and "open_token_acc" in lines[-1]
    # The frames stage keeps the best frame-token accuracy among checkpoints whose physics holds within
    # physics_tolerance of the starting weights' (its first evaluation, at step 0).
    ck = load_checkpoint(tmp_path / "frames")
    held = [x for x in lines if x["open_valid_mean"] >= 0.95 * ck.extra["physics_reference"]]
    want = max([x["open_token_acc"] for x in held], default=-1.0)
    assert ck.extra["open_score"] == pytest.approx(ck.extra["open_token_acc"]) and ck.extra["open_token_acc"] >= want
    with pytest.raises(ValueError, match="state_only_batch"):
        DynamicsTrainConfig(stage="frames")


def test_frames_stage_with_frozen_physics_moves_only_the_frame_weights(setup, tmp_path):
    base = dict(steps=3, batch_size=4, save_every=1, warmup=1, val_batches=1, open_loop_horizon=5, val_fraction=0.4,
                weight_decay=0.0, lr=1e-2)
    data, tok = str(setup / "data"), str(setup / "tok")
    kw = dict(device="cpu", context=2, progress=False, preset="v4")  # pruned and MoE: scorers and a routing bias
    train_dynamics(data, tok, tmp_path / "phys", cfg=DynamicsTrainConfig(stage="physics", **base), **kw)
    frozen = DynamicsTrainConfig(stage="frames", freeze_physics=True, open_loop_episodes=4, **base)
    # Every step's weights are the output (a score that only rises), so the last step is checked.
    train_dynamics(data, tok, tmp_path / "frames", cfg=frozen.replace(physics_tolerance=0.99),
                   init=str(tmp_path / "phys"), **kw)
    a = WorldModel.from_pretrained(tmp_path / "phys").dynamics.state_dict()
    b = load_checkpoint(tmp_path / "frames.train").tensors
    frame_only = ("code_emb.", "pos_emb", "frame_head.", "scorer.")
    # The MoE's load counters count routed tokens; its routing bias must not move.
    moved = {k for k in a if "load_acc" not in k and not torch.equal(a[k].float(), b[f"dynamics.{k}"].float())}
    assert moved and all(any(f in k for f in frame_only) or k == "type_emb" for k in moved), moved
    torch.testing.assert_close(a["type_emb"][:2], b["dynamics.type_emb"][:2].to(a["type_emb"].dtype), rtol=0, atol=0)
    with pytest.raises(ValueError, match="weight_decay"):
        DynamicsTrainConfig(stage="frames", freeze_physics=True, weight_decay=0.05)
