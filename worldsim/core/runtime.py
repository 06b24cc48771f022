"""Device selection and seeding, used by every part of worldsim.

`resolve_device("auto")` is CUDA when present, else the CPU. `seed_everything(seed)` seeds Python,
NumPy and torch together so that the same seed on the same device gives the same run, bit for bit.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_DEVICE_KINDS = ("cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a user's device request into a `torch.device`.

    Args:
        device: `"auto"` (CUDA when available, else CPU), `"cpu"`, `"cuda"`, `"cuda:N"`, or a
            `torch.device`.

    Raises:
        ValueError: for an unknown device string, or CUDA asked for on a machine without it.
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if dev.type not in _DEVICE_KINDS:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {str(dev)!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} asked for, but CUDA is not available on this machine")
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's `random`, NumPy's global state and torch (CPU and CUDA).

    Returns a fresh `numpy.random.Generator` from the same seed, which new code should prefer
    over the global NumPy state.

    Raises:
        TypeError / ValueError: when `seed` is not a non-negative int.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0 or seed >= 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Python's hash seed only matters for subprocesses started after this point.
    os.environ.setdefault("PYTHONHASHSEED", str(seed % 2**32))
    return np.random.default_rng(seed)
