"""Exporting a trained world model for shipping: fp16 weights, a shared tokenizer, and a check of what
fp16 changes in open-loop rollouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.core.checkpoint import check_checkpoint_target, load_checkpoint, recover_checkpoint
from worldsim.core.registry import resolve_checkpoint
from worldsim.envs import make_scene
from worldsim.envs.loader import EpisodeDataset, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.model.tokenizer import Tokenizer
from worldsim.model.world_model import WorldModel
from worldsim.train.data_stats import state_bounds, static_state_dims
from worldsim.train.state import checkpoint_identity


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


def with_tokenizer(wm: WorldModel, tokenizer: str | Path) -> WorldModel:
    """`wm` (same dynamics) with the tokenizer `tokenizer`, whose encoder must be `wm`'s own (same config
    and weights), so every code and every prediction stays the same; its decoder may differ.

    Raises:
        ValueError: when the encoders differ.
    """
    tok = Tokenizer.from_pretrained(resolve_checkpoint(tokenizer, "tokenizer"))
    if not tok.cfg.encoder_matches(wm.cfg.tokenizer):
        raise ValueError(f"--tokenizer {tokenizer}: its encoder's config differs from the world's ({tok.cfg} against "
                         f"{wm.cfg.tokenizer}); only a tokenizer with the same encoder keeps the world's codes")
    for name, t in tok.encoder.state_dict().items():
        if not torch.equal(t.float().cpu(), wm.tokenizer.encoder.state_dict()[name].float().cpu()):
            raise ValueError(f"--tokenizer {tokenizer}: its encoder's weights differ from the world's at {name!r}; "
                             f"only a tokenizer with the same encoder keeps the world's codes")
    weights = {k: v for k, v in wm.state_dict().items() if not k.startswith("tokenizer.")}
    weights.update({f"tokenizer.{k}": v for k, v in tok.state_dict().items()})
    out = WorldModel(wm.cfg.replace(tokenizer=tok.cfg)).to(wm.device)
    out.load_state_dict(weights)
    return out


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


def headline_figures(report_dir: str | Path, scene: str, checkpoint: str | Path) -> dict[str, Any]:
    """A world's headline figures from its `worldsim eval` report: PCS, and the valid horizon (steps,
    median over episodes) at the report's longest horizon, with what they were measured on.

    The report must have scored `checkpoint` itself: the SHA-256 of the weights it records must be
    `checkpoint`'s (a baseline's or another run's figures never go into this world's config).

    Raises:
        ValueError: for a directory without a report, a report of another scene, of other weights, or
            one that records no checkpoint (written before reports did).
    """
    path = Path(report_dir) / "report.json"
    where = f"--eval-report {str(report_dir)!r}"
    if not path.is_file():
        raise ValueError(f"{where} holds no report.json (expected a `worldsim eval --out` directory)")
    report = json.loads(path.read_text())
    if report.get("scene") != scene:
        raise ValueError(f"the report at {str(report_dir)!r} scores scene {report.get('scene')!r}, not {scene!r}")
    scored, own = report.get("checkpoint"), checkpoint_identity(checkpoint, "world_model")
    rerun = f"score this world with `worldsim eval --scene {scene} --checkpoint {checkpoint} --out DIR`"
    if not isinstance(scored, dict) or not isinstance(scored.get("weights_sha256"), str):
        raise ValueError(f"{where} does not record which world it scored (written before reports did), so "
                         f"nothing says its figures are {checkpoint}'s; {rerun}")
    if scored["weights_sha256"] != own:
        raise ValueError(f"{where} scored another world: {scored.get('name')!r} ({scored.get('path')}, weights "
                         f"SHA-256 {scored['weights_sha256'][:16]}...), not {str(checkpoint)!r} "
                         f"({own[:16]}...); {rerun}")
    horizons = {int(h): v for h, v in report["metrics"]["valid_horizon"].items()}
    h = max(horizons)
    return {"pcs": report["pcs"], "valid_horizon": horizons[h], "horizon": h, "episodes": report["episodes"],
            "seed": report["config"]["seed"], "policy": report["config"]["policy"], "report": str(report_dir),
            "weights_sha256": own}


def export_world_model(src: str | Path, dst: str | Path, fp16: bool = True, tokenizer_ref: str | None = None,
                       static_from: str | Path | None = None, tokenizer: str | Path | None = None,
                       check_steps: int = 50, check_episodes: int = 4, seed: int = 12_345,
                       force: bool = False, eval_report: str | Path | None = None) -> dict[str, float]:
    """Write the world model at `src` to `dst` for shipping, and measure what fp16 weights change.

    The check (`compare_rollouts`) rolls the fp32 and the fp16-weight models open loop from the same
    real initial states under the same random actions and reports the share of identical predicted
    tokens and the largest state difference relative to the dataset std. The export is written either
    way; the caller decides from the figures (the shipping recipe prints them). `static_from` (a
    dataset directory) sets `static_state_dims` and the state bounds from its training split, for
    checkpoints trained before the trainer recorded them. `tokenizer` swaps in another tokenizer with
    the same encoder (`with_tokenizer`), such as a new decoder trained on the world's codes.
    `eval_report` (a `worldsim eval --out` directory of this world, `src` itself) puts its headline
    figures in the config (`headline_figures`), where `worldsim models` reads them.
    """
    recover_checkpoint(dst)
    check_checkpoint_target(dst, "world_model", force=force)  # before any work
    wm = WorldModel.from_pretrained(src)
    figures = None if eval_report is None else headline_figures(eval_report, wm.cfg.scene, src)
    if static_from is not None:
        wm = with_static_from(wm, static_from)
    if tokenizer is not None:
        wm = with_tokenizer(wm, tokenizer)
    source_extra = load_checkpoint(resolve_checkpoint(src, "world_model"), kind="world_model").extra
    for key in ("tokenizer_ref", "tokenizer_sha256"):
        source_extra.pop(key, None)
    if tokenizer is not None:
        source_extra["tokenizer_from"] = str(tokenizer)
    if figures is not None:
        source_extra["eval"] = figures
    out = wm.save(dst, extra={**source_extra, "exported_from": str(src)}, dtype=torch.float16 if fp16 else None,
                  tokenizer_ref=tokenizer_ref, force=force)
    again = WorldModel.from_pretrained(out)
    return {**compare_rollouts(wm, again, check_steps, check_episodes, seed),
            "bytes": sum(f.stat().st_size for f in Path(out).iterdir())}
