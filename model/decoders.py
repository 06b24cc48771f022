"""The tokenizer's decoders: an 8x8 grid of FSQ latents [N, d, 8, 8] -> pixels [N, 3, 64, 64] in [-1, 1].

`ShuffleDecoder` spends its compute where a CPU runs it fastest: a residual block at 8x8 (dense 3x3
convolutions, which are GEMMs over few positions), then three pixel-shuffle upsamplings (a 1x1
convolution to 4x the channels, rearranged to 2x the resolution), each stage narrower than the last,
so the 64x64 stage is only a handful of channels. Per-pixel work (norms, activations, memory traffic)
is what dominates at high resolution on a CPU, and it scales with the channels there.

`ConvDecoder` mirrors the encoder (nearest upsampling and 3x3 residual blocks at every scale, a
transposed convolution to full resolution): four times the FLOPs.
"""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """Group norm, SiLU and a 3x3 convolution, twice, around a skip (the encoder uses it too)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Refine(nn.Module):
    """SiLU and one 3x3 convolution around a skip: a narrow stage's cheap spatial mixing, unnormalised."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(nn.functional.silu(x))


def shuffle_up(c_in: int, c_out: int) -> nn.Sequential:
    """2x upsampling: a 1x1 convolution to 4 * c_out channels, pixel-shuffled."""
    return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 1), nn.PixelShuffle(2))


class ShuffleDecoder(nn.Module):
    """`channels` = widths at 8x8, 16x16, 32x32 and 64x64."""

    def __init__(self, latent_dim: int, channels: tuple[int, ...], groups: int):
        super().__init__()
        c8, c16, c32, c64 = channels
        self.net = nn.Sequential(
            nn.Conv2d(latent_dim, c8, 3, padding=1), ResBlock(c8, groups),
            shuffle_up(c8, c16), Refine(c16),  # 8 -> 16
            shuffle_up(c16, c32), Refine(c32),  # 16 -> 32
            shuffle_up(c32, c64), nn.SiLU(), nn.Conv2d(c64, 3, 3, padding=1),  # 32 -> 64
        )

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)


class ConvDecoder(nn.Module):
    """`channels` = widths at 32x32, 16x16 and 8x8, as the encoder's."""

    def __init__(self, latent_dim: int, channels: tuple[int, ...], res_blocks: int, groups: int):
        super().__init__()
        c0, c1, c2 = channels
        g, n = groups, res_blocks
        self.net = nn.Sequential(
            nn.Conv2d(latent_dim, c2, 3, padding=1),
            *[ResBlock(c2, g) for _ in range(n + 1)],
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c1, 3, padding=1),  # 8 -> 16
            *[ResBlock(c1, g) for _ in range(n)],
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c0, 3, padding=1),  # 16 -> 32
            *[ResBlock(c0, g) for _ in range(n)],
            nn.GroupNorm(g, c0), nn.SiLU(),
            nn.ConvTranspose2d(c0, c0 // 2, 4, stride=2, padding=1),  # 32 -> 64
            nn.SiLU(), nn.Conv2d(c0 // 2, 3, 3, padding=1),
        )

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q)
