"""How well a simulator ranks and scores policies against the real system: correlations, MMRV and
the normalised return error, over one mean return per policy in each.

MMRV (mean maximum rank violation, SIMPLER: https://arxiv.org/abs/2405.05941, eq. 1) normalises the
real returns to [0, 1] by their range; for each policy it takes the largest real gap to another
policy that the simulator orders the other way, and averages: 0 is a perfect ranking, and a
violation between policies whose real returns are close costs little. A pair that the real system
orders and the simulator ties counts as a violation (ordered one way in one, not in the other); a
pair tied in the real system costs nothing (its gap is 0).
"""

from __future__ import annotations

import numpy as np


def _pair(real, world) -> tuple[np.ndarray, np.ndarray]:
    r, w = np.asarray(real, dtype=np.float64), np.asarray(world, dtype=np.float64)
    if r.ndim != 1 or r.shape != w.shape or len(r) < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2 (one mean return per policy), got shapes "
                         f"{r.shape} and {w.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(w))):
        raise ValueError("returns must be finite")
    return r, w


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing the mean of their ranks (as Spearman's rho needs)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        r[tied] = r[tied].mean()
    return r


def pearson(real, world) -> float:
    """Pearson's r; NaN when either side is constant (no ordering to agree with)."""
    r, w = _pair(real, world)
    if np.ptp(r) == 0 or np.ptp(w) == 0:
        return float("nan")
    return float(np.corrcoef(r, w)[0, 1])


def spearman(real, world) -> float:
    """Spearman's rho: Pearson's r of the ranks (ties averaged); NaN when either side is constant."""
    r, w = _pair(real, world)
    return pearson(ranks(r), ranks(w))


def mmrv(real, world) -> float:
    """Mean maximum rank violation, the real returns normalised by their range (0 when it is 0)."""
    r, w = _pair(real, world)
    span = np.ptp(r)
    if span == 0:
        return 0.0
    rn = (r - r.min()) / span
    gap = np.abs(rn[:, None] - rn[None, :])
    violated = (r[:, None] < r[None, :]) != (w[:, None] < w[None, :])
    return float((gap * violated).max(axis=1).mean())


def normalised_error(real, world) -> float:
    """Mean |world - real| over policies, in units of the real returns' range (NaN when it is 0)."""
    r, w = _pair(real, world)
    span = np.ptp(r)
    return float(np.abs(w - r).mean() / span) if span > 0 else float("nan")


def ranking_report(real, world) -> dict[str, float]:
    """All four figures of one set of policies."""
    return {"pearson": pearson(real, world), "spearman": spearman(real, world), "mmrv": mmrv(real, world),
            "normalised_return_error": normalised_error(real, world)}
