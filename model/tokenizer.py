"""The video tokenizer: 64x64 RGB frames <-> an 8x8 grid of discrete FSQ codes, one frame at a time.

A convolutional encoder (a stride-2 stem, residual blocks with group norm, two more stride-2 stages)
maps a frame to an 8x8 grid of `len(levels)` channels; FSQ rounds each to a code in
[0, prod(levels)); a decoder (`worldsim.model.decoders`) maps codes back to pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldsim.core.config import ConfigBase
from worldsim.core.precision import LowPrecisionCopy
from worldsim.model.decoders import ConvDecoder, ResBlock
from worldsim.model.fsq import FSQ
from worldsim.model.saving import PretrainedMixin


@dataclass(frozen=True)
class TokenizerConfig(ConfigBase):
    """Tokenizer shape. `channels` are the encoder's widths at 32x32, 16x16 and 8x8 (for 64x64 frames);
    `decoder_channels` the decoder's, None for the encoder's own."""

    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128)
    levels: tuple[int, ...] = (8, 5, 5, 5)
    res_blocks: int = 1
    groups: int = 8
    decoder_channels: tuple[int, ...] | None = None
    """None: the encoder's widths (247 MFLOP a frame); (16, 32, 56) costs 57 MFLOP"""

    def __post_init__(self) -> None:
        if self.image_size <= 0 or self.image_size % 16:
            raise ValueError(f"TokenizerConfig.image_size must be a positive multiple of 16, got {self.image_size}")
        if len(self.channels) != 3 or any(c <= 0 or c % self.groups for c in self.channels):
            raise ValueError(
                f"TokenizerConfig.channels must be 3 positive multiples of groups={self.groups}, got {self.channels}"
            )
        if any(l < 2 for l in self.levels):
            raise ValueError(f"TokenizerConfig.levels must all be >= 2, got {self.levels}")
        if self.res_blocks < 0:
            raise ValueError(f"TokenizerConfig.res_blocks must be >= 0, got {self.res_blocks}")
        dec = self.decoder_channels
        if dec is not None and (len(dec) != 3 or any(c <= 0 or c % self.groups for c in dec) or dec[0] % 2):
            raise ValueError(f"TokenizerConfig.decoder_channels must be None or 3 positive multiples of "
                             f"groups={self.groups}, the first even, got {dec}")

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        return self.channels if self.decoder_channels is None else self.decoder_channels

    def encoder_matches(self, other: TokenizerConfig) -> bool:
        """Whether `other` makes the same codes: every field but the decoder's widths equal."""
        return self.replace(decoder_channels=other.decoder_channels) == other

    @property
    def grid(self) -> int:
        """Tokens per side: the image is downsampled 8x."""
        return self.image_size // 8

    @property
    def tokens_per_frame(self) -> int:
        return self.grid**2

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        g, n = cfg.groups, cfg.res_blocks
        self.net = nn.Sequential(
            nn.Conv2d(3, c0, 4, stride=2, padding=1),  # 64 -> 32
            *[ResBlock(c0, g) for _ in range(n)],
            nn.Conv2d(c0, c1, 4, stride=2, padding=1),  # 32 -> 16
            *[ResBlock(c1, g) for _ in range(n)],
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # 16 -> 8
            *[ResBlock(c2, g) for _ in range(n + 1)],
            nn.GroupNorm(g, c2), nn.SiLU(), nn.Conv2d(c2, len(cfg.levels), 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def image_gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: keeps small objects' edges sharp."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return (dx(pred) - dx(target)).abs().mean() + (dy(pred) - dy(target)).abs().mean()


class Tokenizer(PretrainedMixin, nn.Module):
    """Frames <-> discrete tokens.

    `encode(frames uint8 [B, T, H, W, 3]) -> tokens long [B, T, h, w]` and `decode(tokens) -> frames`
    (also [N, H, W, 3] <-> [N, h, w]), batched, on the module's device. `forward(frames)` is the
    training step: it returns (loss, logs).
    """

    checkpoint_kind = "tokenizer"
    config_cls = TokenizerConfig

    def __init__(self, cfg: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.fsq = FSQ(cfg.levels)
        self.decoder = ConvDecoder(len(cfg.levels), cfg.decoder_widths, cfg.res_blocks, cfg.groups)
        self._low_decoder: LowPrecisionCopy | None = None  # what `decode` runs in a reduced precision

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_decoder_dtype(self, dtype: torch.dtype) -> None:
        """The dtype `decode` computes in (float32 by default; `WorldModel.set_precision`)."""
        self._low_decoder = None if dtype == torch.float32 else LowPrecisionCopy(self.decoder, dtype)

    def inference_decoder(self) -> nn.Module:
        """The decoder `decode` runs: the decoder itself in float32, else a copy of it as it is now in the
        reduced precision."""
        return self.decoder if self._low_decoder is None else self._low_decoder.get()

    # --- tensors in [-1, 1], channels first ------------------------------------------------------

    def _to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
        return frames.to(self.device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, 3, H, W] in [-1, 1] -> (latents [N, d, h, w], codes [N, h, w])."""
        z = self.encoder(x).permute(0, 2, 3, 1)  # [N, h, w, d]
        q, codes = self.fsq(z)
        return q.permute(0, 3, 1, 2), codes

    def forward(self, frames: torch.Tensor, codes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training step on uint8 frames [N, H, W, 3]: L1 + L2 + gradient-domain reconstruction loss.
        With `codes` [N, h, w] (the frames' codes under this encoder) only the decoder is run and trained."""
        x = self._to_input(self._check_frames(frames))
        if codes is None:
            q, codes = self.quantize(x)
        else:
            q = self.fsq.codes_to_latents(codes.to(self.device)).permute(0, 3, 1, 2)
        rec = self.decoder(q)
        l1 = (rec - x).abs().mean()
        l2 = F.mse_loss(rec, x)
        grad = image_gradient_loss(rec, x)
        loss = l1 + l2 + grad
        with torch.no_grad():
            mse01 = F.mse_loss(rec.clamp(-1, 1), x) / 4  # MSE on [0, 1] pixels
            psnr = -10 * torch.log10(mse01.clamp_min(1e-10))
        return loss, {"loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "grad": grad.item(),
                      "psnr": psnr.item(), "codes_in_batch": int(codes.unique().numel())}

    # --- the public API on uint8 frames ----------------------------------------------------------

    def _check_frames(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor or numpy array, got {type(frames).__name__}")
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8 (0-255), got {frames.dtype}")
        s = self.cfg.image_size
        if frames.ndim not in (4, 5) or tuple(frames.shape[-3:]) != (s, s, 3):
            raise ValueError(f"frames must be [B, T, {s}, {s}, 3] or [N, {s}, {s}, 3] uint8, got {tuple(frames.shape)}")
        return frames

    @torch.no_grad()
    def encode(self, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """uint8 frames [B, T, H, W, 3] (or [N, H, W, 3]) -> codes long [B, T, h, w] (or [N, h, w])."""
        frames = self._check_frames(frames)
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        out = [self.quantize(self._to_input(flat[i : i + batch_size]))[1] for i in range(0, len(flat), batch_size)]
        codes = torch.cat(out) if out else torch.zeros(0, self.cfg.grid, self.cfg.grid, dtype=torch.long)
        return codes.reshape(*lead, self.cfg.grid, self.cfg.grid)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """codes [B, T, h, w] (or [N, h, w]) -> uint8 frames [B, T, H, W, 3] (or [N, H, W, 3])."""
        if isinstance(tokens, np.ndarray):
            tokens = torch.from_numpy(tokens)
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor or numpy array, got {type(tokens).__name__}")
        g = self.cfg.grid
        if tokens.ndim not in (3, 4) or tuple(tokens.shape[-2:]) != (g, g):
            raise ValueError(f"tokens must be [B, T, {g}, {g}] or [N, {g}, {g}], got {tuple(tokens.shape)}")
        lead = tokens.shape[:-2]
        flat = tokens.reshape(-1, g, g).to(self.device)
        frames = []
        decoder = self.inference_decoder()
        dtype = next(decoder.parameters()).dtype
        for i in range(0, len(flat), batch_size):
            q = self.fsq.codes_to_latents(flat[i : i + batch_size]).permute(0, 3, 1, 2)
            x = decoder(q.to(dtype)).float().clamp(-1, 1)
            frames.append(((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1))
        s = self.cfg.image_size
        out = torch.cat(frames) if frames else torch.zeros(0, s, s, 3, dtype=torch.uint8)
        return out.reshape(*lead, s, s, 3)

    # --- checkpoints ------------------------------------------------------------------------------
