import json

import pytest
import torch

from worldsim.cli import main
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig
from worldsim.train.export import with_tokenizer

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
DYN = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                     ffn_hidden=64, prune=True, capacity=0.5, prune_from=1, moe=True, experts=4, expert_groups=2,
                     top_groups=1, top_k=2, expert_hidden=16, shared_hidden=32)
CFG = WorldModelConfig(scene="test", preset="v4", tokenizer=TOK, dynamics=DYN)


@pytest.fixture(scope="module")
def wm():
    torch.manual_seed(0)
    return WorldModel(CFG).eval()


def context(B=2, C=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 60, (B, C, 8, 8), generator=g), torch.randn(B, C, 3, generator=g),
            torch.randn(B, C - 1, 2, generator=g))


def rollout(wm, steps=5, temperature=0.0, seed=None):
    tokens, states, actions = context()
    h = wm.start(tokens, states, actions, seed=seed)
    out = []
    for t in range(steps):
        out.append(wm.step(h, torch.full((2, 2), 0.1 * t), temperature=temperature))
    return out


def test_step_shapes_and_types(wm):
    tokens, state, reward, term = rollout(wm, steps=1)[0]
    assert tokens.shape == (2, 8, 8) and tokens.dtype == torch.long
    assert state.shape == (2, 3) and reward.shape == (2,) and term.dtype == torch.bool
    frames = wm.decode(tokens[:, None])
    assert frames.shape == (2, 1, 64, 64, 3) and frames.dtype == torch.uint8


def test_rollouts_run_past_the_context_window(wm):
    out = rollout(wm, steps=8)
    assert all(torch.isfinite(s).all() for _, s, _, _ in out)


def test_same_seed_same_rollout(wm):
    for temp, seed in ((0.0, None), (1.0, 7)):
        a, b = rollout(wm, temperature=temp, seed=seed), rollout(wm, temperature=temp, seed=seed)
        for x, y in zip(a, b):
            assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    c = rollout(wm, temperature=1.0, seed=8)
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(rollout(wm, temperature=1.0, seed=7), c))


def test_bad_inputs(wm):
    tokens, states, actions = context()
    with pytest.raises(ValueError, match=r"tokens must be \[2, 2, 8, 8\]"):
        wm.start(tokens[..., :4], states, actions)
    with pytest.raises(ValueError, match=r"actions must be \[2, 1, 2\]"):
        wm.start(tokens, states, None)
    with pytest.raises(ValueError, match="context must hold 1 to 3 steps, got 4"):
        wm.start(*context(C=4))
    h = wm.start(tokens, states, actions)
    with pytest.raises(ValueError, match=r"actions must be \[2, 2\]"):
        wm.step(h, torch.zeros(2, 3))


def test_checkpoint_round_trip_and_info(wm, tmp_path, capsys):
    wm.save(tmp_path / "wm")
    again = WorldModel.from_pretrained(tmp_path / "wm")
    for x, y in zip(rollout(wm), rollout(again)):
        assert torch.equal(x[0], y[0])
    assert main(["info", str(tmp_path / "wm"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for k in ("params_total", "params_active", "tokens_per_step", "flops_per_step", "prune_capacity", "experts",
              "expert_groups"):
        assert k in info
    assert info["tokens_per_step"] == 66 and info["params_active"] < info["params_total"]
    assert info["flops_per_step"] > 0


def test_config_mismatch_is_refused():
    with pytest.raises(ValueError, match="tokenizer codebook 60 != dynamics codebook 1000"):
        WorldModelConfig(tokenizer=TOK, dynamics=DynamicsConfig())


@pytest.mark.parametrize("restart_after", [0, 1, 4])
@pytest.mark.parametrize("C", [1, 3])
def test_restarted_rows_continue_like_a_fresh_start(wm, restart_after, C):
    """Row 1 restarted from a C-step context (early, when the ring buffer is not yet full, or late,
    once it has wrapped) must roll on exactly like a fresh handle started from that context, and row
    0 must not notice."""
    tokens, states, actions = context(B=2, C=2, seed=1)
    new_tokens, new_states, new_actions = context(B=1, C=C, seed=2)
    h = wm.start(tokens, states, actions)
    keep = wm.start(tokens, states, actions)
    acts = [torch.full((2, 2), 0.3 - 0.1 * t) for t in range(restart_after + 5)]
    for a in acts[:restart_after]:
        wm.step(h, a)
        wm.step(keep, a)
    wm.restart_rows(h, torch.tensor([1]), new_tokens, new_states, new_actions if C > 1 else None)
    fresh = wm.start(new_tokens, new_states, new_actions if C > 1 else None)
    for a in acts[restart_after:]:
        tok, st, rw, te = wm.step(h, a)
        tok_f, st_f, rw_f, _ = wm.step(fresh, a[1:])
        tok_k, st_k, _, _ = wm.step(keep, a)
        assert torch.equal(tok[1:], tok_f) and torch.equal(tok[:1], tok_k[:1])
        torch.testing.assert_close(st[1:], st_f, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(st[:1], st_k[:1], rtol=1e-4, atol=1e-5)


def test_state_bounds_hold_a_runaway_rollout_and_bad_bounds_are_refused():
    torch.manual_seed(0)
    bounded = WorldModel(CFG.replace(state_low=(-0.5, -0.5, -0.5), state_high=(0.5, 0.5, 0.5))).eval()
    free = WorldModel(CFG).eval()
    free.load_state_dict(bounded.state_dict())
    tokens, states, actions = context()
    with torch.no_grad():
        for m in (bounded, free):  # a large constant state change every step: a runaway
            m.dynamics.state_head.weight.zero_()
            m.dynamics.state_head.bias.fill_(0.4)
        hb, hf = bounded.start(tokens, states * 0.1, actions), free.start(tokens, states * 0.1, actions)
        for _ in range(5):
            _, sb, _, _ = bounded.step(hb, torch.zeros(2, 2))
            _, sf, _, _ = free.step(hf, torch.zeros(2, 2))
    assert float(sf.abs().max()) > 1.5  # unbounded, it runs away
    assert float(sb.max()) <= 0.5 + 1e-6 and float(sb.min()) >= -0.5 - 1e-6
    torch.testing.assert_close(sb, torch.full_like(sb, 0.5))  # held at the upper bound
    with pytest.raises(ValueError, match="state_dim = 3 entries"):
        CFG.replace(state_low=(0.0,), state_high=(1.0,))
    with pytest.raises(ValueError, match="state_low must be <= state_high"):
        CFG.replace(state_low=(0.0, 0.0, 2.0), state_high=(1.0, 1.0, 1.0))


def test_export_swaps_in_a_tokenizer_with_the_same_encoder(tmp_path, tiny_world):
    """`export --tokenizer` gives a world another decoder for the same codes: every prediction is the
    same, frames come from the new decoder; a tokenizer with another encoder is refused."""
    src = tiny_world(tmp_path / "w")
    wm = WorldModel.from_pretrained(src)
    narrow = Tokenizer(wm.cfg.tokenizer.replace(decoder_channels=(8, 8, 8)))
    narrow.encoder.load_state_dict(wm.tokenizer.encoder.state_dict())
    narrow.save(tmp_path / "tok")
    assert main(["export", str(src), "--out", str(tmp_path / "out"), "--fp32", "--tokenizer",
                 str(tmp_path / "tok")]) == 0
    again = WorldModel.from_pretrained(tmp_path / "out")
    assert again.cfg.tokenizer.decoder_channels == (8, 8, 8)
    frames = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    codes = wm.encode(frames)
    assert torch.equal(again.encode(frames), codes)
    state = torch.zeros(1, 1, wm.cfg.dynamics.state_dim)
    a, b = wm.start(codes, state), again.start(codes, state)
    act = torch.zeros(1, wm.cfg.dynamics.action_dim)
    for x, y in zip(wm.step(a, act), again.step(b, act)):
        assert torch.equal(x, y)
    assert torch.equal(again.decode(codes), narrow.decode(codes))
    other = Tokenizer(wm.cfg.tokenizer)  # same config, fresh encoder weights
    other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="its encoder's weights differ"):
        with_tokenizer(wm, tmp_path / "other")
