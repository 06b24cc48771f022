import numpy as np
import pytest
import torch

import worldsim.train.loop as tl
import worldsim.train.parts as tp
from worldsim.cli import main
from worldsim.core.checkpoint import load_checkpoint
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.state_pathway import StatePathwayConfig
from worldsim.model.stats import world_model_info
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig
from worldsim.train.parts import (
    OutcomeTrainConfig,
    PathwayTrainConfig,
    RendererTrainConfig,
    train_outcome,
    train_pathway,
    train_renderer,
    with_outcome,
    with_renderer,
)
from worldsim.train.samplers import Frames, Outcomes, Sequences


def _world(path, pathway=16, scene="Reacher-v5", data=None, dims=(10, 2)):
    """A tiny mlp-baseline-like world (a state pathway), normalised by the data's statistics; `dims` are
    the scene's state and action sizes (Reacher's by default)."""
    dyn = DynamicsConfig(state_dim=dims[0], action_dim=dims[1], grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                         prune=True, capacity=0.5, prune_from=0, moe=True, experts=4, expert_groups=2, top_groups=1,
                         top_k=2, expert_hidden=16, shared_hidden=32, frame_head="factorized", code_levels=(5, 4, 3),
                         state_head=not pathway)
    torch.manual_seed(0)
    tok = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
    wm = WorldModel(WorldModelConfig(scene=scene, preset="mlp", tokenizer=tok, dynamics=dyn,
                                     static_state_dims=(4, 5) if dims[0] == 10 else (),
                                     state_low=(-50.0,) * dims[0], state_high=(50.0,) * dims[0],
                                     pathway=StatePathwayConfig(width=pathway) if pathway else None))
    wm.state_std.fill_(0.5)
    if data is not None:
        wm.state_mean.copy_(torch.from_numpy(data.state_mean))
        wm.state_std.copy_(torch.from_numpy(np.maximum(data.state_std, 1e-3)))
    return wm.save(path)


def kill_after_first_checkpoint(monkeypatch, run) -> None:
    """Run `run()` and kill it (KeyboardInterrupt) as it comes to save its second checkpoint."""

    calls = {"n": 0}
    real_save = tl.save_train_state

    def save_then_die(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_save(*a, **k)

    monkeypatch.setattr(tl, "save_train_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(tl, "save_train_state", real_save)


def killed_then_rerun_matches(monkeypatch, run, out, straight: WorldModel) -> None:
    """Kill `run()` after its first checkpoint, rerun it: the model it writes to `out` has the weights
    of `straight`, the uninterrupted run's."""
    kill_after_first_checkpoint(monkeypatch, run)
    run()
    resumed = WorldModel.from_pretrained(out)
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pathway")
    generate(GenerateSpec(scene="Reacher-v5", out=str(root / "data"), episodes=12, seed=1, shard_size=6, max_steps=10,
                          frames=False), progress_bar=False)
    _world(root / "world", data=EpisodeDataset(root / "data", frames=False))
    return root


def test_sequences_follow_one_episode(setup):
    data = EpisodeDataset(setup / "data", frames=False)
    wm = WorldModel.from_pretrained(setup / "world")
    seq = Sequences([data], wm, unroll=4)
    # Episodes of 10 actions (11 frames) each start 10 - 4 + 1 = 7 runs.
    assert len(seq) == 7 * 12
    batch = seq.sample(64, np.random.default_rng(0))
    states, actions = batch["states"], batch["actions"]
    assert states.shape == (64, 5, 10) and actions.shape == (64, 4, 2)
    raw = torch.from_numpy(data.arrays["states"]).float()
    for s, a in zip(wm.denormalize_state(states), actions):
        i = int(np.argmin(((raw - s[0]) ** 2).sum(-1).numpy()))
        ep = np.searchsorted(data.offsets, i, side="right") - 1
        assert i + 4 < data.offsets[ep] + data.lengths[ep]  # the run ends inside the episode
        torch.testing.assert_close(s, raw[i : i + 5], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, torch.from_numpy(data.arrays["actions"][i : i + 4]))
    with pytest.raises(ValueError, match="no training episode of .* has 11 actions"):
        Sequences([data], wm, unroll=11)


def test_one_unrolled_step_is_the_one_step_pathway_loss(setup):
    data = EpisodeDataset(setup / "data", frames=False)
    wm = WorldModel.from_pretrained(setup / "world")
    seq = Sequences([data], wm, unroll=1)
    assert len(seq) == 120  # every frame that has an action
    batch = seq.sample(32, np.random.default_rng(1))
    states, actions = batch["states"], batch["actions"]
    loss, logs = wm.pathway_loss(batch, clamp=False)  # as the dynamics trainer calls it
    per = logs["per_step"]
    delta = wm.pathway(states[:, 0], actions[:, 0])
    delta[:, [4, 5]] = 0  # the static dims
    torch.testing.assert_close(loss, (states[:, 0] + delta - states[:, 1]).pow(2).mean())
    assert per.shape == (1,)


def test_unrolled_loss_rolls_out_as_the_world_model_steps(setup, tmp_path):
    """Fed WorldModel.step's own rollout as targets, the unrolled loss is zero at every step: same
    pathway, same static dimensions, same clamp (bounds tight enough to bind here)."""
    data = EpisodeDataset(setup / "data", frames=False)
    _world(tmp_path / "w", data=data)
    wm0 = WorldModel.from_pretrained(tmp_path / "w")
    st = data.arrays["states"]
    lo, hi = st.min(0), st.max(0)
    mid, half = (lo + hi) / 2, (hi - lo) / 4  # half the data's range: rollouts hit the bounds
    wm = WorldModel(wm0.cfg.replace(state_low=tuple(mid - half), state_high=tuple(mid + half)))
    wm.load_state_dict(wm0.state_dict())
    wm.eval()
    g = torch.Generator().manual_seed(0)
    s0 = torch.from_numpy(st[:4]).float()[:, None]
    actions = torch.rand(4, 6, 2, generator=g) * 2 - 1
    h = wm.start(torch.zeros(4, 1, 8, 8, dtype=torch.long), s0)
    traj = [h.state[:, 0]]
    for k in range(6):
        wm.step(h, actions[:, k])
        traj.append(h.state[:, 0])
    traj = torch.stack(traj, 1)  # [4, 7, S] normalised
    low, high = wm.normalize_state(wm.state_low), wm.normalize_state(wm.state_high)
    assert ((traj == low) | (traj == high)).any()  # the clamp bound somewhere
    # Static dims get no change (from step 1 on: step 1 may clamp them into these tight bounds).
    torch.testing.assert_close(traj[:, 2:, [4, 5]], traj[:, 1:2, [4, 5]].expand(4, 5, 2))
    with torch.no_grad():
        per = wm.pathway_loss({"states": traj, "actions": actions})[1]["per_step"]
    assert per.shape == (6,) and float(per.max()) < 1e-10
    per_wrong = wm.pathway_loss({"states": traj.flip(1), "actions": actions})[1]["per_step"]
    assert float(per_wrong.max()) > 1e-3


def test_fits_the_pathway_alone_and_a_killed_run_resumes_to_the_same_weights(setup, tmp_path, monkeypatch):
    cfg = PathwayTrainConfig(steps=40, batch_size=64, lr=3e-3, warmup=5, unroll=3, val_fraction=0.2, save_every=20)
    before = WorldModel.from_pretrained(setup / "world")
    full = train_pathway(setup / "world", [str(setup / "data")], tmp_path / "full", cfg, device="cpu", progress=False)
    after = WorldModel.from_pretrained(tmp_path / "full")
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(k.startswith("pathway.") for k in changed)  # nothing else moves
    val = Sequences([EpisodeDataset(setup / "data", range(10, 12), frames=False)], before, unroll=3)
    batch = val.sample(256, np.random.default_rng(2))
    with torch.no_grad():
        assert after.pathway_loss(batch)[0] < 0.75 * before.pathway_loss(batch)[0]
    assert full["val_mse_step1"] <= full["val_mse_last"] * 1.5
    # Killed after the step-20 checkpoint, then rerun: the same weights as the straight run.
    kill_after_first_checkpoint(monkeypatch, lambda: train_pathway(
        setup / "world", [str(setup / "data")], tmp_path / "part", cfg, device="cpu", progress=False))
    assert load_checkpoint(tmp_path / "part.train").extra["step"] == 20 and not (tmp_path / "part").exists()
    with pytest.raises(ValueError, match=r"holds another run \(train_config.lr: begun with 0.003, asked for 0.001\)"):
        train_pathway(setup / "world", [str(setup / "data")], tmp_path / "part", cfg.replace(lr=1e-3), device="cpu",
                      progress=False)
    train_pathway(setup / "world", [str(setup / "data")], tmp_path / "part", cfg, device="cpu", progress=False)
    resumed = WorldModel.from_pretrained(tmp_path / "part")
    for k, v in after.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert load_checkpoint(tmp_path / "part").extra["steps"] == 40


def test_cli_and_bad_inputs(setup, tmp_path, capsys):
    assert main(["train", "pathway", "--checkpoint", str(setup / "world"), "--state-data", str(setup / "data"),
                 "--out", str(tmp_path / "cli"), "--steps", "3", "--batch-size", "16", "--unroll", "2", "--quiet"]) == 0
    assert "held-out state MSE" in capsys.readouterr().out
    assert main(["train", "outcome", "--checkpoint", str(setup / "world"), "--state-data", str(setup / "data"),
                 "--out", str(tmp_path / "cli-out"), "--steps", "3", "--batch-size", "16", "--width", "8",
                 "--quiet"]) == 0
    assert "held-out reward MSE" in capsys.readouterr().out
    assert WorldModel.from_pretrained(tmp_path / "cli-out").cfg.outcome.width == 8
    _world(tmp_path / "no-pathway", pathway=0)
    with pytest.raises(ValueError, match=r"no state pathway; give it one with --width"):
        train_pathway(tmp_path / "no-pathway", [str(setup / "data")], tmp_path / "x", device="cpu")
    with pytest.raises(ValueError, match="has a state pathway already"):
        train_pathway(setup / "world", [str(setup / "data")], tmp_path / "x", PathwayTrainConfig(width=8), device="cpu")
    _world(tmp_path / "bounce-world", scene="bounce")
    with pytest.raises(ValueError, match="scene 'Reacher-v5', but the model .* has 'bounce'"):
        train_pathway(tmp_path / "bounce-world", [str(setup / "data")], tmp_path / "x", device="cpu")
    with pytest.raises(ValueError, match="unroll must be > 0"):
        PathwayTrainConfig(unroll=0)
    with pytest.raises(ValueError, match="no training episode of .* has 11 actions"):  # episodes hold 10
        train_pathway(setup / "world", [str(setup / "data")], tmp_path / "x", PathwayTrainConfig(unroll=11),
                      device="cpu")
    # A model whose state head adds to the pathway cannot have the pathway fitted alone.
    wm = WorldModel.from_pretrained(setup / "world")
    WorldModel(wm.cfg.replace(dynamics=wm.cfg.dynamics.replace(state_head=True))).save(tmp_path / "residual")
    with pytest.raises(ValueError, match="state_head=True"):
        train_pathway(tmp_path / "residual", [str(setup / "data")], tmp_path / "x", device="cpu")
    # Rerunning an output directory with other data is refused, not silently resumed.
    with pytest.raises(ValueError, match=r"holds another run \(data: begun with \['[0-9a-f]{64}'\], asked for "):
        train_pathway(setup / "world", [str(setup / "data"), str(setup / "data")], tmp_path / "cli",
                      PathwayTrainConfig(steps=3, batch_size=16, unroll=2), device="cpu")
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    root = tmp_path_factory.mktemp("renderer")
    generate(GenerateSpec(scene="Reacher-v5", out=str(root / "data"), episodes=6, seed=1, shard_size=6, max_steps=10),
             progress_bar=False)
    _world(root / "world", data=EpisodeDataset(root / "data", frames=False))
    return root


def test_width_gives_a_model_without_pathway_one_that_carries_the_state(setup, tmp_path):
    _world(tmp_path / "v4", pathway=0)
    base = WorldModel.from_pretrained(tmp_path / "v4")
    assert base.dynamics.state_head is not None
    cfg = PathwayTrainConfig(steps=4, batch_size=16, width=24, unroll=2, save_every=4)
    train_pathway(tmp_path / "v4", [str(setup / "data")], tmp_path / "pw", cfg, device="cpu", progress=False)
    wm = WorldModel.from_pretrained(tmp_path / "pw")
    dyn = wm.cfg.dynamics
    assert wm.cfg.pathway.width == 24 and not dyn.state_head and wm.dynamics.state_head is None
    for k, v in base.state_dict().items():  # the rest is the base model's
        if not k.startswith("dynamics.state_head."):
            assert torch.equal(wm.state_dict()[k], v), k
    h = wm.start(torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.zeros(1, 1, 10))
    assert torch.isfinite(wm.step(h, torch.zeros(1, 2))[1]).all()


@pytest.mark.parametrize("mix", ["sum", "replace"])
def test_rollout_frames_follow_the_rendered_predicted_state(framed, mix):

    wm = with_renderer(WorldModel.from_pretrained(framed / "world"), 16, mix)
    with torch.no_grad():  # a loud renderer, so that it visibly decides the codes
        wm.renderer.mlp[-1].weight.mul_(50)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 60, (2, 1, 8, 8), generator=g)
    states = torch.randn(2, 1, 10, generator=g) * 0.1
    actions = torch.rand(2, 2, generator=g)
    h = wm.start(tokens, states)
    before_codes, before_state = h.codes.clone(), h.state.clone()
    codes, state, _, _ = wm.step(h, actions)
    out = wm.dynamics.step_with_cache(wm.start(tokens, states).caches, before_codes, before_state,
                                      actions[:, None], 0)
    rendered = wm.renderer(wm.normalize_state(state))
    logits = rendered if mix == "replace" else out["code_logits"][:, 0] + rendered
    assert torch.equal(codes.view(2, -1), wm.dynamics.predict_codes(logits))
    plain = wm.dynamics.predict_codes(out["code_logits"][:, 0])
    assert not torch.equal(codes.view(2, -1), plain)  # the renderer changed the frame

    assert world_model_info(wm)["renderer"] == 16


def test_train_renderer_fits_frames_alone_and_resumes(framed, tmp_path, monkeypatch):

    cfg = RendererTrainConfig(steps=30, batch_size=32, lr=3e-3, warmup=3, width=32, val_fraction=0.2, save_every=15)
    m = train_renderer(framed / "world", [str(framed / "data")], tmp_path / "r", cfg, device="cpu", progress=False)
    base, wm = WorldModel.from_pretrained(framed / "world"), WorldModel.from_pretrained(tmp_path / "r")
    assert wm.cfg.renderer.width == 32 and wm.cfg.renderer.mix == "sum"
    for k, v in base.state_dict().items():  # nothing of the base model moved
        assert torch.equal(wm.state_dict()[k], v), k
    untrained = tp.with_renderer(base, 32, "sum")
    val = Frames([EpisodeDataset(framed / "data", [5])], wm)
    with torch.no_grad():
        ce = [w.renderer.loss({"states": val.state, "codes": val.codes})[0] for w in (untrained, wm)]
    assert ce[1] < 0.85 * ce[0]
    assert 0 <= m["val_token_acc"] <= 1
    killed_then_rerun_matches(monkeypatch, lambda: train_renderer(
        framed / "world", [str(framed / "data")], tmp_path / "k", cfg, device="cpu", progress=False), tmp_path / "k", wm)


def test_train_renderer_refuses_state_only_data(setup, tmp_path):

    with pytest.raises(ValueError, match="has no frames .*the renderer learns frames"):
        train_renderer(setup / "world", [str(setup / "data")], tmp_path / "r", device="cpu")
    assert not (tmp_path / "r").exists()


def test_outcome_head_scores_the_predicted_state(setup):

    wm = with_outcome(WorldModel.from_pretrained(setup / "world"), 16)
    with pytest.raises(ValueError, match="has an outcome head of width 16, asked for 8"):
        with_outcome(wm, 8)
    wm.reward_mean.fill_(0.5)
    wm.reward_std.fill_(2.0)
    g = torch.Generator().manual_seed(0)
    tokens, states = torch.randint(0, 60, (16, 1, 8, 8), generator=g), torch.randn(16, 1, 10, generator=g)
    actions = torch.rand(16, 2, generator=g) * 2 - 1
    with torch.no_grad():  # a termination logit that is positive for half the rows and negative for the rest
        wm.outcome.mlp[-1].bias.copy_(torch.tensor([0.0, 0.0]))
        wm.outcome.mlp[-1].weight.mul_(20)
        wm.pathway.mlp[-1].weight.mul_(20)  # a large step, so that the state before it scores otherwise
        trial = wm.step(wm.start(tokens, states), actions)[1]
        middle = wm.outcome(wm.normalize_state(trial), actions)[1].sort().values[7:9].mean()
        wm.outcome.mlp[-1].bias[1] -= middle
    h = wm.start(tokens, states)
    before = (h.codes.clone(), h.state.clone())
    _, state, reward, term = wm.step(h, actions)
    reward_n, logit = wm.outcome(wm.normalize_state(state), actions)
    torch.testing.assert_close(reward, reward_n * 2.0 + 0.5)
    assert torch.equal(term, logit > 0) and term.any() and not term.all()
    # Not the outcome of the state before the step, nor the action token's heads.
    reward_before, logit_before = wm.outcome(before[1][:, 0], actions)
    assert not torch.allclose(logit_before, logit)
    assert not torch.allclose(reward, reward_before * 2.0 + 0.5)
    out = wm.dynamics.step_with_cache(wm.start(tokens, states).caches, *before, actions[:, None], 0)
    assert not torch.allclose(reward, out["reward"][:, 0] * 2.0 + 0.5)
    assert world_model_info(wm)["outcome"] == 16 and world_model_info(wm)["reward_range"] is None
    # With a reward range, the rollout's rewards are held inside it.
    wm.cfg = wm.cfg.replace(reward_range=(0.4, 0.6))
    h = wm.start(tokens, states)
    reward = wm.step(h, actions)[2]
    torch.testing.assert_close(reward, (reward_n * 2.0 + 0.5).clamp(0.4, 0.6))
    assert world_model_info(wm)["reward_range"] == [0.4, 0.6]
    with pytest.raises(ValueError, match="reward_range must be empty or"):
        wm.cfg.replace(reward_range=(1.0, 0.0))


def test_train_outcome_learns_termination_and_resumes(tmp_path, monkeypatch):

    # Random pushes drop the pendulum within a few dozen steps: every episode ends in a termination.
    generate(GenerateSpec(scene="InvertedPendulum-v5", out=str(tmp_path / "data"), episodes=60, seed=1, shard_size=30,
                          policy="random", frames=False), progress_bar=False)
    data = EpisodeDataset(tmp_path / "data", frames=False)
    _world(tmp_path / "world", scene="InvertedPendulum-v5", data=data, dims=(4, 1))
    cfg = OutcomeTrainConfig(steps=300, batch_size=256, lr=3e-3, warmup=10, width=32, val_fraction=0.2, save_every=150)
    m = train_outcome(tmp_path / "world", [str(tmp_path / "data")], tmp_path / "o", cfg, device="cpu", progress=False)
    base, wm = WorldModel.from_pretrained(tmp_path / "world"), WorldModel.from_pretrained(tmp_path / "o")
    assert wm.cfg.outcome.width == 32 and wm.cfg.reward_range == (0.0, 1.0)
    for k, v in base.state_dict().items():  # nothing of the base model moved
        assert torch.equal(wm.state_dict()[k], v), k
    # Held-out episodes: the head finds the terminal transitions, read from the states alone.
    val = Outcomes([EpisodeDataset(tmp_path / "data", list(range(48, 60)), frames=False)], wm)
    with torch.no_grad():
        reward, logit = wm.outcome(val.next, val.action)
    ended = val.terminated.bool()
    assert ended.sum() == 12 and ((logit > 0) == ended).float().mean() > 0.97
    assert (logit[ended] > 0).float().mean() >= 0.75
    assert m["val_term_acc"] > 0.97
    # The pendulum's reward is 1 a step and 0 at the step that ends the episode.
    reward = reward * wm.reward_std + wm.reward_mean
    assert reward[ended].mean() < 0.5 < reward[~ended].mean()
    killed_then_rerun_matches(monkeypatch, lambda: train_outcome(
        tmp_path / "world", [str(tmp_path / "data")], tmp_path / "k", cfg, device="cpu", progress=False),
        tmp_path / "k", wm)
