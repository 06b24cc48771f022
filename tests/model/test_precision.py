"""Inference precision: under `WorldModel.set_precision("bf16")` the frame tokens and the decoder run on
bf16 copies while the physics stays fp32's bit for bit, on tiny models and every shipped world; the
copies follow the weights, training runs on the weights, fp32 comes back bit for bit; "auto" follows
the hardware (the envs and the CLI: tests/envs/test_env_precision.py)."""

import pytest
import torch

import worldsim.core.precision as precision_mod
from worldsim.core.precision import bf16_native, resolve_precision
from worldsim.core.registry import SHIPPED
from worldsim.model.dynamics import DynamicsConfig
from worldsim.model.tokenizer import TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

TOK = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3))
V4 = dict(prune=True, capacity=0.25, prune_from=0, moe=True, experts=4, expert_groups=2, top_groups=1, top_k=2,
          expert_hidden=16, shared_hidden=32)


def _model(**fields):
    dyn = DynamicsConfig(state_dim=3, action_dim=2, grid=8, codebook_size=60, width=32, layers=2, heads=2, context=3,
                         ffn_hidden=64, **fields)
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(scene="test", preset="v4", tokenizer=TOK, dynamics=dyn)).eval()


def _rollout(wm, steps=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = wm.cfg.dynamics
    tokens = torch.randint(0, cfg.codebook_size, (3, 1, cfg.grid, cfg.grid), generator=g)
    states = torch.randn(3, 1, cfg.state_dim, generator=g) * wm.state_std + wm.state_mean
    actions = torch.rand(steps, 3, cfg.action_dim, generator=g) * 0.4 - 0.2
    h = wm.start(tokens, states)
    out = [wm.step(h, actions[t]) for t in range(steps)]
    tok = torch.stack([o[0] for o in out])
    return tok, torch.stack([o[1] for o in out]), torch.stack([o[2] for o in out]), wm.decode(tok[-1])


def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_precision("auto", "cpu") == "fp32"  # AVX-512 BF16 alone measured slower than fp32
    assert precision_mod.bf16_native("cpu") is False


def _frame_logits(wm, seed=3):
    g = torch.Generator().manual_seed(seed)
    cfg = wm.cfg.dynamics
    codes = torch.randint(0, cfg.codebook_size, (2, 2, cfg.tokens_per_frame), generator=g)
    with torch.no_grad():
        return wm.dynamics(codes, torch.randn(2, 2, cfg.state_dim, generator=g),
                           torch.randn(2, 2, cfg.action_dim, generator=g))


@pytest.mark.parametrize("fields", [dict(prune=False, moe=False), V4, dict(prune=True, capacity=0.5, prune_from=1)])
def test_bf16_runs_the_frames_only_and_fp32_comes_back_bit_for_bit(fields, tmp_path):
    wm = _model(**fields)
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    ref, ref_logits = _rollout(wm), _frame_logits(wm)
    wm.set_precision("bf16")
    assert wm.precision == "bf16"
    with torch.no_grad():
        attn, ffn = wm.dynamics.blocks[0].frame_modules()
    assert attn.qkv.weight.dtype == torch.bfloat16
    assert wm.tokenizer.inference_decoder().net[0].weight.dtype == torch.bfloat16
    if fields.get("moe"):
        assert ffn.w_gate.dtype == torch.bfloat16 and ffn.router.weight.dtype == torch.float32
        assert ffn.bias.dtype == torch.float32
    # The trained weights are untouched: nothing new is a parameter, and a save writes them as trained.
    assert {k: v.dtype for k, v in wm.state_dict().items()} == {k: v.dtype for k, v in before.items()}
    assert len(list(wm.parameters())) == len(dict(wm.named_parameters()))
    low, low_logits = _rollout(wm), _frame_logits(wm)
    for i in (1, 2):  # states and rewards: the physics tokens run in fp32, bit for bit
        assert torch.equal(low[i], ref[i])
    for k in ("state_delta", "reward", "term_logit"):
        if k in ref_logits:
            assert torch.equal(low_logits[k], ref_logits[k])
    # The frame logits do run in bf16: close to fp32's, not equal.
    assert not torch.equal(low_logits["code_logits"], ref_logits["code_logits"])
    torch.testing.assert_close(low_logits["code_logits"], ref_logits["code_logits"], atol=0.15, rtol=0.05)
    assert (low[0] == ref[0]).float().mean() > 0.8  # frame tokens: bf16 moves a few argmaxes
    assert (low[3].float() - ref[3].float()).abs().mean() < 12  # decoded pixels, 0-255
    saved = wm.save(tmp_path / "w")
    back = WorldModel.from_pretrained(saved)
    for k, v in back.state_dict().items():
        assert torch.equal(v, before[k]), k
    wm.set_precision("fp32")
    with torch.no_grad():
        assert wm.dynamics.blocks[0].frame_modules()[0] is wm.dynamics.blocks[0].attn
    assert wm.tokenizer.inference_decoder() is wm.tokenizer.decoder
    for a, b in zip(_rollout(wm), ref):
        assert torch.equal(a, b)


def test_bf16_copies_follow_the_weights_and_training_uses_the_weights():
    """An in-place change of the weights (an optimiser step) reaches the bf16 frame pass; a pass that
    autograd records runs on the fp32 weights, so every frame gradient reaches them."""
    wm = _model(**V4)
    wm.set_precision("bf16")
    before = _frame_logits(wm)["code_logits"]
    with torch.no_grad():
        for blk in wm.dynamics.blocks:
            blk.attn.out.weight.mul_(3)
    after = _frame_logits(wm)["code_logits"]
    assert not torch.allclose(after, before, atol=0.5)
    wm.set_precision("fp32")
    torch.testing.assert_close(after, _frame_logits(wm)["code_logits"], atol=0.3, rtol=0.05)
    wm.set_precision("bf16")
    cfg = wm.cfg.dynamics
    codes = torch.randint(0, cfg.codebook_size, (2, 2, cfg.tokens_per_frame))
    out = wm.dynamics(codes, torch.randn(2, 2, cfg.state_dim), torch.randn(2, 2, cfg.action_dim))
    assert out["code_logits"].dtype == torch.float32
    out["code_logits"].sum().backward()
    assert all(p.grad is not None for p in wm.dynamics.blocks[-1].attn.parameters())


def test_bf16_native_on_cuda_needs_ampere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert not bf16_native("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert bf16_native("cuda:0")


def test_fp32_is_untouched_by_set_precision():
    wm = _model(**V4)
    ref = _rollout(wm)
    assert wm.set_precision("fp32") is wm and wm.precision == "fp32"
    for a, b in zip(_rollout(wm), ref):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("scene", sorted(SHIPPED["world_model"]))
def test_shipped_worlds_in_bf16(scene):
    """Ten framed steps of three rollouts: the same states and rewards as fp32, bit for bit, and most frame
    tokens the same (the eval-level figures: benchmarks/precision_fidelity.py)."""
    wm = WorldModel.from_pretrained(scene).eval()
    ref = _rollout(wm, steps=10)
    wm.set_precision("bf16")
    low = _rollout(wm, steps=10)
    assert torch.equal(low[1], ref[1]) and torch.equal(low[2], ref[2])
    assert float((low[0] == ref[0]).float().mean()) > 0.85
