"""The tokenizer's decoder: an 8x8 grid of FSQ latents [N, d, 8, 8] -> pixels [N, 3, 64, 64] in [-1, 1],
and the residual block it shares with the encoder.

The decoder mirrors the encoder: residual blocks at 8x8, nearest upsampling with a 3x3 convolution
to 16x16 and 32x32, a transposed convolution to full resolution. Its cost grows with the square of
its widths: 247 MFLOP a frame at the encoder's (32, 64, 128 at 32, 16 and 8 px), 57 at (16, 32, 56).
`narrowed` starts a narrower decoder from a wider trained one: it keeps the wider decoder's most
active channels, which converges faster than a fresh start.
"""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """Group norm, SiLU and a 3x3 convolution, twice, around a skip."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
            nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ConvDecoder(nn.Module):
    """`channels` = widths at 32x32, 16x16 and 8x8 (for 64x64 frames)."""

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


def _top(activation: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k largest mean |activations| [C], in channel order."""
    return torch.sort(torch.topk(activation, k).indices).values


def _copy(dst: nn.Module, src: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> None:
    """dst's weight and bias = src's at output channels `out_idx` and input channels `in_idx` (None: all)."""
    w = src.weight
    if isinstance(src, nn.ConvTranspose2d):  # [in, out, k, k]
        w = w if in_idx is None else w[in_idx]
        w = w if out_idx is None else w[:, out_idx]
    else:  # convolutions [out, in, k, k]; norms [C]
        w = w if out_idx is None else w[out_idx]
        w = w if in_idx is None or w.ndim == 1 else w[:, in_idx]
    dst.weight.copy_(w)
    dst.bias.copy_(src.bias if out_idx is None else src.bias[out_idx])


@torch.no_grad()
def narrowed(wide: ConvDecoder, channels: tuple[int, ...], res_blocks: int, groups: int,
             latents: torch.Tensor) -> ConvDecoder:
    """A `ConvDecoder` of `channels` (each at most `wide`'s) holding `wide`'s most active channels.

    Every layer keeps the channels with the largest mean |activation| of `wide` on `latents`
    [N, d, 8, 8] (each residual block's inner channels chosen apart from its stream's), with the
    weights between the kept channels.

    Raises:
        ValueError: when the two decoders differ in depth or a width exceeds `wide`'s.
    """
    narrow = ConvDecoder(latents.shape[1], channels, res_blocks, groups).to(latents.device)
    if len(narrow.net) != len(wide.net):
        raise ValueError(f"narrowed: res_blocks={res_blocks} differs from the wide decoder's depth")
    x, keep = latents, None  # keep: the kept channels of the stream entering the current layer
    for src, dst in zip(wide.net, narrow.net):
        if isinstance(src, ResBlock):
            hidden = src.block[:3](x).abs().mean((0, 2, 3))
            inner = _top(hidden, dst.block[2].out_channels)
            _copy(dst.block[0], src.block[0], keep, None)
            _copy(dst.block[2], src.block[2], inner, keep)
            _copy(dst.block[3], src.block[3], inner, None)
            _copy(dst.block[5], src.block[5], keep, inner)
        y = src(x)
        if isinstance(src, (nn.Conv2d, nn.ConvTranspose2d)):
            width = dst.out_channels
            if width > src.out_channels:
                raise ValueError(f"narrowed: width {width} exceeds the wide decoder's {src.out_channels}")
            out = None if width == src.out_channels else _top(y.abs().mean((0, 2, 3)), width)
            _copy(dst, src, out, keep)
            keep = out
        elif isinstance(src, nn.GroupNorm):
            _copy(dst, src, keep, None)
        x = y
    return narrow
