"""Scoring a tokenizer on fresh MuJoCo episodes: PSNR, SSIM and code usage.

The episodes are generated here, in memory, with the `mixed` behaviour policy and episode seeds
derived from `--seed` (`SeedSequence(seed, spawn_key=(e,))`), which no shipped training set uses:
those were made with `--seed 1` (see benchmarks/train_tokenizer.sh).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldsim.envs import make_scene
from worldsim.envs.episodes import run_episode
from worldsim.envs.policies import make_policy
from worldsim.eval.metrics import code_usage, psnr, ssim
from worldsim.model.tokenizer import Tokenizer


def fresh_frames(scene_name: str, episodes: int, seed: int, max_steps: int | None, size: int) -> np.ndarray:
    """uint8 [N, size, size, 3]: every frame of `episodes` fresh seeded episodes."""
    with make_scene(scene_name, size, size) as scene:
        policy = make_policy("mixed")
        steps = min(scene.max_episode_steps, max_steps or scene.max_episode_steps)
        return np.concatenate([run_episode(scene, policy, seed, e, steps)["frames"] for e in range(episodes)])


def evaluate_tokenizer(tok: Tokenizer, scene: str, episodes: int = 8, seed: int = 1000,
                       max_steps: int | None = 100) -> tuple[dict[str, Any], torch.Tensor]:
    """(report with psnr, ssim, code_usage and counts; the codes of every frame, for pooled usage)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    frames = fresh_frames(scene, episodes, seed, max_steps, tok.cfg.image_size)
    codes = tok.encode(torch.from_numpy(frames))
    rec = tok.decode(codes).cpu().numpy()
    report = {
        "scene": scene,
        "episodes": episodes,
        "seed": seed,
        "frames": int(len(frames)),
        "psnr": float(np.mean(psnr(rec, frames))),
        "ssim": float(np.mean(ssim(rec, frames))),
        "code_usage": code_usage(codes, tok.cfg.codebook_size),
        "codebook_size": tok.cfg.codebook_size,
    }
    return report, codes
