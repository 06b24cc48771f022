"""The one training loop every trainer runs: AdamW with a warm-up + cosine schedule, optional gradient
clipping, the step counter, resuming from `OUT.train`, DDP, validation, the progress bar and the saves.

A trainer is a part's data and loss: it builds the model, then

    loop = TrainLoop(model, params, LoopConfig(steps, lr, warmup, save_every), state_dir=..., kind=...,
                     run=identity, extra=record, seed=[cfg.seed, rank], ranks=ranks, desc="tokenizer")
    net = loop.ddp(model)                       # the module whose forward the loss calls
    metrics = loop.run(loss, validate, save)    # loss(step) -> (loss, logs); validate(final) -> dict

On every step the loop sets the learning rate, calls `loss(step)`, steps AdamW, then `on_step(step)`;
every `save_every` steps and at the last one rank 0 merges `validate(False)` into the step's logs,
writes them and saves the training state; at the end rank 0 calls `save(step, validate(True),
seconds)`. A run killed at any point and rerun resumes to the same weights as an uninterrupted one,
as long as `loss(step)` draws its data from `loop.rng` (saved with the state) or from the step alone.
A run with a state directory also logs its figures to `OUT.log/metrics.jsonl` every `log_every` steps
and at each save (rank 0; see `worldsim.train.metrics_log`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from worldsim.core.config import ConfigBase
from worldsim.train.distributed import (
    Ranks,
    barrier,
    finish_distributed,
    setup_distributed,
    wrap_ddp,
)
from worldsim.train.metrics_log import MetricsLog, NoLog, log_dir_for
from worldsim.train.state import (
    checkpoint_identity,
    data_identity,
    dataset_fingerprint,
    has_train_state,
    load_train_state,
    prepare_outputs,
    save_train_state,
    state_dir_for,
)

# Re-exported for the trainers that import them from here.
__all__ = ["LoopConfig", "TrainLoop", "checkpoint_identity", "cosine_lr", "data_identity", "dataset_fingerprint",
           "finish_distributed", "prepare_run", "report_all", "run_config", "setup_distributed", "wrap_ddp"]

Logs = dict[str, Any]


def cosine_lr(step: int, steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up over `warmup` steps, then a cosine from `lr` down to 5% of it at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def run_config(cfg: ConfigBase) -> dict:
    """A training config as part of a run's identity: every field but `steps`, which a resume may raise."""
    return {k: v for k, v in cfg.to_dict().items() if k != "steps"}


def prepare_run(out: str | Path, kind: str, ranks: Ranks, *, force: bool = False) -> Path:
    """Check (on rank 0) the output and training-state paths of a run before any work, then wait for
    every rank (see `worldsim.train.state.prepare_outputs`); returns the training-state directory."""
    if ranks.rank == 0:
        prepare_outputs(out, kind, force=force)
    barrier(ranks)
    return state_dir_for(out)


def report_all(step: int, logs: Logs) -> str:
    """The line written at each save: every log, by name."""
    return f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(logs.items()))


@dataclass(frozen=True)
class LoopConfig:
    """How the loop optimises: AdamW (`weight_decay`, `betas`) at `lr` under `cosine_lr(step, steps,
    warmup, lr)`, gradients clipped to a norm of `clip` (None: not clipped); validation and a saved
    training state every `save_every` steps (None: at the last step only) and at the last; a line of
    the metrics log every `log_every` steps and at each save."""

    steps: int
    lr: float
    warmup: int
    save_every: int | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ValueError(f"LoopConfig.log_every must be >= 1, got {self.log_every}")

    def due(self, step: int) -> bool:
        """Whether the loop validates and saves after `step` steps."""
        return step == self.steps or (self.save_every is not None and step % self.save_every == 0)


class TrainLoop:
    """The optimiser, step counter and NumPy stream of one run, resumed from `state_dir` when it
    holds a training state.

    Args:
        model: what the training state holds (its `cfg` is the state's config).
        params: the parameters AdamW updates (the rest of `model` is left as it is).
        cfg: the optimiser, schedule and save settings.
        state_dir: `OUT.train`; None: a run that neither resumes nor saves (e.g. a pretraining stage).
        kind: the checkpoint kind of `model` ("tokenizer", "world_model").
        run: the run's identity; a resume refuses a state begun with another.
        extra: what each saved training state also records.
        seed: the entropy of `rng` in a fresh run; a distributed resume reseeds it from (*seed, step)
            so that each rank continues its own stream.
        ranks: this process's place in a torchrun job (None: a single process).
        desc, progress: the progress bar's label, and whether to show it (rank 0 only).
    """

    def __init__(self, model: torch.nn.Module, params: Sequence[torch.nn.Parameter], cfg: LoopConfig, *,
                 state_dir: str | Path | None = None, kind: str = "", run: dict | None = None,
                 extra: dict | None = None, seed: int | Sequence[int] = 0, ranks: Ranks | None = None,
                 desc: str = "train", progress: bool = True, config: dict | None = None):
        self.model, self.params, self.cfg = model, list(params), cfg
        self.state_dir, self.kind, self.run_identity, self.extra = state_dir, kind, run or {}, extra or {}
        # The resolved train config that OUT.log/config.json holds (a file --config reads back).
        self.config = config if config is not None else self.extra.get("train_config")
        self.ranks = ranks or Ranks(False, 0, torch.device("cpu"))
        self.desc, self.progress = desc, progress
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
        self.step, self.rng, self.logs = 0, np.random.default_rng(seed), {}
        self.resumed = state_dir is not None and has_train_state(state_dir)
        if self.resumed:
            self.step, self.rng, _ = load_train_state(state_dir, model, self.opt, type(model.cfg), kind=kind,
                                                      run=self.run_identity)
            if self.ranks.distributed:
                self.rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), self.step])
            if self.step > cfg.steps:  # nothing would train, and the output would record the smaller budget
                raise ValueError(f"{state_dir}: the run is at step {self.step}, past the {cfg.steps} steps asked "
                                 f"for; rerun with --steps {self.step} or more to resume it")

    def ddp(self, module: torch.nn.Module, find_unused: bool = False) -> torch.nn.Module:
        """`module` wrapped for DDP in a torchrun job (itself in a single process): the loss calls it."""
        return wrap_ddp(module, self.ranks.device, find_unused) if self.ranks.distributed else module

    def run(self, loss: Callable[[int], tuple[torch.Tensor, Logs]],
            validate: Callable[[bool], dict[str, float]] | None = None,
            save: Callable[[int, dict[str, float], float], None] | None = None, *,
            on_step: Callable[[int], None] | None = None, report: Callable[[int, Logs], str] = report_all,
            postfix: str = "", postfix_every: int = 1) -> dict[str, float]:
        """Train up to `cfg.steps`; returns rank 0's final `validate(True)` ({} elsewhere, or without one).

        Args:
            loss: `loss(step) -> (loss, logs)`, the batch's loss and figures to show (numbers or 0-d tensors).
            validate: `validate(final) -> dict`, held-out figures, at every save (final=False) and at the end.
            save: `save(step, metrics, seconds)` writes the result (rank 0, after the last step); seconds
                is this process's training time.
            on_step: called with the step just taken, after the optimiser's step (e.g. a MoE bias update).
            report: the line written at each save, from the step and the logs with the validation merged in.
            postfix: the bar's postfix, a format string over the logs (e.g. "loss={loss:.4f}"), shown every
                `postfix_every` steps.
        """
        t0 = time.perf_counter()
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.desc, dynamic_ncols=True,
                   disable=not self.progress or self.ranks.rank != 0)
        with self._metrics_log() as log:
            while self.step < self.cfg.steps:
                self.logs = self._one_step(loss, on_step)
                log.add(self.logs)
                bar.update(1)
                if postfix and self.step % postfix_every == 0:
                    bar.set_postfix_str(postfix.format(**self.logs))
                if self.ranks.rank == 0:
                    self._after_step(log, validate, report, bar)
        bar.close()
        metrics: dict[str, float] = {}
        if self.ranks.rank == 0:
            metrics = validate(True) if validate is not None else {}
            if save is not None:
                save(self.step, metrics, time.perf_counter() - t0)
        if self.ranks.distributed:
            finish_distributed(self.params)
        return metrics

    def _metrics_log(self) -> MetricsLog | NoLog:
        """Rank 0's log, `OUT.log` beside the state directory `OUT.train`; none without a state directory."""
        if self.state_dir is None or self.ranks.rank != 0:
            return NoLog()
        return MetricsLog(log_dir_for(Path(self.state_dir).with_suffix("")), self.step,
                          config=self.config)

    def _after_step(self, log: MetricsLog | NoLog, validate: Callable[[bool], dict[str, float]] | None,
                    report: Callable[[int, Logs], str], bar: tqdm) -> None:
        """Rank 0's work after a step: at a save the validation, its report and the training state; the
        metrics line at a save and every `log_every` steps, written before the state, so that a kill
        between the two leaves a line that the resume drops."""
        due = self.cfg.due(self.step)
        held_out: dict[str, float] = {}
        if due and validate is not None:
            held_out = validate(False)
            self.logs.update(held_out)
            bar.write(report(self.step, self.logs))
        line = due or self.step % self.cfg.log_every == 0
        if line:
            log.write(self.step, self.opt.param_groups[0]["lr"], held_out, sync=due)
        if due:
            self.save_state()
        if line:
            log.restart()

    def _one_step(self, loss: Callable[[int], tuple[torch.Tensor, Logs]],
                  on_step: Callable[[int], None] | None) -> Logs:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = cosine_lr(self.step, cfg.steps, cfg.warmup, cfg.lr)
        value, logs = loss(self.step)
        self.opt.zero_grad(set_to_none=True)
        value.backward()
        if cfg.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip)
        self.opt.step()
        if on_step is not None:
            on_step(self.step)
        self.step += 1
        return logs

    def save_state(self) -> None:
        """Write the training state (weights, optimiser, step, NumPy stream) to `state_dir`, if any."""
        if self.state_dir is not None:
            save_train_state(self.state_dir, self.model, self.opt, self.model.cfg, kind=self.kind, step=self.step,
                             rng=self.rng, run=self.run_identity, extra=self.extra)
