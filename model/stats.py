"""Counting a world model's parameters and the FLOPs of one environment step."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from worldsim.model.dynamics import Dynamics
from worldsim.model.kv_cache import KVCache
from worldsim.model.world_model import WorldModel


def active_params(dyn: Dynamics) -> int:
    """Parameters a token passes through: all, less the routed experts it does not visit."""
    total = sum(p.numel() for p in dyn.parameters())
    for moe in dyn.moe_layers():
        per_expert = (moe.w_gate.numel() + moe.w_up.numel() + moe.w_down.numel()) // moe.experts
        total -= (moe.experts - moe.top_k) * per_expert
    return total


@torch.no_grad()
def flops_per_step(wm: WorldModel, batch: int = 1, seed: int = 0, frames: bool = True) -> int:
    """FLOPs of one KV-cached step (with frames, or action and state tokens alone) with a full context
    window behind it, the side models included (counted by torch's FlopCounterMode: matmuls and
    attention), per environment."""
    dyn, cfg = wm.dynamics, wm.cfg.dynamics
    g = torch.Generator().manual_seed(seed)
    dev = next(dyn.parameters()).device
    caches = [KVCache() for _ in dyn.blocks]

    def one(t: int) -> None:
        codes = torch.randint(0, cfg.codebook_size, (batch, 1, cfg.tokens_per_frame), generator=g).to(dev) \
            if frames else None
        states = torch.randn(batch, 1, cfg.state_dim, generator=g).to(dev)
        actions = torch.randn(batch, 1, cfg.action_dim, generator=g).to(dev)
        wm.predict_next(wm.predict(codes, states, actions, caches, t), states, actions[:, 0])

    was_training = wm.training
    wm.eval()
    for t in range(cfg.context - 1):
        one(t)
    counter = FlopCounterMode(display=False)
    with counter:
        one(cfg.context - 1)
    wm.train(was_training)
    return int(counter.get_total_flops() // batch)


def world_model_info(wm: WorldModel) -> dict:
    """The figures `worldsim info` prints: sizes, parameters and FLOPs of the dynamics and side models."""
    dyn, cfg = wm.dynamics, wm.cfg.dynamics
    side = sum(p.numel() for m in wm.parts().values() for p in m.parameters())
    return {
        "scene": wm.cfg.scene,
        "preset": wm.cfg.preset,
        "params_total": int(sum(p.numel() for p in dyn.parameters()) + side),
        "params_active": int(active_params(dyn) + side),
        "params_tokenizer": int(sum(p.numel() for p in wm.tokenizer.parameters())),
        "tokens_per_step": cfg.tokens_per_step,
        "context_steps": cfg.context,
        "flops_per_step": flops_per_step(wm),
        "prune_capacity": cfg.capacity if cfg.prune else 1.0,
        "prune_from_layer": cfg.prune_from if cfg.prune else None,
        "experts": cfg.experts if cfg.moe else 0,
        "expert_groups": cfg.expert_groups if cfg.moe else 0,
        "frame_head": cfg.frame_head,
        "pathway": wm.cfg.pathway.width if wm.cfg.pathway else 0,
        "renderer": wm.cfg.renderer.width if wm.cfg.renderer else 0,
        "outcome": wm.cfg.outcome.width if wm.cfg.outcome else 0,
        "reward_range": list(wm.cfg.reward_range) if wm.cfg.reward_range else None,
        "layers": cfg.layers,
        "width": cfg.width,
    }
