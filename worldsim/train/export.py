"""Exporting a trained world model for shipping: fp16 weights, a shared tokenizer, and a check of what
fp16 changes in open-loop rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldsim.core.checkpoint import check_checkpoint_target, load_checkpoint, recover_checkpoint
from worldsim.core.registry import resolve_checkpoint
from worldsim.envs import make_scene
from worldsim.envs.loader import EpisodeDataset, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.model.world_model import WorldModel
from worldsim.train.dynamics import state_bounds, static_state_dims


def with_static_from(wm: WorldModel, static_from: str | Path) -> WorldModel:
    """`wm` (same weights) with `static_state_dims` and the state bounds of the dataset `static_from`'s
    training split, for checkpoints trained before the trainer recorded them."""
    train_ep, _ = split_episodes(read_manifest(static_from)["episodes"], 0.1)
    data = EpisodeDataset(static_from, train_ep, verify=False, frames=False)
    low, high = state_bounds(data)
    # A model built from the new config (its bounds are derived there), with the same weights.
    cfg = wm.cfg.replace(static_state_dims=static_state_dims(data), state_low=low, state_high=high)
    weights = wm.state_dict()
    wm = WorldModel(cfg).to(wm.device)
    wm.load_state_dict(weights)
    return wm


def compare_rollouts(wm: WorldModel, again: WorldModel, steps: int, episodes: int, seed: int) -> dict[str, float]:
    """Roll `wm` and `again` open loop from the same real initial states under the same random actions:
    the share of identical predicted tokens and the largest state difference in dataset stds."""
    scene = make_scene(wm.cfg.scene, wm.cfg.tokenizer.image_size, wm.cfg.tokenizer.image_size)
    rng = np.random.default_rng(seed)
    frames, states = [], []
    for i in range(episodes):
        st, _ = scene.reset(seed=seed + i)
        frames.append(scene.render()), states.append(st)
    scene.close()
    tokens = wm.encode(torch.from_numpy(np.stack(frames))[:, None])
    st = torch.from_numpy(np.stack(states))[:, None].float()
    lo, hi = scene.action_space.low, scene.action_space.high
    acts = torch.from_numpy(rng.uniform(lo, hi, (steps, episodes, len(lo)))).float()
    same, worst = [], 0.0
    ha, hb = wm.start(tokens, st), again.start(again.encode(torch.from_numpy(np.stack(frames))[:, None]), st)
    for a in acts:
        ta, sa, _, _ = wm.step(ha, a)
        tb, sb, _, _ = again.step(hb, a)
        same.append((ta == tb).float().mean().item())
        worst = max(worst, ((sa - sb).abs() / wm.state_std).max().item())
    return {"token_agreement": float(np.mean(same)), "max_state_diff_std": worst}


def export_world_model(src: str | Path, dst: str | Path, fp16: bool = True, tokenizer_ref: str | None = None,
                       static_from: str | Path | None = None, check_steps: int = 50, check_episodes: int = 4,
                       seed: int = 12_345, force: bool = False) -> dict[str, float]:
    """Write the world model at `src` to `dst` for shipping, and measure what fp16 weights change.

    The check (`compare_rollouts`) rolls the fp32 and the fp16-weight models open loop from the same
    real initial states under the same random actions and reports the share of identical predicted
    tokens and the largest state difference relative to the dataset std. The export is written either
    way; the caller decides from the figures (the shipping recipe prints them). `static_from` (a
    dataset directory) sets `static_state_dims` and the state bounds from its training split, for
    checkpoints trained before the trainer recorded them.
    """
    recover_checkpoint(dst)
    check_checkpoint_target(dst, "world_model", force=force)  # before any work
    wm = WorldModel.from_pretrained(src)
    if static_from is not None:
        wm = with_static_from(wm, static_from)
    source_extra = load_checkpoint(resolve_checkpoint(src, "world_model"), kind="world_model").extra
    for key in ("tokenizer_ref", "tokenizer_sha256"):
        source_extra.pop(key, None)
    out = wm.save(dst, extra={**source_extra, "exported_from": str(src)}, dtype=torch.float16 if fp16 else None,
                  tokenizer_ref=tokenizer_ref, force=force)
    again = WorldModel.from_pretrained(out)
    return {**compare_rollouts(wm, again, check_steps, check_episodes, seed),
            "bytes": sum(f.stat().st_size for f in Path(out).iterdir())}
