"""The transformer's K-step open-loop loss through the cached step (`worldsim.model.rollout_loss`)."""

import pytest
import torch

from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.kv_cache import KVCache
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.window_loss import masked_terms, targets
from worldsim.model.world_model import WorldModel, WorldModelConfig

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
DYN = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                     prune=True, capacity=0.5, prune_from=1, moe=True, experts=4, expert_groups=2, top_groups=1,
                     top_k=2, expert_hidden=16, shared_hidden=32)


@pytest.fixture(scope="module")
def wm():
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(scene="test", preset="v4", tokenizer=TOK, dynamics=DYN, static_state_dims=(2,)))


def windows(B=3, T=6, seed=0, end_at=None):
    """A window batch as `WindowSampler` gives it; row 0's episode ends after `end_at` actions."""
    g = torch.Generator().manual_seed(seed)
    act_mask = torch.ones(B, T, dtype=torch.bool)
    act_mask[:, -1] = False
    if end_at is not None:
        act_mask[0, end_at:] = False
    return {"codes": torch.randint(0, 60, (B, T, 64), generator=g), "states": torch.randn(B, T, 3, generator=g),
            "actions": torch.randn(B, T, 2, generator=g) * act_mask[..., None],
            "rewards": torch.randn(B, T, generator=g) * act_mask, "terminated": torch.zeros(B, T, dtype=torch.bool),
            "act_mask": act_mask}


def test_one_unrolled_step_is_the_one_step_loss_from_a_real_step(wm):
    wm.eval()
    b = windows(T=2)
    loss, logs = wm.rollout_loss(b)
    t = targets(wm, b)
    out = wm.predict(t["codes"][:, :1], t["states"][:, :1], t["actions"][:, :1])  # teacher-forced, no cache
    state_err = wm.advance(t["states"][:, :1], out["state_delta"]) - t["states"][:, 1:2]
    want, _ = masked_terms(wm, out, state_err, t, slice(0, 1))
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
    assert logs["unrolled_loss"] == pytest.approx(float(want.detach()), rel=1e-6)


def test_the_differentiable_cache_steps_as_the_inference_cache(wm):
    """Fed the recorded inputs, the training cache gives the inference cache's predictions, also past
    the context window (6 steps, window 3)."""
    wm.eval()
    t = targets(wm, windows(T=6))
    train, infer = [KVCache(differentiable=True) for _ in wm.dynamics.blocks], [KVCache() for _ in wm.dynamics.blocks]
    for k in range(6):
        args = (t["codes"][:, k : k + 1], t["states"][:, k : k + 1], t["actions"][:, k : k + 1])
        a = wm.predict(*args, train, k)
        with torch.no_grad():
            b = wm.predict(*args, infer, k)
        for key in b:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=f"{key} at step {k}")


def test_gradients_run_back_through_the_rollouts_own_history(wm):
    """With only the last unrolled step scored, the loss reaches the first step's action only through
    what the model fed itself since (its predicted states, and the keys of its own steps)."""
    wm.train()
    b = windows(T=5)
    b["act_mask"][:, :3] = False  # steps 0-2 still run, unscored; step 3 predicts step 4
    b["actions"] = b["actions"].clone().requires_grad_(True)
    loss, _ = wm.rollout_loss(b)
    loss.backward()
    assert b["actions"].grad[:, 0].abs().sum() > 0
    grads = [p.grad for p in wm.dynamics.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    wm.zero_grad(set_to_none=True)
    wm.eval()


def test_steps_past_an_episode_end_add_nothing(wm):
    wm.eval()
    b = windows(T=6, end_at=2)
    base, _ = wm.rollout_loss(b)
    b2 = {k: v.clone() for k, v in b.items()}
    b2["states"][0, 3:] += 100.0  # past row 0's end: padding
    b2["codes"][0, 3:] = (b2["codes"][0, 3:] + 7) % 60
    torch.testing.assert_close(wm.rollout_loss(b2)[0], base)


def test_a_window_of_one_step_is_refused(wm):
    with pytest.raises(ValueError, match="at least 2 steps"):
        wm.rollout_loss(windows(T=1))


def frameless(batch):
    return {k: v for k, v in batch.items() if k != "codes"}


def test_one_unrolled_step_without_frames_is_the_one_step_loss_without_frames(wm):
    wm.eval()
    b = frameless(windows(T=2))
    loss, logs = wm.rollout_loss(b, prefix="state_only")
    t = targets(wm, b)
    out = wm.predict(None, t["states"][:, :1], t["actions"][:, :1])  # teacher-forced, no frames, no cache
    state_err = wm.advance(t["states"][:, :1], out["state_delta"]) - t["states"][:, 1:2]
    want, terms = masked_terms(wm, out, state_err, t, slice(0, 1))
    assert "ce" not in terms and "state_only_ce" not in logs
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
    assert logs["state_only_loss"] == pytest.approx(float(want.detach()), rel=1e-6)


def test_a_cached_step_without_frames_is_the_frameless_teacher_forced_pass(wm):
    """Step by step through either cache, steps without frames give what the teacher-forced pass over
    the same frameless window gives (3 steps: the context)."""
    wm.eval()
    t = targets(wm, windows(T=3))
    with torch.no_grad():
        whole = wm.predict(None, t["states"], t["actions"])
        for differentiable in (False, True):
            caches = [KVCache(differentiable=differentiable) for _ in wm.dynamics.blocks]
            for k in range(3):
                one = wm.predict(None, t["states"][:, k : k + 1], t["actions"][:, k : k + 1], caches, k)
                assert "code_logits" not in one
                for key in one:
                    torch.testing.assert_close(one[key][:, 0], whole[key][:, k], rtol=1e-5, atol=1e-5,
                                               msg=f"{key} at step {k}")


def test_a_frameless_rollout_gives_states_and_no_tokens(wm):
    wm.eval()
    t = windows(T=3)
    h = wm.start(None, t["states"][:, :2], t["actions"][:, :1])
    tokens, state, reward, term = wm.step(h, t["actions"][:, 1])
    assert tokens is None and h.codes is None
    assert state.shape == (3, 3) and reward.shape == (3,) and term.shape == (3,)
    with pytest.raises(ValueError, match="restarts from context tokens"):
        wm.restart_rows(h, torch.tensor([0]), t["codes"][:1, :2].view(1, 2, 8, 8), t["states"][:1, :2],
                        t["actions"][:1, :1])
