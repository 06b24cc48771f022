"""What each stage of a dynamics run trains on: the batches a step draws and the objective over them.

A physics-first recipe runs three stages, each its own resumable run started from the last one's
best checkpoint (`--init`):

- `physics`: teacher-forced windows without frames (action and state tokens alone) at a large batch,
  optionally with Gaussian noise on the input states: the cheap data the physics learns from;
- `rollout`: the model's own K-step open-loop rollouts without frames, through the cached step, K
  growing from 1 over `rollout_ramp` steps, beside the teacher-forced windows (`state_only_batch`);
- `frames`: teacher-forced windows with frames, the frameless teacher-forced windows kept beside them
  (`state_only_batch`) so the physics keeps its loss, and optionally the K-step open-loop loss with
  frames, fed the model's own states and codes (`rollout_steps`).

`mixed` is a single run with frames on every loss the config turns on. Since action and state tokens
never read frame tokens (`worldsim.model.dynamics`), a framed rollout's physics is the frameless
rollout's, and the frames stage can only move the physics through the weights both share.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from worldsim.envs.loader import WindowSampler

STAGES = ("mixed", "physics", "rollout", "frames")
FRAMED_STAGES = ("mixed", "frames")


class Objective(torch.nn.Module):
    """The training loss as one module, so DDP sees exactly one forward per backward (the open-loop
    passes included). Each batch is None when the stage does not draw it."""

    def __init__(self, wm: torch.nn.Module):
        super().__init__()
        self.wm = wm

    def forward(self, batch, cfg, rollout: bool, rng: torch.Generator | None, transitions=None, unrolled=None,
                state_only=None):
        wm = self.wm
        loss, logs = torch.zeros((), device=wm.device), {}
        if batch is not None:  # framed windows, teacher-forced (and the open-loop second pass when drawn)
            loss, logs = wm.loss(batch, rng, rollout, corrupt_prob=cfg.corrupt_prob, state_noise=cfg.state_noise,
                                 rollout_prob=cfg.rollout_prob, state_weight=cfg.state_weight)
        if state_only is not None:  # windows without frames: action and state tokens alone
            if cfg.stage == "mixed" and cfg.state_rollout_steps:
                aux, aux_logs = wm.rollout_loss(state_only, prefix="state_only", state_weight=cfg.state_weight)
            else:
                aux, aux_logs = wm.state_only_loss(state_only, state_noise=cfg.state_noise, rng=rng,
                                                   state_weight=cfg.state_weight)
            logs.update(aux_logs)
            loss = loss + aux
        if unrolled is not None:  # the K-step open-loop loss on windows of K + 1 steps
            aux, aux_logs = wm.rollout_loss(unrolled, detach=cfg.rollout_detach, state_weight=cfg.state_weight)
            logs.update(aux_logs)
            loss = loss + aux
        if transitions is not None:  # the pathway alone, one step from recorded states (no clamp)
            aux = wm.pathway_loss(transitions, clamp=False)[0]
            logs["pathway_mse"] = aux.item()
            loss = loss + aux
        logs["loss"] = loss.item()
        return loss, logs


def frame_parameters(dyn: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights only frame tokens run through (`Dynamics`' code and position embeddings, the pruning
    scorers, the frame head, and the frame row of the type embedding), every other weight of `dyn`
    frozen: the physics tokens' computation cannot move. The type embedding's action and state rows
    get no update (their gradient is zeroed)."""
    dyn.requires_grad_(False)
    params = [dyn.code_emb.weight, dyn.pos_emb, dyn.type_emb, *dyn.frame_head.parameters()]
    params += [p for blk in dyn.blocks if blk.scorer is not None for p in blk.scorer.parameters()]
    for p in params:
        p.requires_grad_(True)
    physics_rows = torch.ones_like(dyn.type_emb)
    physics_rows[2] = 0  # rows: action, state, frame
    dyn.type_emb.register_hook(lambda g: g * (1 - physics_rows))
    return params


def rollout_k(cfg, step: int) -> int:
    """K of the open-loop loss at `step`: `rollout_steps`, reached linearly from 1 over `rollout_ramp` steps."""
    if not cfg.rollout_ramp:
        return cfg.rollout_steps
    return max(1, min(cfg.rollout_steps, math.ceil(cfg.rollout_steps * (step + 1) / cfg.rollout_ramp)))


def _frameless_draws(cfg, datasets, T: int, size: int, rank: int, stream: int):
    """`draw(step)`: `size` windows of T steps without frames from one of `datasets` (picked in
    proportion to their windows), seeded by the step; None when `size` is 0."""
    if not size:
        return None
    samplers = [WindowSampler(d, T=T, keys=()) for d in datasets]
    share = np.array([s.num_windows for s in samplers], dtype=np.float64)

    def draw(step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([cfg.seed, rank, stream, step])
        pick = samplers[int(rng.choice(len(samplers), p=share / share.sum()))]
        return pick.windows(rng.integers(pick.num_windows, size=size))

    return draw


def stage_loss(objective: torch.nn.Module, train_data, context: int, rng: np.random.Generator, cfg, draw, ranks,
               state_sets=()):
    """`loss(step)`: the objective on the batches `cfg.stage` draws at `step` (see the module doc), plus
    the pathway's transitions `draw(step)` when the model has one. The framed windows come from the
    loop's stream `rng` (saved with every checkpoint), the others from step seeds, so a resumed run
    draws what an uninterrupted one would."""
    framed = cfg.stage in FRAMED_STAGES
    every = (train_data, *state_sets)
    sampler = WindowSampler(train_data, T=context + 1, keys=("codes",), rng=rng) if framed else None
    if cfg.stage == "physics":  # the teacher-forced frameless windows are the batch itself
        tf = _frameless_draws(cfg, every, context + 1, cfg.batch_size, ranks.rank, 5)
    else:
        T = (cfg.state_rollout_steps if cfg.stage == "mixed" else 0) or context
        tf = _frameless_draws(cfg, every, T + 1, cfg.state_only_batch, ranks.rank, 5)
    unrolled = None
    if cfg.stage == "rollout":
        unrolled = _frameless_draws(cfg, every, cfg.rollout_steps + 1, cfg.batch_size, ranks.rank, 3)
    elif cfg.rollout_steps:
        keys = ("codes",)
        win = WindowSampler(train_data, T=cfg.rollout_steps + 1, keys=keys)

        def unrolled(step: int) -> dict[str, torch.Tensor]:
            pick = np.random.default_rng([cfg.seed, ranks.rank, 3, step]).integers(
                win.num_windows, size=cfg.rollout_batch or cfg.batch_size)
            return win.windows(pick)
    gen = torch.Generator(device=ranks.device)

    def loss(step: int) -> tuple[torch.Tensor, dict]:
        batch = sampler.sample(cfg.batch_size) if framed else None
        # Seeded by the step: the same open-loop decision on every rank (so all ranks run the same
        # graph), and the same code corruption and state noise after a resume.
        rollout = framed and bool(np.random.default_rng([cfg.seed, step]).random() < cfg.rollout_prob)
        gen.manual_seed(int(np.random.SeedSequence([cfg.seed, ranks.rank, step]).generate_state(1)[0]))
        windows = None
        if unrolled is not None:
            windows = unrolled(step)
            k = rollout_k(cfg, step)
            windows = {n: v[:, : k + 1] if v.ndim > 1 else v for n, v in windows.items()}
        logs_extra = {"unroll_k": float(rollout_k(cfg, step))} if unrolled is not None else {}
        value, logs = objective(batch, cfg, rollout, gen, None if draw is None else draw(step), windows,
                                None if tf is None else tf(step))
        return value, logs | logs_extra

    return loss
