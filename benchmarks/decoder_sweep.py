"""Decoders of the same codes at equal training: which design keeps PSNR at a quarter of the FLOPs.

    python benchmarks/decoder_sweep.py --data data/reacher data/bounce --every 4 --steps 1000 \
        --candidates shuffle patch depthwise wide narrow narrowed

Each candidate learns to draw the shipped tokenizer's codes (its encoder frozen, the training frames
encoded once: every `--every`-th frame of each dataset's training split) for `--steps` AdamW steps at
batch 32 (lr 2e-3, 100 warm-up steps, cosine to 5%), from the same seed; then PSNR on 128 held-out
frames of each dataset. Candidates: `wide` (the encoder's widths, 247 MFLOP), `narrow` (16/32/56,
57 MFLOP) from scratch, `narrowed` (the same, started from the shipped decoder's most active
channels), and three pixel-shuffle designs at about 60 MFLOP: `shuffle` (a residual block at 8x8,
then 1x1 convolutions pixel-shuffled to 16, 32 and 64 px at 48, 16 and 8 channels, a 3x3 residual
convolution at each), `patch` (the 8x8 features pixel-shuffled straight to 64x64) and `depthwise`
(depthwise-separable 5x5 blocks at 16, 32 and 64 px).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from worldsim.envs.loader import load_frames
from worldsim.eval.metrics import psnr
from worldsim.model.decoders import ConvDecoder, ResBlock, narrowed
from worldsim.model.tokenizer import Tokenizer
from worldsim.train.tokenizer import CodedFrames


class Refine(nn.Module):
    """SiLU and a 3x3 convolution around a skip."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(F.silu(x))


class Separable(nn.Module):
    """SiLU, a depthwise 5x5 and a pointwise convolution around a skip."""

    def __init__(self, c: int):
        super().__init__()
        self.dw, self.pw = nn.Conv2d(c, c, 5, padding=2, groups=c), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(F.silu(self.dw(F.silu(x))))


class CodeEmbedded(nn.Module):
    """A conv decoder whose 8x8 stem output gains a learned vector per code (a lookup, no FLOPs)."""

    def __init__(self, dec: ConvDecoder, levels: tuple[int, ...], emb_dim: int):
        super().__init__()
        self.dec = dec
        lv = torch.tensor(levels)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)
        self.emb = nn.Embedding(int(lv.prod()), emb_dim)
        nn.init.zeros_(self.emb.weight)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        half = (self.levels // 2).view(1, -1, 1, 1)
        digits = torch.round(q * half + half).long()
        codes = (digits * self.basis.view(1, -1, 1, 1)).sum(1)  # [N, 8, 8]
        x = self.dec.net[0](q) + self.emb(codes).permute(0, 3, 1, 2)
        return self.dec.net[1:](x)


def up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 1), nn.PixelShuffle(2))


def candidate(name: str, shipped: Tokenizer, latents: torch.Tensor) -> nn.Module:
    d = len(shipped.cfg.levels)
    if name == "wide":
        return ConvDecoder(d, shipped.cfg.channels, 1, 8)
    if name == "narrow":
        return ConvDecoder(d, (16, 32, 56), 1, 8)
    if name == "narrow-emb":
        return CodeEmbedded(ConvDecoder(d, (16, 32, 56), 1, 8), shipped.cfg.levels, 56)
    if name == "narrowed-emb":
        return CodeEmbedded(narrowed(shipped.decoder, (16, 32, 56), 1, 8, latents), shipped.cfg.levels, 56)
    if name.startswith("narrow-g"):  # fewer norm groups: more channels normalised together
        return ConvDecoder(d, (16, 32, 56), 1, int(name[len("narrow-g"):]))
    if name == "narrowed":
        return narrowed(shipped.decoder, (16, 32, 56), 1, 8, latents)
    if name == "shuffle":
        return nn.Sequential(nn.Conv2d(d, 128, 3, padding=1), ResBlock(128, 8), up(128, 48), Refine(48),
                             up(48, 16), Refine(16), up(16, 8), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    if name == "patch":
        return nn.Sequential(nn.Conv2d(d, 128, 3, padding=1), ResBlock(128, 8), nn.Conv2d(128, 512, 1),
                             nn.PixelShuffle(8), Refine(8), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    if name == "depthwise":
        return nn.Sequential(nn.Conv2d(d, 112, 3, padding=1), ResBlock(112, 8), up(112, 64), Separable(64),
                             Separable(64), up(64, 32), Separable(32), Separable(32), up(32, 16), Separable(16),
                             nn.SiLU(), nn.Conv2d(16, 3, 3, padding=1))
    raise ValueError(f"unknown candidate {name!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", required=True, help="dataset directories")
    p.add_argument("--tokenizer", default="runs/tokenizer",
                   help="the wide tokenizer whose codes are drawn and whose decoder `narrowed` starts from "
                        "(train_tokenizer.sh writes runs/tokenizer)")
    p.add_argument("--candidates", nargs="+", default=["shuffle", "patch", "depthwise", "wide", "narrow", "narrowed"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=4, help="keep every n-th training frame")
    args = p.parse_args()
    shipped = Tokenizer.from_pretrained(args.tokenizer)
    if shipped.cfg.decoder_channels is not None and "narrowed" in args.candidates:
        raise ValueError("--tokenizer must have a decoder at the encoder's widths to narrow it")
    pool, _ = load_frames(args.data, 0.1, 64)
    pool.arrays = [a[:: args.every] for a in pool.arrays]
    coded = CodedFrames(pool, shipped, progress=False)
    held = [load_frames([d], 0.1, 64)[1].sample(np.random.default_rng(0), 128) for d in args.data]
    held_codes = [shipped.encode(f) for f in held]
    _, sample = coded.sample(np.random.default_rng(5), 256)
    latents = shipped.fsq.codes_to_latents(sample).permute(0, 3, 1, 2)
    print(f"# {args.steps} steps at batch 32, {torch.get_num_threads()} torch threads; PSNR dB on "
          + ", ".join(args.data))
    print(f"{'candidate':<10} {'MFLOP':>6} " + " ".join(f"{d.rstrip('/').split('/')[-1]:>9}" for d in args.data)
          + f" {'seconds':>8}")
    for name in args.candidates:
        torch.manual_seed(0)
        tok = Tokenizer(shipped.cfg)
        tok.load_state_dict(shipped.state_dict())
        tok.decoder = candidate(name, shipped, latents)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            tok.decoder(latents[:1])
        params = list(tok.decoder.parameters())
        opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
        rng, t0 = np.random.default_rng(0), time.perf_counter()
        for step in range(args.steps):
            lr = 2e-3 * min(1.0, (step + 1) / 100) * (0.05 + 0.475 * (1 + math.cos(math.pi * step / args.steps)))
            for g in opt.param_groups:
                g["lr"] = lr
            loss, _ = tok(*coded.sample(rng, 32))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        scores = [float(psnr(tok.decode(c), f).mean()) for f, c in zip(held, held_codes)]
        print(f"{name:<10} {counter.get_total_flops() / 1e6:>6.1f} " + " ".join(f"{s:>9.2f}" for s in scores)
              + f" {time.perf_counter() - t0:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
