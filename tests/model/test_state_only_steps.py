"""Steps without a frame: each carries its action and state tokens alone, exactly as if the frame's
tokens were absent from attention; state-only data trains the transformer's physics."""

import pytest
import torch

import worldsim.model.dynamics as dynamics_module
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


@pytest.mark.parametrize("fields", [dict(prune=False, moe=False),
                                    dict(prune=True, capacity=0.25, prune_from=0, moe=True, experts=4,
                                         expert_groups=2, top_groups=1, top_k=2, expert_hidden=16, shared_hidden=32)])
def test_a_step_without_frame_is_the_full_step_with_its_frame_tokens_out_of_attention(fields, monkeypatch):
    wm = _model(**fields)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 60, (2, 3, 64), generator=g)
    states, actions = torch.randn(2, 3, 3, generator=g), torch.randn(2, 3, 2, generator=g)
    with torch.no_grad():
        state_only = wm.dynamics(None, states, actions)
    assert "code_logits" not in state_only
    # The reference: the full stream, unpruned, with every frame token masked out as a key. Frame
    # tokens reach the action and state tokens only through attention, so their outputs must agree.
    real = dynamics_module.pruned_attention
    frame_key = (torch.arange(3 * 66) % 66) >= 2

    def without_frame_keys(q, k, v, q_step, k_step, k_valid=None):
        return real(q, k, v, q_step, k_step, k_valid=~frame_key.expand(q.shape[0], -1))

    monkeypatch.setattr(dynamics_module, "pruned_attention", without_frame_keys)
    for blk in wm.dynamics.blocks:
        monkeypatch.setattr(blk, "pruned", False)
    with torch.no_grad():
        full = wm.dynamics(codes, states, actions)
    for key in ("reward", "term_logit", "state_delta"):
        torch.testing.assert_close(state_only[key], full[key], rtol=1e-5, atol=1e-5, msg=key)


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
