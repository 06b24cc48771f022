"""The evaluation harness: paired rollouts scored by horizon, for the model and its baselines.

    cfg = EvalConfig(scene="Reacher-v5", episodes=32, horizon=240, seed=1000)
    result = evaluate(WorldModel.from_pretrained(path), cfg)
    result.report["pcs"], result.report["metrics"]["state_nrmse"][50]

Every metric is a per-step curve [T] (mean over the episodes still running at that step) and a value
at each report horizon h in (1, 10, 50, 100, 240) that the rollout reaches, plus the horizon itself.
What "at h" means depends on the metric (see `METRICS`): the value at step h for errors of a step;
the median over episodes, capped at h, for the valid horizon; the events, frames or ball-steps
from step 1 to h for rates and event scores. The score formula is in `worldsim.eval.score`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import mujoco
import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim._version import __version__
from worldsim.core.config import ConfigBase
from worldsim.envs import list_scenes, make_scene, scene_class
from worldsim.envs.policies import POLICIES
from worldsim.eval import metrics as M
from worldsim.eval import physics as P
from worldsim.eval import score as S
from worldsim.eval.ceiling import REFERENCE, relative_to_reference
from worldsim.eval.paired import (
    Prediction,
    Truth,
    constant_velocity,
    copy_last,
    model_rollout,
    perturbed_mujoco,
    record_truth,
    with_rule_termination,
)

HORIZONS = (1, 10, 50, 100, 240)
# `mujoco_perturbed` is a reference rather than a baseline to beat: MuJoCo from a state moved by
# `EvalConfig.perturbation`, i.e. how predictable the scene is at all under open-loop actions.
BASELINES = ("copy_last", "constant_velocity", "mujoco_perturbed")

# name -> (unit, better, what the value at horizon h is)
METRICS: dict[str, tuple[str, str, str]] = {
    "state_nrmse": ("std", "lower", "state RMSE at step h, each dimension over its dataset std"),
    "valid_horizon": ("steps", "higher", "median over episodes of the steps before nRMSE > threshold, capped at h"),
    "body_pos_error": ("m", "lower", "mean distance of the named bodies at step h"),
    "body_vel_error": ("m/s", "lower", "mean velocity error of the named bodies at step h"),
    "reward_mae": ("reward", "lower", "absolute reward error at step h"),
    "termination_agreement": ("fraction", "higher", "episodes whose termination by step h agrees within tolerance"),
    "termination_agreement_rule": ("fraction", "higher", "the same, with the model's termination taken from the "
                                   "scene's rule on its predicted states instead of the model's own"),
    "psnr": ("dB", "higher", "frame PSNR at step h"),
    "ssim": ("", "higher", "frame SSIM at step h"),
    "contact_precision": ("fraction", "higher", "predicted contact events up to h that match MuJoCo's"),
    "contact_recall": ("fraction", "higher", "MuJoCo's contact events up to h that were predicted"),
    "contact_timing_error": ("steps", "lower", "mean timing error of matched contacts up to h"),
    "energy_drift": ("fraction", "lower", "mean over episodes of the largest energy drift between contacts up to h"),
    "penetration_rate": ("fraction", "lower", "ball-steps up to h reaching into a wall beyond tolerance"),
    "ball_vanish_rate": ("fraction", "lower", "frames up to h where a ball's colour shows fewer balls than truth"),
    "ball_duplicate_rate": ("fraction", "lower", "frames up to h where a ball's colour shows more balls than truth"),
}


@dataclass(frozen=True)
class EvalConfig(ConfigBase):
    """What to evaluate and how strictly."""

    scene: str = "Reacher-v5"
    """scene name (see `worldsim scenes`)"""
    episodes: int = 32
    """paired episodes"""
    horizon: int = 240
    """steps per episode at most (episodes may end sooner)"""
    seed: int = 1000
    """episode seed (training data used 1)"""
    policy: str = "scripted"
    """actions: random, smooth, scripted or mixed"""
    context: int = 1
    """true steps the model and baselines start from"""
    valid_threshold: float = 0.1
    """state NRMSE a step may reach and still count toward the valid horizon"""
    contact_window: int = 5
    """steps by which a predicted contact may miss a true one and still match"""
    termination_tolerance: int = 2
    """steps by which a predicted termination may miss the true one and still agree"""
    penetration_tolerance: float = 0.02
    """contact depth beyond which a step counts as penetrating"""
    frames: bool = True
    """roll out, decode and score the model's frames (--no-frames: states only, the model rolled
    out without frames, as DSV4World-v0 steps for state observations)"""
    perturbation: float = 1e-6
    """offset of the perturbed-MuJoCo reference's initial positions (0: no reference)"""

    def __post_init__(self) -> None:
        if self.scene not in list_scenes():
            raise ValueError(f"unknown scene {self.scene!r}; known scenes: {', '.join(list_scenes())}")
        for name in ("episodes", "horizon", "context"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; known policies: {', '.join(POLICIES)}")
        if not 0 <= self.perturbation < math.inf:
            raise ValueError(f"perturbation must be a finite number >= 0 (0: no perturbed-MuJoCo reference), "
                             f"got {self.perturbation!r}")
        if not 0 < self.valid_threshold < math.inf:
            raise ValueError(f"valid_threshold must be a finite number > 0, got {self.valid_threshold!r}")
        if self.contact_window < 0 or self.termination_tolerance < 0 or self.penetration_tolerance < 0:
            raise ValueError("contact_window, termination_tolerance and penetration_tolerance must be >= 0")

    @property
    def horizons(self) -> list[int]:
        hs = [h for h in HORIZONS if h < self.horizon]
        return [*hs, self.horizon]


@dataclass
class Scored:
    """One predictor's metrics: per-step curves, values by horizon, per-episode detail, its PCS."""

    per_step: dict[str, np.ndarray]
    by_horizon: dict[str, dict[int, float]]
    episodes: dict[str, np.ndarray]
    pcs: float
    pcs_terms: dict[str, dict[str, float]]


@dataclass
class Result:
    report: dict[str, Any]
    truth: Truth
    predictions: dict[str, Prediction]
    scored: dict[str, Scored] = field(default_factory=dict)


# --- scoring one prediction ------------------------------------------------------------------------


def _upto(mask: np.ndarray, h: int) -> np.ndarray:
    """mask [E, T(+1)] restricted to steps 1..h (index 0, the shared initial step, excluded)."""
    out = np.zeros_like(mask)
    out[:, 1 : h + 1] = mask[:, 1 : h + 1]
    return out


def _rate(flags: np.ndarray, mask: np.ndarray) -> float:
    m = np.broadcast_to(mask, flags.shape)
    return float(flags[m].mean()) if m.any() else float("nan")


def _truth_features(truth: Truth, cfg: EvalConfig) -> dict[str, Any]:
    """What every predictor is compared with, computed once."""
    f: dict[str, Any] = {"term_step": M.first_true(truth.terminated, truth.mask)}
    f["mask1"] = np.concatenate([np.zeros((len(truth.lengths), 1), bool), truth.mask], 1)  # [E, T+1]
    if scene_class(truth.scene).has_balls:
        f.update(_bounce_features(truth.states, truth.actions, truth.dt))
        f["drift_ref"] = _max_upto(f["drift"], f["mask1"], truth.horizon)
        f["pen_ref"] = _rate(f["depth"] > cfg.penetration_tolerance, f["mask1"][..., None])
        if cfg.frames:
            f["counts"] = P.count_balls(truth.frames[:, 1:], truth.states.shape[-1] // 4)
    return f


def _bounce_features(states: np.ndarray, actions: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    events = P.bounce_events(states, dt)
    energy = P.bounce_energy(states) - P.bounce_work(states, actions)
    return {"events": events, "drift": P.energy_drift(energy, events.any(-1)), "depth": P.penetration_depth(states)}


def _max_upto(x: np.ndarray, mask1: np.ndarray, h: int) -> float:
    m = _upto(mask1, h)
    per_ep = np.where(m, x, -np.inf).max(1)
    ok = m.any(1)
    return float(per_ep[ok].mean()) if ok.any() else float("nan")


def _contacts(ev_p: np.ndarray, ev_t: np.ndarray, mask1: np.ndarray, h: int, window: int) -> dict[str, float]:
    m = _upto(mask1, h)[..., None]
    n_p, n_t, n_m, errs = 0, 0, 0, []
    for e in range(ev_p.shape[0]):
        for k in range(ev_p.shape[-1]):
            tp = np.nonzero(ev_p[e, :, k] & m[e, :, 0])[0]
            tt = np.nonzero(ev_t[e, :, k] & m[e, :, 0])[0]
            n, d = M.match_events(tp, tt, window)
            n_p, n_t, n_m, errs = n_p + len(tp), n_t + len(tt), n_m + n, errs + d
    p, r, f1 = M.event_scores(n_p, n_t, n_m)
    return {"precision": p, "recall": r, "f1": f1, "timing": float(np.mean(errs)) if errs else float("nan")}


def score(truth: Truth, pred: Prediction, std: np.ndarray, cfg: EvalConfig,
          features: dict[str, Any] | None = None, frame_cache: dict | None = None) -> Scored:
    """All metrics of one prediction against the truth; see `METRICS` for what each value means."""
    f = features if features is not None else _truth_features(truth, cfg)
    mask, hs = truth.mask, cfg.horizons
    per_step: dict[str, np.ndarray] = {}  # [E, T] arrays, averaged into curves below
    by_h: dict[str, dict[int, float]] = {}

    nrmse = M.state_nrmse(pred.states[:, 1:], truth.states[:, 1:], std)
    per_step["state_nrmse"] = nrmse
    vh = M.valid_horizon(nrmse, cfg.valid_threshold, truth.lengths)
    by_h["valid_horizon"] = {h: float(np.median(np.minimum(vh, h))) for h in hs}
    bp, bt = P.body_positions(truth.scene, pred.states), P.body_positions(truth.scene, truth.states)
    per_step["body_pos_error"] = M.position_error(bp[:, 1:], bt[:, 1:]).mean(-1)
    vp = M.finite_difference_velocity(bp.reshape(*bp.shape[:2], -1), truth.dt)
    vt = M.finite_difference_velocity(bt.reshape(*bt.shape[:2], -1), truth.dt)
    per_step["body_vel_error"] = M.position_error(vp.reshape(bp[:, 1:].shape), vt.reshape(bt[:, 1:].shape)).mean(-1)
    per_step["reward_mae"] = np.abs(pred.rewards - truth.rewards)
    term_pred = M.first_true(pred.terminated)
    by_h["termination_agreement"] = {
        h: float(M.termination_agreement(term_pred, f["term_step"], h, cfg.termination_tolerance).mean()) for h in hs}
    if pred.terminated_rule is not None:
        rule_pred = M.first_true(pred.terminated_rule)
        by_h["termination_agreement_rule"] = {
            h: float(M.termination_agreement(rule_pred, f["term_step"], h, cfg.termination_tolerance).mean())
            for h in hs}
    if cfg.frames and pred.frames is not None:
        per_step["psnr"], per_step["ssim"] = _frame_scores(truth, pred, frame_cache)

    episodes = {"valid_horizon": vh, "termination_step": term_pred,
                "mean_nrmse": np.array([nrmse[e, m].mean() if m.any() else np.nan for e, m in enumerate(mask)])}
    components = {"state": S.state_component(nrmse, mask),
                  "horizon": S.horizon_component(vh, truth.lengths)}
    if "psnr" in per_step:
        components["frames"] = S.frames_component(per_step["psnr"], mask)
    penalties = {"termination": by_h["termination_agreement"][cfg.horizon]}
    if scene_class(truth.scene).has_balls:
        _score_bounce(truth, pred, cfg, f, by_h, per_step, components, penalties)

    for name, x in per_step.items():
        by_h.setdefault(name, M.at_horizons(x, mask, hs))
    curves = {k: M.masked_step_mean(v, mask) for k, v in per_step.items()}
    curves["valid_fraction"] = np.array([(vh >= t).mean() for t in range(1, truth.horizon + 1)])
    ordered = {k: by_h[k] for k in METRICS if k in by_h}
    pcs = S.physics_consistency_score(components, penalties)
    return Scored(curves, ordered, episodes, pcs, {"components": components, "penalties": penalties})


def _frame_scores(truth: Truth, pred: Prediction, cache: dict | None, chunk: int = 512
                  ) -> tuple[np.ndarray, np.ndarray]:
    """PSNR and SSIM [E, T], in chunks of frames; a stale-frame prediction's scores (the first frame
    broadcast over time, shared by both baselines) are computed once through `cache`."""
    static = pred.frames.strides[1] == 0
    if static and cache is not None and "static" in cache:
        return cache["static"]
    shape = truth.frames[:, 1:].shape
    p, t = pred.frames[:, 1:].reshape(-1, *shape[2:]), truth.frames[:, 1:].reshape(-1, *shape[2:])
    ps, ss = [], []
    for i in range(0, len(t), chunk):
        a, b = np.ascontiguousarray(p[i : i + chunk]), t[i : i + chunk]
        ps.append(M.psnr(a, b))
        ss.append(M.ssim(a, b))
    out = np.concatenate(ps).reshape(shape[:2]), np.concatenate(ss).reshape(shape[:2])
    if static and cache is not None:
        cache["static"] = out
    return out


def _score_bounce(truth: Truth, pred: Prediction, cfg: EvalConfig, f: dict, by_h: dict, per_step: dict,
                  components: dict, penalties: dict) -> None:
    mine = _bounce_features(pred.states, truth.actions, truth.dt)
    mask1, hs = f["mask1"], cfg.horizons
    c = {h: _contacts(mine["events"], f["events"], mask1, h, cfg.contact_window) for h in hs}
    by_h["contact_precision"] = {h: c[h]["precision"] for h in hs}
    by_h["contact_recall"] = {h: c[h]["recall"] for h in hs}
    by_h["contact_timing_error"] = {h: c[h]["timing"] for h in hs}
    by_h["energy_drift"] = {h: _max_upto(mine["drift"], mask1, h) for h in hs}
    pen = mine["depth"] > cfg.penetration_tolerance  # [E, T+1, n]
    by_h["penetration_rate"] = {h: _rate(pen, _upto(mask1, h)[..., None]) for h in hs}
    components["contacts"] = c[cfg.horizon]["f1"]
    penalties["penetration"] = 1.0 - max(0.0, by_h["penetration_rate"][cfg.horizon] - f["pen_ref"])
    penalties["energy"] = 1.0 - min(1.0, max(0.0, by_h["energy_drift"][cfg.horizon] - f["drift_ref"]))
    if "counts" in f and pred.frames is not None:
        counts = _ball_counts(pred, truth)
        vanish, dup = (counts < f["counts"]).any(-1), (counts > f["counts"]).any(-1)  # [E, T]
        per_step["ball_vanish_rate"], per_step["ball_duplicate_rate"] = vanish.astype(float), dup.astype(float)
        by_h["ball_vanish_rate"] = {h: _rate(vanish, _upto(mask1, h)[:, 1:]) for h in hs}
        by_h["ball_duplicate_rate"] = {h: _rate(dup, _upto(mask1, h)[:, 1:]) for h in hs}
        penalties["ball_count"] = 1.0 - _rate(vanish | dup, truth.mask)


def _ball_counts(pred: Prediction, truth: Truth) -> np.ndarray:
    n = truth.states.shape[-1] // 4
    if pred.frames.strides[1] == 0:
        first = P.count_balls(pred.frames[:, :1], n)
        return np.broadcast_to(first, (first.shape[0], truth.horizon, n))
    return P.count_balls(pred.frames[:, 1:], n)


# --- the whole evaluation --------------------------------------------------------------------------


def scene_for_model(wm, cfg: EvalConfig):
    """The MuJoCo scene a world model was trained on, checked against it.

    Raises:
        ValueError: when the checkpoint is for another scene, or its state / action sizes differ."""
    if wm.cfg.scene != cfg.scene:
        raise ValueError(f"the checkpoint is a world model of scene {wm.cfg.scene!r}, not {cfg.scene!r}")
    size = wm.cfg.tokenizer.image_size
    opts = scene_class(cfg.scene).options_for_state_dim(wm.cfg.dynamics.state_dim)
    scene = make_scene(cfg.scene, size, size, **opts)
    dyn = wm.cfg.dynamics
    if cfg.context > dyn.context:
        scene.close()
        raise ValueError(f"context must be at most the model's window of {dyn.context} steps, got {cfg.context}")
    if (scene.state_dim, int(scene.action_space.shape[0])) != (dyn.state_dim, dyn.action_dim):
        scene.close()
        raise ValueError(f"{cfg.scene}: the scene has state/action sizes {scene.state_dim}/"
                         f"{scene.action_space.shape[0]}, the checkpoint {dyn.state_dim}/{dyn.action_dim}")
    return scene


def evaluate(wm, cfg: EvalConfig, progress: bool = False, truth: Truth | None = None) -> Result:
    """Paired rollouts of `cfg.episodes` episodes against MuJoCo, scored for the model and baselines.
    `truth`: MuJoCo's episodes recorded by an earlier evaluation with the same config (its
    `Result.truth`), so that models are scored on the same episodes without recording them again."""
    t0 = time.perf_counter()
    scene = scene_for_model(wm, cfg)
    if cfg.horizon > scene.max_episode_steps:  # "H steps or the episode's end": Reacher's ends at 50
        cfg = cfg.replace(horizon=scene.max_episode_steps)
    try:
        if truth is None:
            truth = record_truth(scene, cfg.episodes, cfg.horizon, cfg.seed, cfg.policy, cfg.context, progress)
        elif (truth.scene, truth.actions.shape[:2], truth.context_states.shape[1]) != \
                (scene.name, (cfg.episodes, cfg.horizon), cfg.context):
            raise ValueError(f"truth holds {truth.actions.shape[0]} episodes of {truth.actions.shape[1]} steps of "
                             f"{truth.scene} from {truth.context_states.shape[1]} context steps; this evaluation "
                             f"is of {cfg.episodes} of {cfg.horizon} of {scene.name} from {cfg.context}")
        model = with_rule_termination(scene, truth, model_rollout(wm, truth, decode=cfg.frames, progress=progress))
        preds = {"model": model,
                 "copy_last": copy_last(scene, truth), "constant_velocity": constant_velocity(scene, truth)}
        if cfg.perturbation > 0:
            preds["mujoco_perturbed"] = perturbed_mujoco(scene, truth, cfg.perturbation, frames=cfg.frames)
    finally:
        scene.close()
    std = wm.state_std.double().cpu().numpy()
    features, cache = _truth_features(truth, cfg), {}
    scored = {k: score(truth, p, std, cfg, features, cache)
              for k, p in tqdm(preds.items(), desc="scoring", disable=not progress, leave=False)}
    report = build_report(cfg, truth, scored, std, wall_s=time.perf_counter() - t0)
    return Result(report, truth, preds, scored)


def _versions() -> dict[str, str]:
    return {"worldsim": __version__, "torch": torch.__version__, "mujoco": mujoco.__version__,
            "gymnasium": gymnasium.__version__, "numpy": np.__version__}


def build_report(cfg: EvalConfig, truth: Truth, scored: dict[str, Scored], std: np.ndarray,
                 wall_s: float = 0.0) -> dict[str, Any]:
    """The JSON-ready report (horizons as keys; NaN becomes None when written)."""
    model = scored["model"]
    return {
        "scene": cfg.scene,
        "episodes": cfg.episodes,
        "horizon": cfg.horizon,
        "horizons": cfg.horizons,
        "pcs": model.pcs,
        "pcs_terms": model.pcs_terms,
        "metrics": model.by_horizon,
        "baselines": {b: scored[b].by_horizon for b in BASELINES if b in scored},
        "baseline_pcs": {b: scored[b].pcs for b in BASELINES if b in scored},
        **({"relative_to_reference": relative_to_reference(model.by_horizon, scored[REFERENCE].by_horizon,
                                                           model.pcs, scored[REFERENCE].pcs)}
           if REFERENCE in scored else {}),
        "per_step": {k: {m: v.tolist() for m, v in s.per_step.items()} for k, s in scored.items()},
        "episode_detail": {
            "lengths": truth.lengths.tolist(),
            "true_termination_step": M.first_true(truth.terminated, truth.mask).tolist(),
            **{f"model_{k}": v.tolist() for k, v in model.episodes.items()},
        },
        "metric_info": {k: {"unit": u, "better": b, "at_horizon": d} for k, (u, b, d) in METRICS.items()
                        if k in model.by_horizon},
        "config": cfg.to_dict(),
        "state_std": std.tolist(),
        "seeds": {"seed": cfg.seed, "episodes": truth.seeds},
        "versions": _versions(),
        "wall_seconds": round(wall_s, 2),
    }
