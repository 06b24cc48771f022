"""The Physics Consistency Score (PCS): one number from 0 to 100 for a predicted rollout.

    PCS = 100 * mean(components) * product(penalties)

Components, each in [0, 1] and 1 for a perfect prediction (averaged over every predicted step of every
episode, up to the true episode end):

- `state`:   exp(-nRMSE / 0.5), the state error normalised per dimension by the dataset std. An error
             of half the data's own spread scores exp(-1) = 0.37; copying the first state scores
             near exp(-2.8) = 0.06, as its error is about sqrt(2) spreads.
- `horizon`: valid prediction horizon / episode length, the horizon being the steps before nRMSE
             first exceeds 0.1.
- `frames`:  clip((PSNR - 20 dB) / 20 dB, 0, 1): a stale frame (about 20 dB on our scenes) scores
             0, 40 dB and up scores 1. Only when frames were predicted.
- `contacts` (`bounce`): F1 of the contact events found on the predicted trajectory against those
             found on MuJoCo's (same detector, matched within a window of steps).

Penalties, multiplying, each in [0, 1] and 1 when the prediction is no worse than MuJoCo itself (so
a prediction that does nothing is not rewarded for doing nothing wrong):

- `termination`: the fraction of episodes whose predicted termination step is within the tolerance
             of MuJoCo's (1 for scenes that never terminate, unless the model says they do).
- `penetration` (`bounce`): 1 - (the rate of ball-steps inside a wall, less MuJoCo's rate).
- `ball_count` (`bounce`, with frames): 1 - the rate of frames where a ball vanishes or duplicates.
- `energy` (`bounce`): 1 - min(1, the energy drift between contacts, less MuJoCo's drift).

MuJoCo scored against itself gets 100 by construction: every component and penalty is exactly 1.
"""

from __future__ import annotations

import numpy as np

STATE_SCALE = 0.5
PSNR_FLOOR_DB, PSNR_SPAN_DB = 20.0, 20.0


def state_component(nrmse: np.ndarray, mask: np.ndarray) -> float:
    """mean of exp(-nRMSE / 0.5) over the steps in `mask` ([E, T] both)."""
    m = np.asarray(mask, bool)
    e = np.where(np.isfinite(nrmse), nrmse, np.inf)
    return float(np.exp(-e[m] / STATE_SCALE).mean()) if m.any() else float("nan")


def horizon_component(valid_horizon: np.ndarray, lengths: np.ndarray) -> float:
    """mean over episodes of valid horizon / episode length (episodes of length 0 left out)."""
    lengths, vh = np.asarray(lengths), np.asarray(valid_horizon)
    ok = lengths > 0
    return float(np.mean(vh[ok] / lengths[ok])) if ok.any() else float("nan")


def frames_component(psnr_db: np.ndarray, mask: np.ndarray) -> float:
    """mean of clip((PSNR - 20) / 20, 0, 1) over the frames in `mask` ([E, T] both)."""
    m = np.asarray(mask, bool)
    s = np.clip((np.asarray(psnr_db, np.float64) - PSNR_FLOOR_DB) / PSNR_SPAN_DB, 0.0, 1.0)
    return float(s[m].mean()) if m.any() else float("nan")


def physics_consistency_score(components: dict[str, float], penalties: dict[str, float]) -> float:
    """100 * mean(components) * product(penalties), rounded to 0.01; NaN entries are left out.

    Raises:
        ValueError: when no component is a number, or a value lies outside [0, 1].
    """
    comps = [float(v) for v in components.values() if v is not None and np.isfinite(v)]
    pens = [float(v) for v in penalties.values() if v is not None and np.isfinite(v)]
    if not comps:
        raise ValueError(f"the PCS needs at least one finite component, got {components}")
    for name, v in [*components.items(), *penalties.items()]:
        if v is not None and np.isfinite(v) and not -1e-9 <= v <= 1 + 1e-9:
            raise ValueError(f"PCS term {name!r} must lie in [0, 1], got {v}")
    score = 100.0 * float(np.mean(comps)) * float(np.prod(pens)) if pens else 100.0 * float(np.mean(comps))
    return round(min(max(score, 0.0), 100.0), 2)
