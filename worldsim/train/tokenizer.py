"""Training the video tokenizer on one or more datasets, resumably, on CPU or CUDA, with torchrun DDP.

    worldsim train tokenizer --data data/reacher data/bounce --out runs/tokenizer --steps 3000

Frames are drawn uniformly over the datasets (so each scene gets the same share), then uniformly
within one. The last `val_fraction` of each dataset's episodes (by index) are held out for validation.
Every `--save-every` steps the full training state goes to `OUT.train/`; rerunning the same command
resumes from it. At the end the model alone is written to `OUT` (fp16 with `--fp16`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldsim.core.config import ConfigBase
from worldsim.core.runtime import seed_everything
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.train.loop import (
    checkpoint_identity,
    cosine_lr,
    data_identity,
    finish_distributed,
    run_config,
    setup_distributed,
    wrap_ddp,
)
from worldsim.train.state import has_train_state, load_train_state, prepare_outputs, save_train_state, state_dir_for


@dataclass(frozen=True)
class TokenizerTrainConfig(ConfigBase):
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    val_fraction: float = 0.1
    save_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"TokenizerTrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")


def split_episodes(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Train / held-out episode indices: the last `val_fraction` (at least one) are held out."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"a dataset of {n} episodes is too small to hold out {val_fraction:.0%} for validation")
    return list(range(n - n_val)), list(range(n - n_val, n))


class FramePool:
    """Uniform frames from several datasets, each in memory as uint8."""

    def __init__(self, frame_arrays: list[np.ndarray]):
        if not frame_arrays:
            raise ValueError("FramePool needs at least one dataset")
        self.arrays = frame_arrays

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        which = rng.integers(len(self.arrays), size=n)
        out = [self.arrays[w][rng.integers(len(self.arrays[w]))] for w in which]
        return torch.from_numpy(np.stack(out))


def load_frames(data_dirs: list[str], val_fraction: float, image_size: int) -> tuple[FramePool, FramePool]:
    from worldsim.envs.loader import EpisodeDataset
    from worldsim.envs.manifest import read_manifest

    train, val = [], []
    for d in data_dirs:
        m = read_manifest(d)
        if m["height"] != image_size or m["width"] != image_size:
            size = f"{m['height']}x{m['width']}"
            raise ValueError(f"{d}: frames are {size}, the tokenizer takes {image_size}x{image_size}")
        tr, va = split_episodes(m["episodes"], val_fraction)
        train.append(EpisodeDataset(d, episodes=tr).arrays["frames"])
        val.append(EpisodeDataset(d, episodes=va, verify=False).arrays["frames"])
    return FramePool(train), FramePool(val)


@torch.no_grad()
def validate(model: Tokenizer, pool: FramePool, n: int = 256, seed: int = 1234) -> dict[str, float]:
    frames = pool.sample(np.random.default_rng(seed), n)
    rec = model.decode(model.encode(frames)).float()
    mse = ((rec - frames.float()) / 255).pow(2).mean(dim=(1, 2, 3))
    return {"val_psnr": float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())}


def train_tokenizer(data_dirs: list[str], out: str | Path, model_cfg: TokenizerConfig = TokenizerConfig(),
                    cfg: TokenizerTrainConfig = TokenizerTrainConfig(), device: str = "auto",
                    fp16: bool = False, progress: bool = True, init: str | Path | None = None,
                    force: bool = False) -> dict[str, float]:
    """Train (or resume) a tokenizer; returns the final validation metrics.

    `init` starts a new run from another tokenizer's weights (fine-tuning); its config must match.
    `out` must be absent, empty or a tokenizer checkpoint (`force`: any checkpoint); a resume continues
    only the same run (same data, configs and init; `cfg.steps` may change).
    """
    from tqdm import tqdm

    distributed, rank, dev = setup_distributed(device)
    out = Path(out)
    if rank == 0:
        prepare_outputs(out, "tokenizer", force=force)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    state_dir = state_dir_for(out)
    run = {"model_config": model_cfg.to_dict(), "train_config": run_config(cfg), "data": data_identity(data_dirs),
           "init": None if init is None else checkpoint_identity(init, "tokenizer")}
    seed_everything(cfg.seed)
    model = Tokenizer(model_cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, rng = 0, np.random.default_rng([cfg.seed, rank])
    resume = has_train_state(state_dir)
    if init is not None and not resume:
        start = Tokenizer.from_pretrained(init)
        if start.cfg != model_cfg:
            raise ValueError(f"--init {init}: its config {start.cfg} differs from the one asked for {model_cfg}")
        model.load_state_dict(start.state_dict())
    if resume:
        step, rng, _ = load_train_state(state_dir, model, opt, TokenizerConfig, kind="tokenizer", run=run)
        if distributed:  # each rank continues its own stream
            rng = np.random.default_rng([cfg.seed, rank, step])
    train_model = wrap_ddp(model, dev) if distributed else model
    train_pool, val_pool = load_frames(data_dirs, cfg.val_fraction, model_cfg.image_size)
    bar = tqdm(total=cfg.steps, initial=step, desc="tokenizer", disable=not progress or rank != 0, dynamic_ncols=True)
    t0, logs = time.perf_counter(), {}
    model.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        frames = train_pool.sample(rng, cfg.batch_size)
        loss, logs = train_model(frames)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{logs['psnr']:.1f}")
        if rank == 0 and (step % cfg.save_every == 0 or step == cfg.steps):
            model.eval()
            logs.update(validate(model, val_pool))
            model.train()
            bar.write(f"step {step}: train psnr {logs['psnr']:.2f} dB, val psnr {logs['val_psnr']:.2f} dB")
            save_train_state(state_dir, model, opt, model_cfg, kind="tokenizer", step=step, rng=rng, run=run,
                             extra={"train_config": cfg.to_dict(), "data": [str(d) for d in data_dirs]})
    bar.close()
    metrics = {}
    if rank == 0:
        model.eval()
        metrics = validate(model, val_pool)
        model.save(out, dtype=torch.float16 if fp16 else None, force=force,
                   extra={"steps": step, "train_config": cfg.to_dict(), "data": [str(d) for d in data_dirs],
                          **({} if init is None else {"init": str(init)}), "val_psnr": metrics["val_psnr"],
                          "train_seconds_this_run": time.perf_counter() - t0})
    if distributed:
        finish_distributed(model)
    return metrics
