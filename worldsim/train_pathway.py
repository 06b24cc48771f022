"""Fit a world model's state pathway alone on many transitions: `worldsim train pathway`.

The state pathway (`DynamicsConfig.state_mlp`) maps (normalised state, action) to the state's
change. In models without the state token's head (`state_residual=False`, the v4-lite preset) it
alone carries the rollout's state; the transformer reads that state but none of its weights change
here. So the pathway can learn from datasets made without frames (`worldsim data generate
--no-frames`): no rendering, a few thousand transitions a second per core, and far more of them than
the frame data that trained the transformer.

The loss is unrolled as `WorldModel.step` rolls out: from a recorded state the pathway is applied
`unroll` times under the recorded actions (static dimensions held, the state clamped to the
model's bounds), and the mean squared error of every predicted state against the recorded one is
minimised, in normalised units. `unroll=1` is the one-step loss of the dynamics trainer.

    OUT/        the world model with the new pathway (a normal checkpoint; export it to ship)
    OUT.train/  the training state, saved every `save_every` steps: a killed run resumes from it and
                ends with the same weights as an uninterrupted one
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldsim.config import ConfigBase
from worldsim.model.world_model import WorldModel
from worldsim.training import cosine_lr
from worldsim.trainstate import load_train_state, save_train_state


@dataclass(frozen=True)
class PathwayTrainConfig(ConfigBase):
    steps: int = 20000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup: int = 200
    unroll: int = 1
    val_fraction: float = 0.02
    save_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every", "unroll"):
            if getattr(self, name) < 1:
                raise ValueError(f"PathwayTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"PathwayTrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.lr > 0:
            raise ValueError(f"PathwayTrainConfig.lr must be > 0, got {self.lr}")


class Sequences:
    """Every run of `unroll` consecutive transitions inside one episode of some datasets, states
    normalised by `wm`: `sample(n, rng)` draws n of them as states [n, K+1, S] and actions [n, K, A]."""

    def __init__(self, datasets: list, wm: WorldModel, unroll: int):
        states, actions, starts, base = [], [], [], 0
        for data in datasets:
            st, ac = data.arrays["states"], data.arrays["actions"]
            # Frame f starts a run if f .. f+K-1 all have actions in f's episode (its last frame has none).
            last = data.offsets + data.lengths - 1
            for first, end in zip(data.offsets, last):
                if end - first >= unroll:
                    starts.append(base + np.arange(first, end - unroll + 1))
            states.append(st), actions.append(ac)
            base += len(st)
        if not starts:
            raise ValueError(f"no episode is long enough for {unroll} unrolled steps")
        dev = wm.device
        self.unroll = unroll
        self.starts = torch.from_numpy(np.concatenate(starts)).to(dev)
        self.state = wm.normalize_state(torch.from_numpy(np.concatenate(states)).float().to(dev))
        self.action = torch.from_numpy(np.concatenate(actions)).float().to(dev)

    def __len__(self) -> int:
        return len(self.starts)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.starts[torch.from_numpy(rng.integers(0, len(self), n)).to(self.starts.device)]
        idx = i[:, None] + torch.arange(self.unroll + 1, device=i.device)
        return self.state[idx], self.action[idx[:, :-1]]


def unrolled_loss(wm: WorldModel, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll the pathway from states[:, 0] under actions [n, K, A] as `WorldModel.step` does; returns
    (the mean squared error over all K predicted states, the per-step mean squared error [K])."""
    cfg = wm.cfg
    static = list(cfg.static_state_dims)
    low = high = None
    if wm.state_low is not None:
        low, high = wm.normalize_state(wm.state_low), wm.normalize_state(wm.state_high)
    s, errs = states[:, 0], []
    for k in range(actions.shape[1]):
        delta = wm.dynamics.state_pathway(s, actions[:, k])
        if static:
            delta = delta.clone()
            delta[:, static] = 0
        s = s + delta
        if low is not None:
            s = s.clamp(low, high)
        errs.append((s - states[:, k + 1]).pow(2).mean())
    per_step = torch.stack(errs)
    return per_step.mean(), per_step.detach()


def train_pathway(checkpoint: str | Path, state_data: list[str] | tuple[str, ...], out: str | Path,
                  cfg: PathwayTrainConfig = PathwayTrainConfig(), device: str = "auto",
                  progress: bool = True) -> dict[str, float]:
    """Fit the state pathway of the world model `checkpoint` on the transitions of `state_data` (datasets
    of its scene, with or without frames) and write the model to `out`; resumes from `out`.train."""
    from tqdm import tqdm

    from worldsim.envs.dataset import read_manifest
    from worldsim.envs.loader import EpisodeDataset
    from worldsim.runtime import resolve_device
    from worldsim.train_tokenizer import split_episodes

    if not state_data:
        raise ValueError("train pathway needs at least one dataset (--state-data)")
    dev = resolve_device(device)
    wm = WorldModel.from_pretrained(checkpoint, device=dev).float()
    dyn = wm.cfg.dynamics
    if not dyn.state_mlp:
        raise ValueError(f"{checkpoint}: this world model has no state pathway (state_mlp = 0); "
                         f"train one with a preset that has it, e.g. --preset v4-lite")
    for d in state_data:  # checked before any work
        m = read_manifest(d)
        want = {"scene": wm.cfg.scene, "state_dim": dyn.state_dim, "action_dim": dyn.action_dim}
        for key, v in want.items():
            if m.get(key) != v:
                raise ValueError(f"state data {d}: {key} {m.get(key)!r}, but the model {checkpoint} has {v!r}")
    first = read_manifest(state_data[0])
    train_ep, val_ep = split_episodes(first["episodes"], cfg.val_fraction)
    train_sets = [EpisodeDataset(state_data[0], train_ep, frames=False),
                  *(EpisodeDataset(d, frames=False) for d in state_data[1:])]
    train = Sequences(train_sets, wm, cfg.unroll)
    val = Sequences([EpisodeDataset(state_data[0], val_ep, frames=False, verify=False)], wm, cfg.unroll)

    wm.requires_grad_(False)
    params = list(wm.dynamics.state_mlp.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    out = Path(out)
    state_dir = out.with_name(out.name + ".train")
    step, rng = 0, np.random.default_rng(cfg.seed)
    if (state_dir / "model.safetensors").is_file():
        step, rng, begun = load_train_state(state_dir, wm, opt, type(wm.cfg), kind="world_model")
        if begun.get("pathway_config") != cfg.to_dict():
            raise ValueError(f"{state_dir}: a run with another training config ({begun.get('pathway_config')}); "
                             f"use a new --out or delete {state_dir}")

    @torch.no_grad()
    def validate(batches: int = 8) -> dict[str, float]:
        per = torch.stack([unrolled_loss(wm, *val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]
                           for i in range(batches)]).mean(0)
        return {"val_mse": float(per.mean()), "val_mse_step1": float(per[0]), "val_mse_last": float(per[-1])}

    extra = {"pathway_config": cfg.to_dict(), "base": str(checkpoint), "state_data": [str(d) for d in state_data]}
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="state pathway", disable=not progress, dynamic_ncols=True)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        # Seeded by the step: a resumed run draws the same sequences.
        loss, _ = unrolled_loss(wm, *train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(mse=f"{loss.item():.3g}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            logs = validate()
            bar.write(f"step {step}: train mse {loss.item():.4g}, "
                      + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
            save_train_state(state_dir, wm, opt, wm.cfg, kind="world_model", step=step, rng=rng, extra=extra)
    bar.close()
    metrics = validate(16)
    wm.save(out, extra={**extra, "steps": step, "transitions": len(train), **metrics,
                        "train_seconds_this_run": time.perf_counter() - t0})
    return metrics
