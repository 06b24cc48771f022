"""What a new world model reads off its training data beside the state and reward statistics: the
state dimensions that never change within an episode, and the bounds of a rollout's state."""

from __future__ import annotations

import numpy as np


def static_state_dims(data, tol: float = 1e-9) -> tuple[int, ...]:
    """State dimensions that stay constant within every episode of `data` (to `tol` times their
    spread across episodes), e.g. Reacher's target position."""
    st = data.arrays["states"]
    spread = np.maximum(st.max(0) - st.min(0), 1e-12)
    within = np.zeros(st.shape[1])
    for o, n in zip(data.offsets, data.lengths):
        ep = st[o : o + n]
        within = np.maximum(within, ep.max(0) - ep.min(0))
    return tuple(int(d) for d in np.flatnonzero(within <= tol * spread))


def state_bounds(data, widen: float = 0.5) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`WorldModelConfig.state_low`/`state_high` from `data`: each state dimension's range over the
    dataset, widened by `widen` times itself on each side."""
    st = data.arrays["states"].astype(np.float64)
    lo, hi = st.min(0), st.max(0)
    pad = widen * (hi - lo)
    return tuple(float(v) for v in lo - pad), tuple(float(v) for v in hi + pad)
