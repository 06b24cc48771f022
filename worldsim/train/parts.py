"""Fit parts of a trained world model alone, the transformer unchanged: `worldsim train pathway`,
`worldsim train renderer` and `worldsim train outcome`.

The state pathway (`worldsim.model.state_pathway`) maps (normalised state, action) to the state's
change. In models without the state token's head (`DynamicsConfig.state_head=False`, the `mlp` baseline preset) it
alone carries the rollout's state; the transformer reads that state but none of its weights change
here. So the pathway can learn from datasets made without frames (`worldsim data generate
--no-frames`): no rendering, a few thousand transitions a second per core, and far more of them than
the frame data that trained the transformer.

The loss is unrolled as `WorldModel.step` rolls out: from a recorded state the pathway is applied
`unroll` times under the recorded actions (static dimensions held, the state clamped to the
model's bounds), and the mean squared error of every predicted state against the recorded one is
minimised, in normalised units. `unroll=1` is the one-step loss of the dynamics trainer.

The state renderer (`worldsim.model.state_renderer`, added by `train renderer`) maps a normalised
state to the frame head's logits for the frame of that state. In a rollout it reads the state the
pathway just predicted, so the predicted frame follows the predicted physics; it is fitted on the
dataset's frames, encoded by the model's tokenizer, against their recorded states.

The outcome head (`worldsim.model.outcome_head`, added by `train outcome`) maps (normalised next
state, action) to that step's reward and termination logit. In a rollout it reads the state the
pathway just predicted, where the transformer's own reward and termination heads read the action
token, which never sees that state; it is fitted on the datasets' recorded transitions (mean squared
error of the normalised reward plus the termination's binary cross-entropy).

    OUT/        the world model with the new part (a normal checkpoint; export it to ship)
    OUT.train/  the training state, saved every `save_every` steps: a killed run resumes from it and
                ends with the same weights as an uninterrupted one
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldsim.core.checkpoint import load_checkpoint_extra
from worldsim.core.config import ConfigBase, check_positive
from worldsim.core.registry import resolve_checkpoint
from worldsim.core.runtime import resolve_device
from worldsim.envs.loader import EpisodeDataset, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.model.outcome_head import OutcomeHeadConfig
from worldsim.model.state_pathway import StatePathwayConfig
from worldsim.model.state_renderer import RENDER_MIXES, StateRendererConfig
from worldsim.model.world_model import WorldModel
from worldsim.train.loop import LoopConfig, TrainLoop, run_config
from worldsim.train.samplers import Frames, Outcomes, Sequences
from worldsim.train.state import checkpoint_identity, data_identity, prepare_outputs, state_dir_for


@dataclass(frozen=True)
class PartTrainConfig(ConfigBase):
    """What the part trainers share."""

    steps: int = 20000
    """optimiser steps"""
    batch_size: int = 1024
    """samples per step (for the pathway: transition sequences of `unroll` steps)"""
    lr: float = 1e-3
    """peak learning rate (linear warm-up, then a cosine down to 5% of it)"""
    warmup: int = 200
    """steps of linear learning-rate warm-up"""
    val_fraction: float = 0.02
    """held-out share of the first dataset's episodes"""
    save_every: int = 1000
    """steps between resumable checkpoints"""
    seed: int = 0
    """training seed"""

    def __post_init__(self) -> None:
        check_positive(type(self).__name__, steps=self.steps, batch_size=self.batch_size, save_every=self.save_every,
                       lr=self.lr)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"{type(self).__name__}.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class PathwayTrainConfig(PartTrainConfig):
    unroll: int = 1
    """steps the loss rolls the pathway out from each recorded state"""
    # For a model without a pathway: give it one of this width (it then carries the state alone,
    # replacing the state token's head). 0: fit the model's own pathway.
    width: int = 0
    """for a model without a pathway: add one of this width, which then carries the state alone (the
    state token's head is dropped); 0: fit the model's own"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("PathwayTrainConfig", unroll=self.unroll)
        if self.width < 0:
            raise ValueError(f"PathwayTrainConfig.width must be >= 0, got {self.width}")


@dataclass(frozen=True)
class RendererTrainConfig(PartTrainConfig):
    steps: int = 6000
    batch_size: int = 256
    """frames per step"""
    val_fraction: float = 0.05
    save_every: int = 500
    width: int = 512
    """the renderer MLP's width"""
    mix: str = "sum"
    """add the renderer's logits to the frame head's (sum) or use them alone (replace)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("RendererTrainConfig", width=self.width)
        if self.mix not in RENDER_MIXES:
            raise ValueError(f"RendererTrainConfig.mix must be 'sum' or 'replace', got {self.mix!r}")


@dataclass(frozen=True)
class OutcomeTrainConfig(PartTrainConfig):
    steps: int = 4000
    batch_size: int = 1024
    """transitions per step"""
    width: int = 128
    """the outcome MLP's width"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("OutcomeTrainConfig", width=self.width)


def _base_extra(checkpoint) -> dict:
    """The `extra` of the base checkpoint (its training record), kept in the refitted model's."""
    return load_checkpoint_extra(resolve_checkpoint(checkpoint, kind="world_model"), kind="world_model")


def check_datasets(datasets, want: dict, against: str) -> None:
    """Refuse, before any work, datasets whose manifest differs from `want` (e.g. scene, state_dim,
    action_dim) or that were made with different scene configs; `against` names what `want` came from."""
    first = None
    for d in datasets:
        m = read_manifest(d)
        for key, v in want.items():
            if m.get(key) != v:
                raise ValueError(f"dataset {d}: {key} {m.get(key)!r}, but {against} has {v!r}")
        first = first or (d, m.get("scene_config_hash"))
        if m.get("scene_config_hash") != first[1]:
            raise ValueError(f"dataset {d} was made with another scene config than {first[0]} "
                             f"(scene_config_hash {m.get('scene_config_hash')} vs {first[1]})")


def _base(checkpoint, device: str) -> WorldModel:
    """The model a part trainer starts from, in float32."""
    return WorldModel.from_pretrained(checkpoint, device=resolve_device(device)).float()


def _split(data, val_fraction: float, frames: bool) -> tuple[list, list]:
    """`data` opened for a part trainer: (training datasets, held-out datasets), the first dataset's
    last `val_fraction` of episodes held out."""
    train_ep, val_ep = split_episodes(read_manifest(data[0])["episodes"], val_fraction)
    train = [EpisodeDataset(data[0], train_ep, frames=frames), *(EpisodeDataset(d, frames=frames) for d in data[1:])]
    return train, [EpisodeDataset(data[0], val_ep, frames=frames, verify=False)]


def _check_data(wm: WorldModel, checkpoint, datasets) -> None:
    dyn = wm.cfg.dynamics
    check_datasets(datasets, {"scene": wm.cfg.scene, "state_dim": dyn.state_dim, "action_dim": dyn.action_dim},
                   f"the model {checkpoint}")


def _fit(wm: WorldModel, params: list[torch.nn.Parameter], cfg: PartTrainConfig, out: str | Path,
         train_loss, validate, extra: dict, desc: str, progress: bool, force: bool,
         log_config: dict | None, select: str | None = None) -> dict[str, float]:
    """The part trainers' run of the loop: AdamW on `params` alone (the rest of `wm` frozen), no
    weight decay or clipping, `train_loss(step)` a batch's loss (seeded by the step, so a resumed run
    draws the same batches), `validate(batches)` a dict of held-out figures (8 batches at saves, 16
    at the end, for validators that sample batches); resumable from `out`.train. `log_config` is
    what `OUT.log/config.json` holds (the CLI passes every argument of the run; None: `cfg`'s fields).
    `select`: a held-out figure (higher is better) by which `out` is the best validated checkpoint,
    not the last (None: the last); the figures returned are then that checkpoint's, with its
    `best_step`."""
    wm.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    extra = {f"{desc.replace(' ', '_')}_config": cfg.to_dict(), **extra}
    # A resumed run must be the same run: same part, training config (but steps), base weights and data.
    run = {"part": desc, "train_config": run_config(cfg), "model_config": wm.cfg.to_dict(),
           "base": checkpoint_identity(extra["base"], "world_model"),
           "data": data_identity(extra.get("state_data", extra.get("data", [])))}
    loop = TrainLoop(wm, params, LoopConfig(cfg.steps, cfg.lr, cfg.warmup, cfg.save_every),
                     state_dir=state_dir_for(out), kind="world_model", run=run, extra=extra, seed=cfg.seed,
                     desc=desc, progress=progress, config=log_config or cfg.to_dict())

    def loss(step: int) -> tuple[torch.Tensor, dict]:
        value = train_loss(step)
        return value, {"loss": value.detach()}

    def report(step: int, logs: dict) -> str:
        held_out = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "loss")
        return f"step {step}: train loss {logs['loss']:.4g}, {held_out}"

    def save(step: int, metrics: dict[str, float], seconds: float | None = None) -> None:
        wm.save(out, force=force, extra={**extra, "steps": step, **metrics, "train_seconds_this_run": seconds,
                                         "base_extra": _base_extra(extra["base"])})

    if select is None:
        return loop.run(loss, lambda final: validate(16 if final else 8), save, report=report,
                        postfix="loss={loss:.3g}", postfix_every=50)
    best = {}
    if loop.resumed and (Path(out) / "config.json").is_file():
        kept = load_checkpoint_extra(out, kind="world_model")
        best = {select: kept[select], "best_step": kept.get("best_step", kept["steps"])} if select in kept else {}
    t0 = time.perf_counter()

    def validate_and_keep(final: bool) -> dict[str, float]:
        metrics = validate(16 if final else 8)
        held = best.get(select, np.nan)
        if np.isnan(held) or metrics[select] > held:  # the best so far is the output (the first, whatever it is)
            best.update({select: metrics[select], "best_step": loop.step})
            save(loop.step, {**metrics, "best_step": loop.step}, time.perf_counter() - t0)
        return {**metrics, f"best_{select}": best[select]}

    final = loop.run(loss, validate_and_keep, None, report=report, postfix="loss={loss:.3g}", postfix_every=50)
    kept = load_checkpoint_extra(out, kind="world_model")  # the figures of the checkpoint `out` holds
    return {**{k: kept[k] for k in final if k in kept}, "best_step": kept.get("best_step", kept["steps"])}


def train_pathway(checkpoint: str | Path, state_data: list[str] | tuple[str, ...], out: str | Path,
                  cfg: PathwayTrainConfig = PathwayTrainConfig(), device: str = "auto",
                  progress: bool = True, force: bool = False, log_config: dict | None = None
                  ) -> dict[str, float]:
    """Fit the state pathway of the world model `checkpoint` on the transitions of `state_data` (datasets
    of its scene, with or without frames) and write the model to `out`; resumes from `out`.train.
    `log_config`: what `OUT.log/config.json` holds (default: `cfg`'s fields)."""
    if not state_data:
        raise ValueError("train pathway needs at least one dataset (--state-data)")
    prepare_outputs(out, "world_model", force=force)  # before any work
    wm = _base(checkpoint, device)
    if cfg.width:
        wm = with_pathway(wm, cfg.width, cfg.seed)
    elif wm.pathway is None:
        raise ValueError(f"{checkpoint}: this world model has no state pathway; give it one with --width, or "
                         f"train with a preset that has one, e.g. --preset mlp")
    elif wm.cfg.dynamics.state_head:
        raise ValueError(f"{checkpoint}: the state token's head adds its own correction to this model's pathway "
                         f"(DynamicsConfig.state_head=True), so the pathway cannot be fitted alone; train with a "
                         f"preset whose pathway carries the state alone (mlp)")
    _check_data(wm, checkpoint, state_data)
    train_sets, val_sets = _split(state_data, cfg.val_fraction, frames=False)
    train = Sequences(train_sets, wm, cfg.unroll)
    val = Sequences(val_sets, wm, cfg.unroll, what="held-out")

    def train_loss(step: int) -> torch.Tensor:
        return wm.pathway_loss(train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))[0]

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        per = torch.stack([wm.pathway_loss(val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]["per_step"]
                           for i in range(batches)]).mean(0)
        return {"val_mse": float(per.mean()), "val_mse_step1": float(per[0]), "val_mse_last": float(per[-1])}

    extra = {"base": str(checkpoint), "state_data": [str(d) for d in state_data], "runs": len(train),
             "short_episodes": train.short_episodes}
    return _fit(wm, list(wm.pathway.parameters()), cfg, out, train_loss, validate, extra,
                "state pathway", progress, force, log_config)


def _rebuilt(wm: WorldModel, seed: int, drop: str = "", **fields) -> WorldModel:
    """`wm` rebuilt with new WorldModelConfig `fields`: its weights (less those under `drop`) loaded,
    the new side models initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = WorldModel(wm.cfg.replace(**fields)).to(wm.device)
    own = {k: v for k, v in wm.state_dict().items() if not (drop and k.startswith(drop))}
    missing, unexpected = new.load_state_dict(own, strict=False)
    added = tuple(f"{k}." for k in new.parts() if k not in wm.parts())
    missing = [k for k in missing if not (added and k.startswith(added))]
    if missing or unexpected:
        raise ValueError(f"cannot rebuild the model with {fields}: missing {missing}, unexpected {unexpected}")
    return new.train(wm.training)  # in eval mode the MoE counts no routed tokens: the frozen world's stay as loaded


def with_pathway(wm: WorldModel, width: int, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained state pathway of `width` that carries the state alone (the state
    token's head, if any, dropped). A model that has a pathway already is refused."""
    if wm.pathway is not None:
        raise ValueError(f"the model has a state pathway already (width {wm.cfg.pathway.width}); "
                         f"leave --width unset to fit it")
    return _rebuilt(wm, seed, drop="dynamics.state_head.", pathway=StatePathwayConfig(width=width),
                    dynamics=wm.cfg.dynamics.replace(state_head=False))


def with_renderer(wm: WorldModel, width: int, mix: str, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained state renderer initialised from `seed` (or its own, when it has one of
    this width: then only the mix changes)."""
    have = wm.cfg.renderer
    if have is not None and have.width == width and have.mix == mix:
        return wm
    if have is not None and have.width != width:
        raise ValueError(f"the model has a state renderer of width {have.width}, asked for {width}")
    return _rebuilt(wm, seed, renderer=StateRendererConfig(width=width, mix=mix))


def train_renderer(checkpoint: str | Path, data: list[str] | tuple[str, ...], out: str | Path,
                   cfg: RendererTrainConfig = RendererTrainConfig(), device: str = "auto",
                   progress: bool = True, force: bool = False, log_config: dict | None = None
                   ) -> dict[str, float]:
    """Give the world model `checkpoint` a state renderer fitted on the frames and states of `data`
    (datasets of its scene, with frames) and write it to `out`; resumes from `out`.train.
    `log_config`: what `OUT.log/config.json` holds (default: `cfg`'s fields)."""
    if not data:
        raise ValueError("train renderer needs at least one dataset with frames (--data)")
    prepare_outputs(out, "world_model", force=force)  # before any work
    wm = _base(checkpoint, device)
    _check_data(wm, checkpoint, data)
    for d in data:
        if not read_manifest(d).get("frames", True):
            raise ValueError(f"dataset {d} has no frames (generated with --no-frames); the renderer learns frames")
    wm = with_renderer(wm, cfg.width, cfg.mix, cfg.seed)
    train_sets, val_sets = _split(data, cfg.val_fraction, frames=True)
    train, val = Frames(train_sets, wm), Frames(val_sets, wm)
    renderer = wm.renderer

    def train_loss(step: int) -> torch.Tensor:
        return renderer.loss(train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))[0]

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        logs = [renderer.loss(val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]
                for i in range(batches)]
        return {f"val_{k}": float(torch.stack([g[k] for g in logs]).mean()) for k in ("ce", "token_acc")}

    extra = {"base": str(checkpoint), "data": [str(d) for d in data], "frames": len(train)}
    return _fit(wm, list(renderer.parameters()), cfg, out, train_loss, validate, extra, "state renderer",
                progress, force, log_config)


def with_outcome(wm: WorldModel, width: int, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained outcome head of `width` initialised from `seed` (or its own, when it
    has one of this width: it is then fitted further)."""
    have = wm.cfg.outcome
    if have is not None and have.width == width:
        return wm
    if have is not None:
        raise ValueError(f"the model has an outcome head of width {have.width}, asked for {width}")
    return _rebuilt(wm, seed, outcome=OutcomeHeadConfig(width=width))


def train_outcome(checkpoint: str | Path, state_data: list[str] | tuple[str, ...], out: str | Path,
                  cfg: OutcomeTrainConfig = OutcomeTrainConfig(), device: str = "auto",
                  progress: bool = True, force: bool = False, log_config: dict | None = None
                  ) -> dict[str, float]:
    """Give the world model `checkpoint` an outcome head fitted on the transitions of `state_data`
    (datasets of its scene, with or without frames) and write it to `out`, its rollout rewards held to
    the range of the training rewards (`WorldModelConfig.reward_range`); resumes from `out`.train.
    `log_config`: what `OUT.log/config.json` holds (default: `cfg`'s fields)."""
    if not state_data:
        raise ValueError("train outcome needs at least one dataset (--state-data)")
    prepare_outputs(out, "world_model", force=force)  # before any work
    wm = _base(checkpoint, device)
    _check_data(wm, checkpoint, state_data)
    wm = with_outcome(wm, cfg.width, cfg.seed)
    train_sets, val_sets = _split(state_data, cfg.val_fraction, frames=False)
    train, val = Outcomes(train_sets, wm), Outcomes(val_sets, wm)
    wm.cfg = wm.cfg.replace(reward_range=train.reward_range)  # the rollout's rewards stay in the data's range

    def train_loss(step: int) -> torch.Tensor:
        return wm.outcome.loss(train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))[0]

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        logs = [wm.outcome.loss(val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]
                for i in range(batches)]
        return {f"val_{k}": float(torch.stack([g[k] for g in logs]).mean()) for k in logs[0]}

    extra = {"base": str(checkpoint), "state_data": [str(d) for d in state_data], "transitions": len(train),
             "terminations": int(train.terminated.sum())}
    return _fit(wm, list(wm.outcome.parameters()), cfg, out, train_loss, validate, extra,
                "outcome head", progress, force, log_config)
