"""Rotary embedding over time: a token's queries and keys turn by angles of its time step, so attention
sees only differences of steps and cached keys stay valid as the window slides."""

from __future__ import annotations

import torch

_ROTARY_FREQ: dict[tuple[int, torch.device], torch.Tensor] = {}


def rotary_freq(hd: int, device: torch.device) -> torch.Tensor:
    """The rotary embedding's frequencies [hd/2], made once per head size and device (a rollout step
    would otherwise spend four ops a layer remaking them)."""
    key = (hd, device)
    if key not in _ROTARY_FREQ:
        _ROTARY_FREQ[key] = 1.0 / (100.0 ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    return _ROTARY_FREQ[key]


def rotary(x: torch.Tensor, step: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Rotate x [..., hd] by angles of the time step [L], which indexes x's dimension `dim` (rotary
    embedding over time only): [B, H, L, hd] by default."""
    hd = x.shape[-1]
    ang = step.float()[:, None] * rotary_freq(hd, x.device)[None]  # [L, hd/2]
    rot = torch.polar(torch.ones_like(ang), ang).view(-1, *([1] * (x.ndim - 2 - dim % x.ndim)), hd // 2)
    # Pairs (x[2i], x[2i+1]) rotate by ang[i]: one complex multiply (x1 cos - x2 sin, x1 sin + x2 cos).
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], hd // 2, 2))
    return torch.view_as_real(xc * rot).flatten(-2).to(x.dtype)
