"""Steps without a frame carry their action and state tokens alone; with a frame, those tokens never
read the frame's, so the physics of a framed step is the frameless step's, bit for bit; state-only
data trains the transformer's physics."""

import pytest
import torch

from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.kv_cache import KVCache
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))


def _model(**fields):
    dyn = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                         ffn_hidden=64, **fields)
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(scene="test", preset="v4", tokenizer=TOK, dynamics=dyn)).eval()


FIELDS = [dict(prune=False, moe=False),
          dict(prune=True, capacity=0.25, prune_from=0, moe=True, experts=4, expert_groups=2, top_groups=1, top_k=2,
               expert_hidden=16, shared_hidden=32),
          dict(prune=True, capacity=0.5, prune_from=1, moe=False)]


@pytest.mark.parametrize("fields", FIELDS)
def test_physics_never_reads_frames_and_frames_read_physics(fields):
    """Teacher-forced: the framed pass's state, reward and termination are the frameless pass's, bit for
    bit, whatever the codes; its frame logits change with the states (frame tokens read the physics)."""
    wm = _model(**fields)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 60, (2, 3, 64), generator=g)
    states, actions = torch.randn(2, 3, 3, generator=g), torch.randn(2, 3, 2, generator=g)
    with torch.no_grad():
        frameless = wm.dynamics(None, states, actions)
        framed = wm.dynamics(codes, states, actions)
        other_codes = wm.dynamics((codes + 7) % 60, states, actions)
        other_states = wm.dynamics(codes, states + 1, actions)
    assert "code_logits" not in frameless
    for key in ("reward", "term_logit", "state_delta"):
        torch.testing.assert_close(framed[key], frameless[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(other_codes[key], frameless[key], rtol=0, atol=0, msg=key)
    assert not torch.allclose(framed["code_logits"], other_states["code_logits"])


@pytest.mark.parametrize("fields", FIELDS)
def test_framed_rollout_physics_is_the_frameless_rollout_bit_for_bit(fields):
    """Through `WorldModel.start` / `step` (the KV-cached step the env runs), past the context window."""
    wm = _model(**fields)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 60, (3, 2, 8, 8), generator=g)
    states, actions = torch.randn(3, 2, 3, generator=g), torch.randn(3, 9, 2, generator=g)
    framed, frameless = wm.start(tokens, states, actions[:, :1]), wm.start(None, states, actions[:, :1])
    for t in range(1, 9):
        codes, *with_frames = wm.step(framed, actions[:, t])
        none, *without = wm.step(frameless, actions[:, t])
        assert codes is not None and none is None
        for a, b in zip(with_frames, without):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_only_loss_trains_the_transformer():
    wm = _model(prune=False, moe=False).train()
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[:, -1] = False
    batch = {"states": torch.randn(4, 4, 3, generator=g), "actions": torch.randn(4, 4, 2, generator=g),
             "rewards": torch.randn(4, 4, generator=g), "terminated": torch.zeros(4, 4, dtype=torch.bool),
             "act_mask": mask}
    loss, logs = wm.state_only_loss(batch)
    loss.backward()
    attn = [p.grad for n, p in wm.dynamics.named_parameters() if ".attn." in n]
    assert all(g is not None and g.abs().sum() > 0 for g in attn) and logs["state_only_loss"] > 0
    assert wm.dynamics.frame_head.weight.grad is None  # no frame, no frame loss


def test_pruning_at_capacity_zero_is_the_step_without_frame():
    """Every layer pruned at capacity 0 keeps no frame token: the frame's tokens give no keys, so the
    state, reward and termination are exactly those of the frameless step, teacher-forced and cached."""
    wm = _model(prune=True, capacity=0.0, prune_from=0, moe=True, experts=4, expert_groups=2, top_groups=1,
                top_k=2, expert_hidden=16, shared_hidden=32)
    assert wm.cfg.dynamics.kept_frame_tokens == 0
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 60, (2, 3, 64), generator=g)
    states, actions = torch.randn(2, 3, 3, generator=g), torch.randn(2, 3, 2, generator=g)
    with torch.no_grad():
        framed, frameless = wm.dynamics(codes, states, actions), wm.dynamics(None, states, actions)
        other = wm.dynamics((codes + 11) % 60, states, actions)
        caches = [KVCache() for _ in wm.dynamics.blocks]
        cached = [wm.dynamics.step_with_cache(caches, codes[:, t : t + 1], states[:, t : t + 1],
                                              actions[:, t : t + 1], t) for t in range(3)]
    assert framed["code_logits"].shape[:3] == (2, 3, 64)
    for key in ("reward", "term_logit", "state_delta"):
        torch.testing.assert_close(framed[key], frameless[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(other[key], frameless[key], rtol=0, atol=0, msg=key)
        for t in range(3):
            torch.testing.assert_close(cached[t][key][:, 0], frameless[key][:, t], rtol=1e-5, atol=1e-5, msg=key)
