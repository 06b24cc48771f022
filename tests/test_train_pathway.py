import numpy as np
import pytest
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.envs.dataset import GenerateSpec, generate
from worldsim.envs.loader import EpisodeDataset
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig
from worldsim.train_dynamics import Transitions, state_pathway_loss
from worldsim.train_pathway import PathwayTrainConfig, Sequences, train_pathway, unrolled_loss


def _world(path, state_mlp=16, scene="Reacher-v5", data=None):
    """A tiny v4-lite-like world with a state pathway, normalised by the data's statistics."""
    dyn = DynamicsConfig(state_dim=10, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                         prune=True, capacity=0.5, prune_from=0, moe=True, experts=4, expert_groups=2, top_groups=1,
                         top_k=2, expert_hidden=16, shared_hidden=32, frame_head="factorized", code_levels=(5, 4, 3),
                         state_mlp=state_mlp, state_residual=not state_mlp)
    torch.manual_seed(0)
    tok = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
    wm = WorldModel(WorldModelConfig(scene=scene, preset="v4-lite", tokenizer=tok, dynamics=dyn,
                                     static_state_dims=(4, 5), state_low=(-50.0,) * 10, state_high=(50.0,) * 10))
    wm.state_std.fill_(0.5)
    if data is not None:
        wm.state_mean.copy_(torch.from_numpy(data.state_mean))
        wm.state_std.copy_(torch.from_numpy(np.maximum(data.state_std, 1e-3)))
    return wm.save(path)


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
    states, actions = seq.sample(64, np.random.default_rng(0))
    assert states.shape == (64, 5, 10) and actions.shape == (64, 4, 2)
    raw = torch.from_numpy(data.arrays["states"]).float()
    for s, a in zip(wm.denormalize_state(states), actions):
        i = int(np.argmin(((raw - s[0]) ** 2).sum(-1).numpy()))
        ep = np.searchsorted(data.offsets, i, side="right") - 1
        assert i + 4 < data.offsets[ep] + data.lengths[ep]  # the run ends inside the episode
        torch.testing.assert_close(s, raw[i : i + 5], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, torch.from_numpy(data.arrays["actions"][i : i + 4]))
    with pytest.raises(ValueError, match="no episode is long enough for 11 unrolled steps"):
        Sequences([data], wm, unroll=11)


def test_one_unrolled_step_is_the_dynamics_trainers_loss(setup):
    data = EpisodeDataset(setup / "data", frames=False)
    wm = WorldModel.from_pretrained(setup / "world")
    states, actions = Sequences([data], wm, unroll=1).sample(32, np.random.default_rng(1))
    wm.state_low = wm.state_high = None  # the dynamics trainer's loss does not clamp
    loss, per = unrolled_loss(wm, states, actions)
    ref = state_pathway_loss(wm, {"state": states[:, 0], "action": actions[:, 0], "next_state": states[:, 1]})
    torch.testing.assert_close(loss, ref)
    assert per.shape == (1,)
    assert len(Transitions([data], wm)) == 120


def test_unrolled_loss_rolls_out_as_the_world_model_steps(setup):
    wm = WorldModel.from_pretrained(setup / "world")
    states = torch.randn(3, 4, 10) * 3
    actions = torch.rand(3, 3, 2) * 2 - 1
    _, per = unrolled_loss(wm, states, actions)
    # The same rollout by hand: static dims held, clamped to the bounds in normalised units.
    low, high = wm.normalize_state(wm.state_low), wm.normalize_state(wm.state_high)
    s = states[:, 0]
    for k in range(3):
        d = wm.dynamics.state_pathway(s, actions[:, k])
        d[:, [4, 5]] = 0
        s = (s + d).clamp(low, high)
        torch.testing.assert_close(per[k], (s - states[:, k + 1]).pow(2).mean())


def test_fits_the_pathway_alone_and_a_killed_run_resumes_to_the_same_weights(setup, tmp_path, monkeypatch):
    cfg = PathwayTrainConfig(steps=40, batch_size=64, lr=3e-3, warmup=5, unroll=3, val_fraction=0.2, save_every=20)
    before = WorldModel.from_pretrained(setup / "world")
    full = train_pathway(setup / "world", [str(setup / "data")], tmp_path / "full", cfg, device="cpu", progress=False)
    after = WorldModel.from_pretrained(tmp_path / "full")
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed and all(k.startswith("dynamics.state_mlp.") for k in changed)  # nothing else moves
    val = Sequences([EpisodeDataset(setup / "data", range(10, 12), frames=False)], before, unroll=3)
    s, a = val.sample(256, np.random.default_rng(2))
    with torch.no_grad():
        assert unrolled_loss(after, s, a)[0] < 0.75 * unrolled_loss(before, s, a)[0]
    assert full["val_mse_step1"] <= full["val_mse_last"] * 1.5
    # Killed after the step-20 checkpoint, then rerun: the same weights as the straight run.
    import worldsim.train_pathway as tp

    calls = {"n": 0}
    real_save = tp.save_train_state

    def save_then_die(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_save(*a, **k)

    monkeypatch.setattr(tp, "save_train_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_pathway(setup / "world", [str(setup / "data")], tmp_path / "part", cfg, device="cpu", progress=False)
    monkeypatch.setattr(tp, "save_train_state", real_save)
    assert load_checkpoint(tmp_path / "part.train").extra["step"] == 20 and not (tmp_path / "part").exists()
    with pytest.raises(ValueError, match="another training config"):
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
    _world(tmp_path / "no-pathway", state_mlp=0)
    with pytest.raises(ValueError, match="no state pathway"):
        train_pathway(tmp_path / "no-pathway", [str(setup / "data")], tmp_path / "x", device="cpu")
    _world(tmp_path / "bounce-world", scene="bounce")
    with pytest.raises(ValueError, match="scene 'Reacher-v5', but the model .* has 'bounce'"):
        train_pathway(tmp_path / "bounce-world", [str(setup / "data")], tmp_path / "x", device="cpu")
    with pytest.raises(ValueError, match="unroll must be >= 1"):
        PathwayTrainConfig(unroll=0)
    assert not (tmp_path / "x").exists()
