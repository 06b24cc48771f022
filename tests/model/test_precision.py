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
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_precision("auto", "cpu") == "fp32"  # AVX-512 BF16 alone measured slower than fp32
    assert precision_mod.bf16_native("cpu") is False


@pytest.mark.parametrize("fields", [dict(prune=False, moe=False), V4, dict(prune=True, capacity=0.5, prune_from=1)])
def test_bf16_runs_the_frames_only_and_fp32_comes_back_bit_for_bit(fields, tmp_path):
    wm = _model(**fields)
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    ref = _rollout(wm)
    wm.set_precision("bf16")
    assert wm.precision == "bf16"
    attn, ffn = wm.dynamics.blocks[0].frame_modules
    assert attn.qkv.weight.dtype == torch.bfloat16
    assert wm.tokenizer.inference_decoder().net[0].weight.dtype == torch.bfloat16
    if fields.get("moe"):
        assert ffn.w_gate.dtype == torch.bfloat16 and ffn.router.weight.dtype == torch.float32
        assert ffn.bias.dtype == torch.float32
    # The trained weights are untouched: nothing new is a parameter, and a save writes them as trained.
    assert {k: v.dtype for k, v in wm.state_dict().items()} == {k: v.dtype for k, v in before.items()}
    assert sum(1 for _ in wm.parameters()) == len([k for k in before if k in dict(wm.named_parameters())])
    low = _rollout(wm)
    for i in (1, 2):  # states and rewards: the physics tokens run in fp32, bit for bit
        assert torch.equal(low[i], ref[i])
    assert (low[0] == ref[0]).float().mean() > 0.8  # frame tokens: bf16 moves a few argmaxes
    assert (low[3].float() - ref[3].float()).abs().mean() < 12  # decoded pixels, 0-255
    saved = wm.save(tmp_path / "w")
    back = WorldModel.from_pretrained(saved)
    for k, v in back.state_dict().items():
        assert torch.equal(v, before[k]), k
    wm.set_precision("fp32")
    assert wm.dynamics.blocks[0].frame_modules is None
    assert wm.tokenizer.inference_decoder().net[0].weight.dtype == torch.float32
    for a, b in zip(_rollout(wm), ref):
        assert torch.equal(a, b)


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


def test_eval_and_rollout_take_precision(tiny_world, tmp_path):
    import json

    from worldsim.cli import main

    path = str(tiny_world(tmp_path / "w"))
    out = tmp_path / "report"
    assert main(["eval", "--scene", "Reacher-v5", "--checkpoint", path, "--episodes", "2", "--horizon", "3",
                 "--no-video", "--quiet", "--precision", "bf16", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["precision"] == "bf16"
    assert main(["rollout", "--scene", "Reacher-v5", "--checkpoint", path, "--steps", "3", "--quiet",
                 "--precision", "bf16", "--out", str(tmp_path / "r.mp4")]) == 0
    assert (tmp_path / "r.mp4").stat().st_size > 0
