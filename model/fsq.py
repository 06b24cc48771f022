"""Finite scalar quantization (Mentzer et al., 2023, https://arxiv.org/abs/2309.15505).

Each latent channel is bounded with tanh and rounded to one of `levels[i]` values; a code is the
tuple of per-channel values, so the codebook is the product of the levels (e.g. 8*5*5*5 = 1000) and
cannot collapse: there is no learned codebook. Gradients pass the rounding straight through.
"""

from __future__ import annotations

import torch
from torch import nn


class FSQ(nn.Module):
    """Quantizes [..., d] latents with `d = len(levels)` channels to codes in [0, prod(levels))."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        if len(levels) < 1 or any(int(l) < 2 for l in levels):
            raise ValueError(f"FSQ levels must be ints >= 2, got {levels!r}")
        lv = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), lv[:-1]]), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.dim = len(levels)
        self.codebook_size = int(torch.prod(lv))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z so that rounding lands on `levels` integer values per channel."""
        lv = self.levels.to(z.dtype)
        half = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z [..., d] -> (quantized latents in [-1, 1] [..., d], codes long [...])."""
        bz = self.bound(z)
        q = bz + (torch.round(bz) - bz).detach()  # straight-through rounding
        half_width = (self.levels // 2).to(z.dtype)
        # Rounded values are integers in [-half_width, levels - 1 - half_width]; digits in [0, levels).
        digits = (torch.round(bz).detach() + half_width).long()
        return q / half_width, (digits * self.basis).sum(-1)

    def codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Inverse of the code index: codes long [...] -> quantized latents [..., d] in [-1, 1]."""
        if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            lo, hi = int(codes.min()), int(codes.max())
            raise ValueError(f"codes must be in [0, {self.codebook_size}), got [{lo}, {hi}]")
        digits = (codes.long().unsqueeze(-1) // self.basis) % self.levels
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()
