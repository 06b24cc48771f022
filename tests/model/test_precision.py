"""Inference precision: `WorldModel.set_precision` casts the transformer's matrices and the decoder to
bf16 and back bit for bit; fp32 is untouched; bf16 rollouts stay close to fp32's, on tiny models and on
every shipped world; "auto" follows the hardware; the env and `worldsim eval` take `precision`."""

import pytest
import torch

import worldsim.core.precision as precision_mod
from worldsim.core.precision import resolve_precision
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
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert precision_mod.bf16_native("cpu") is False


@pytest.mark.parametrize("fields", [dict(prune=False, moe=False), V4])
def test_bf16_round_trip_is_bit_exact_and_bf16_stays_close(fields):
    wm = _model(**fields)
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    ref = _rollout(wm)
    wm.set_precision("bf16")
    assert wm.precision == "bf16"
    assert wm.dynamics.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert wm.tokenizer.decoder.net[0].weight.dtype == torch.bfloat16
    kept = [wm.dynamics.state_in.weight, wm.dynamics.blocks[0].norm1.weight, wm.dynamics.reward_head.weight,
            wm.tokenizer.encoder.net[0].weight, wm.state_mean]
    if fields.get("moe"):
        kept += [wm.dynamics.blocks[0].ffn.router.weight, wm.dynamics.blocks[0].ffn.bias,
                 wm.dynamics.blocks[0].scorer.weight]
    assert all(t.dtype == torch.float32 for t in kept)
    low = _rollout(wm)
    # bf16's 8-bit mantissa moves a tiny random model's states by a few hundredths of its state scale.
    torch.testing.assert_close(low[1], ref[1], atol=0.1, rtol=0.05)
    assert (low[0] == ref[0]).float().mean() > 0.8
    with pytest.raises(ValueError, match="set_precision"):
        wm.save("/nonexistent/never-written")
    wm.set_precision("fp32")
    for k, v in wm.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    again = _rollout(wm)
    for a, b in zip(again, ref):
        assert torch.equal(a, b)


def test_fp32_is_untouched_by_set_precision():
    wm = _model(**V4)
    ref = _rollout(wm)
    assert wm.set_precision("fp32") is wm and wm.precision == "fp32"
    for a, b in zip(_rollout(wm), ref):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("scene", sorted(SHIPPED["world_model"]))
def test_shipped_worlds_agree_in_bf16(scene):
    """Ten framed steps of four rollouts from held states: bf16's states within a few percent of the state
    scale of fp32's, most frame tokens the same (the eval-level figures: benchmarks/precision_fidelity.py)."""
    wm = WorldModel.from_pretrained(scene).eval()
    ref = _rollout(wm, steps=10)
    wm.set_precision("bf16")
    low = _rollout(wm, steps=10)
    scale = wm.state_std.clamp_min(1e-3)
    err = ((low[1] - ref[1]) / scale).abs()
    assert float(err.max()) < 0.25 and float(err.mean()) < 0.02, (float(err.max()), float(err.mean()))
    assert float((low[0] == ref[0]).float().mean()) > 0.85


def test_env_precision_argument(tiny_world, tmp_path):
    import gymnasium as gym

    import worldsim.envs  # noqa: F401

    path = tiny_world(tmp_path / "w")
    env = gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="bf16", obs_type="dict")
    assert env.unwrapped.precision == "bf16"
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    assert obs["pixels"].shape == (64, 64, 3)
    env.close()
    with pytest.raises(ValueError, match="precision must be one of"):
        gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="half")
    env = gym.make("DSV4World-v0", scene="Reacher-v5", checkpoint=str(path), precision="auto")
    assert env.unwrapped.precision == resolve_precision("auto", "cpu")
    env.close()
