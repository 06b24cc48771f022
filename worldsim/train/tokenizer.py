"""Training the video tokenizer on one or more datasets, resumably, on CPU or CUDA, with torchrun DDP.

    worldsim train tokenizer --data data/reacher data/bounce --out runs/tokenizer --steps 3000

Frames are drawn uniformly over the datasets (so each scene gets the same share), then uniformly
within one. The last `val_fraction` of each dataset's episodes (by index) are held out for validation.
Every `--save-every` steps the full training state goes to `OUT.train/`; rerunning the same command
resumes from it. At the end the model alone is written to `OUT` (fp16 with `--fp16`). With
`--decoder-only` a narrower decoder learns to draw the codes of `--init`'s frozen encoder (encoded once
at the start), starting from `--init`'s decoder's most active channels, so the codes, and every world
model trained on them, stay valid. The optimiser,
schedule, DDP and saves are `worldsim.train.loop.TrainLoop`'s; this file is the frames and the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim.core.checkpoint import load_checkpoint_config, load_checkpoint_extra
from worldsim.core.config import ConfigBase
from worldsim.core.registry import SHIPPED, WEIGHTS_DIR, resolve_checkpoint
from worldsim.core.runtime import seed_everything
from worldsim.envs.loader import FramePool, load_frames
from worldsim.envs.manifest import read_manifest
from worldsim.model.decoders import narrowed
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.train.distributed import setup_distributed
from worldsim.train.loop import LoopConfig, TrainLoop, prepare_run, run_config
from worldsim.train.state import checkpoint_identity, data_identity, has_train_state


@dataclass(frozen=True)
class TokenizerTrainConfig(ConfigBase):
    steps: int = 3000
    """optimiser steps"""
    batch_size: int = 32
    """frames per step (per process)"""
    lr: float = 2e-3
    """peak learning rate (linear warm-up, then a cosine down to 5% of it)"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    warmup: int = 100
    """steps of linear learning-rate warm-up"""
    val_fraction: float = 0.1
    """held-out share of each dataset's episodes"""
    save_every: int = 200
    """steps between resumable checkpoints"""
    seed: int = 0
    """training seed"""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"TokenizerTrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")


class CodedFrames:
    """A frame pool with each frame's codes under a frozen tokenizer's encoder, encoded once."""

    def __init__(self, pool: FramePool, tok: Tokenizer, progress: bool, chunk: int = 512):
        self.pool = pool
        total = sum(len(a) for a in pool.arrays)
        with tqdm(total=total, desc="encoding the training frames", unit="frame", disable=not progress) as bar:
            self.codes = []
            for frames in pool.arrays:
                parts = []
                for i in range(0, len(frames), chunk):
                    parts.append(tok.encode(frames[i : i + chunk]).to(torch.int16).cpu())
                    bar.update(len(parts[-1]))
                self.codes.append(torch.cat(parts))

    def sample(self, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` frames [n, H, W, 3] uint8 and their codes [n, h, w] long."""
        where = self.pool.positions(rng, n)
        frames = torch.from_numpy(np.stack([self.pool.arrays[w][i] for w, i in where]))
        return frames, torch.stack([self.codes[w][i] for w, i in where]).long()


def start_model(model: Tokenizer, init: str | Path, decoder_only: bool, pool: FramePool, seed: int,
                n: int = 256) -> None:
    """Load `init`'s weights into `model`: all of them, or (`decoder_only`) its encoder's, and its decoder
    narrowed to `model`'s widths (the channels most active on `n` frames of `pool`)."""
    start = Tokenizer.from_pretrained(init)
    if not decoder_only:
        if start.cfg != model.cfg:
            raise ValueError(f"--init {init}: its config {start.cfg} differs from the one asked for {model.cfg}")
        model.load_state_dict(start.state_dict())
        return
    if not start.cfg.encoder_matches(model.cfg):
        raise ValueError(f"--init {init}: its encoder's config {start.cfg} differs from the one asked for {model.cfg}")
    if any(a > b for a, b in zip(model.cfg.decoder_widths, start.cfg.decoder_widths)):
        raise ValueError(f"--init {init}: its decoder's widths {start.cfg.decoder_widths} are narrower than the ones "
                         f"asked for {model.cfg.decoder_widths}; a decoder-only run narrows a wider decoder")
    model.encoder.load_state_dict(start.encoder.state_dict())
    with torch.no_grad():
        latents, _ = start.quantize(start._to_input(pool.sample(np.random.default_rng(seed), n)))
    cfg = model.cfg
    model.decoder.load_state_dict(narrowed(start.decoder, cfg.decoder_widths, cfg.res_blocks, cfg.groups,
                                           latents).state_dict())


@torch.no_grad()
def validate(model: Tokenizer, pool: FramePool, n: int = 256, seed: int = 1234) -> dict[str, float]:
    frames = pool.sample(np.random.default_rng(seed), n)
    rec = model.decode(model.encode(frames)).float()
    mse = ((rec - frames.float()) / 255).pow(2).mean(dim=(1, 2, 3))
    return {"val_psnr": float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())}


def train_tokenizer(data_dirs: list[str], out: str | Path, model_cfg: TokenizerConfig = TokenizerConfig(),
                    cfg: TokenizerTrainConfig = TokenizerTrainConfig(), device: str = "auto",
                    fp16: bool = False, progress: bool = True, init: str | Path | None = None,
                    decoder_only: bool = False, force: bool = False,
                    log_config: dict | None = None) -> dict[str, float]:
    """Train (or resume) a tokenizer; returns the final validation metrics.

    `init` starts a new run from another tokenizer's weights (fine-tuning); its config must match.
    With `decoder_only`, `init`'s encoder is kept frozen and only a decoder of `model_cfg`'s widths (at
    most `init`'s, the encoder config the same) is trained, from `init`'s decoder narrowed (`narrowed`).
    `out` must be absent, empty or a tokenizer checkpoint (`force`: any checkpoint); a resume continues
    only the same run (same data, configs and init; `cfg.steps` may change). `log_config` is what
    `OUT.log/config.json` holds (the CLI passes every argument of the run; default: `cfg`'s fields).
    """
    if decoder_only and init is None:
        raise ValueError("decoder_only trains a decoder for another tokenizer's codes: pass init (--init TOKENIZER)")
    ranks = setup_distributed(device)
    out = Path(out)
    state_dir = prepare_run(out, "tokenizer", ranks, force=force)
    run = {"model_config": model_cfg.to_dict(), "train_config": run_config(cfg), "data": data_identity(data_dirs),
           "init": None if init is None else checkpoint_identity(init, "tokenizer"),
           **({"decoder_only": True} if decoder_only else {})}
    # The scenes go with the weights: a world trained later on them can be checked against other data.
    record = {"train_config": cfg.to_dict(), "data": [str(d) for d in data_dirs],
              "scenes": sorted({read_manifest(d)["scene"] for d in data_dirs})}
    seed_everything(cfg.seed)
    model = Tokenizer(model_cfg).to(ranks.device)
    train_pool, val_pool = load_frames(data_dirs, cfg.val_fraction, model_cfg.image_size)
    if init is not None and not has_train_state(state_dir):
        start_model(model, init, decoder_only, train_pool, cfg.seed)
    model.encoder.requires_grad_(not decoder_only)
    loop = TrainLoop(model, [p for p in model.parameters() if p.requires_grad],
                     LoopConfig(cfg.steps, cfg.lr, cfg.warmup, cfg.save_every, cfg.weight_decay, clip=1.0),
                     state_dir=state_dir, kind="tokenizer", run=run, extra=record, seed=[cfg.seed, ranks.rank],
                     ranks=ranks, desc="tokenizer", progress=progress, config=log_config)
    net = loop.ddp(model)
    coded = CodedFrames(train_pool, model, progress and ranks.rank == 0) if decoder_only else None

    def loss(step: int) -> tuple[torch.Tensor, dict]:
        if coded is not None:
            return net(*coded.sample(loop.rng, cfg.batch_size))
        return net(train_pool.sample(loop.rng, cfg.batch_size))

    def held_out(final: bool) -> dict[str, float]:
        model.eval()
        metrics = validate(model, val_pool)
        model.train(not final)
        return metrics

    def save(step: int, metrics: dict[str, float], seconds: float) -> None:
        model.save(out, dtype=torch.float16 if fp16 else None, force=force,
                   extra={"steps": step, **record, **({} if init is None else {"init": str(init)}),
                          "val_psnr": metrics["val_psnr"], "train_seconds_this_run": seconds})

    model.train()
    return loop.run(loss, held_out, save, postfix="loss={loss:.4f}, psnr={psnr:.1f}",
                    report=lambda step, logs: f"step {step}: train psnr {logs['psnr']:.2f} dB, "
                                              f"val psnr {logs['val_psnr']:.2f} dB")


def tokenizer_scenes(name_or_path: str | Path) -> list[str] | None:
    """The scenes a tokenizer was trained on: a shipped one's scenes (by the registry), else the
    `scenes` its training recorded, else those of its recorded datasets still on this machine; None
    when nothing says (it came from elsewhere, before tokenizers recorded their scenes)."""
    path = resolve_checkpoint(name_or_path, "tokenizer")
    if path.parent.resolve() == WEIGHTS_DIR.resolve():
        shipped = sorted(scene for scene, folder in SHIPPED.get("tokenizer", {}).items() if folder == path.name)
        if shipped:
            return shipped
    extra = load_checkpoint_extra(path, kind="tokenizer")
    if isinstance(extra.get("scenes"), list):
        return [str(x) for x in extra["scenes"]]
    try:
        return sorted({read_manifest(d)["scene"] for d in extra.get("data") or []}) or None
    except (ValueError, TypeError):
        return None


def check_tokenizer_for_data(tokenizer: str | Path, data_dir: str | Path) -> str | None:
    """Check, before training a world on `data_dir`'s frames with `tokenizer`, that the tokenizer takes
    frames of that size; returns a warning when it was trained on other scenes (its codes may not tell
    these frames' details apart, and its decoder draws what it learnt), None when all is known to fit.

    Raises:
        ValueError: when the tokenizer's frame size is not the dataset's.
    """
    m = read_manifest(data_dir)
    size = int(load_checkpoint_config(resolve_checkpoint(tokenizer, "tokenizer"), kind="tokenizer")["image_size"])
    if (m["height"], m["width"]) != (size, size):
        raise ValueError(f"--tokenizer {tokenizer} takes {size}x{size} frames, and --data {data_dir} holds "
                         f"{m['height']}x{m['width']} frames of {m['scene']}: pass a tokenizer trained on them")
    scenes = tokenizer_scenes(tokenizer)
    if scenes is None:
        return (f"--tokenizer {tokenizer} records no scene, so nothing checks that it was trained on frames of "
                f"{m['scene']} (--data {data_dir})")
    if m["scene"] not in scenes:
        return (f"--tokenizer {tokenizer} was trained on frames of {', '.join(scenes)}, and --data {data_dir} holds "
                f"{m['scene']}: its codes may miss this scene's details and its decoder draws the other scenes; "
                f"pass {m['scene']}'s own tokenizer if there is one")
    return None
