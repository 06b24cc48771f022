"""The world's figures as a fraction of the predictability ceiling: MuJoCo itself started from an
initial state moved by 1e-6 (`paired.perturbed_mujoco`). On a chaotic scene two true trajectories
that start this close still part within a few dozen steps, so no predictor of the true one, learned
or not, can be expected to do better than this reference; a ratio of 1 is as good as predictable."""

from __future__ import annotations

import math
from typing import Any

REFERENCE = "mujoco_perturbed"
# Higher-is-better metrics whose ratio to the reference's is meaningful.
RELATIVE = ("valid_horizon", "psnr", "contact_recall", "termination_agreement")


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or not (math.isfinite(value) and math.isfinite(reference)):
        return None
    return value / reference if reference > 0 else None


def relative_to_reference(model: dict[str, dict], reference: dict[str, dict], model_pcs: float,
                          reference_pcs: float) -> dict[str, Any]:
    """{"pcs": model PCS / reference PCS, metric: {h: model / reference}} for the `RELATIVE` metrics both
    have; None where the reference's value is 0 or missing."""
    out: dict[str, Any] = {"pcs": _ratio(model_pcs, reference_pcs)}
    for name in RELATIVE:
        if name in model and name in reference:
            out[name] = {h: _ratio(v, reference[name].get(h)) for h, v in model[name].items()}
    return out
