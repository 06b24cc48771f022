"""Training the dynamics transformer on a dataset's token stream, resumably, with torchrun DDP.

    worldsim train dynamics --data data/reacher --tokenizer Reacher-v5 --preset v4 --out runs/reacher-v4

All frames are encoded once with the (frozen) tokenizer. Each step draws windows of context + 1
steps; the model sees the first `context` and predicts each next frame's codes, state, reward and
termination (the losses and their defences against drift: `worldsim.model.window_loss`, and the
K-step open-loop losses, with and without frames: `worldsim.model.rollout_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from worldsim.core.config import ConfigBase
from worldsim.core.runtime import seed_everything
from worldsim.envs.loader import EpisodeDataset, split_episodes
from worldsim.envs.manifest import read_manifest
from worldsim.model.dynamics import PRESETS, DynamicsConfig, preset_config
from worldsim.model.moe import load_stats
from worldsim.model.tokenizer import Tokenizer
from worldsim.model.world_model import PART_PRESETS, WorldModel, WorldModelConfig
from worldsim.train.data_stats import state_bounds, static_state_dims
from worldsim.train.distributed import Ranks, all_reduce_, setup_distributed
from worldsim.train.loop import LoopConfig, TrainLoop, prepare_run, run_config
from worldsim.train.open_loop import HeldOut
from worldsim.train.parts import check_datasets
from worldsim.train.samplers import Sequences, encode_dataset
from worldsim.train.stages import FRAMED_STAGES, STAGES, Objective, frame_parameters, stage_loss
from worldsim.train.state import checkpoint_identity, data_identity


@dataclass(frozen=True)
class DynamicsTrainConfig(ConfigBase):
    steps: int = 4000
    """optimiser steps"""
    batch_size: int = 16
    """windows per step (per process)"""
    lr: float = 1e-3
    """peak learning rate (linear warm-up, then a cosine down to 5% of it)"""
    weight_decay: float = 0.05
    """AdamW weight decay"""
    warmup: int = 100
    """steps of linear learning-rate warm-up"""
    corrupt_prob: float = 0.1
    """share of input frame codes replaced by random codes (against drift)"""
    state_noise: float = 0.0
    """std of the Gaussian noise on input states, in dataset stds (0: none)"""
    rollout_prob: float = 0.5
    """probability that a step adds a second, open-loop pass on the model's own predictions"""
    rollout_steps: int = 0
    """K of the K-step open-loop loss through the cached step added every step (0: off)"""
    state_only_batch: int = 0
    """windows per step without frames (the training data's and --state-data's states) whose steps
    carry their action and state tokens alone: state-only data trains the transformer (0: off)"""
    state_rollout_steps: int = 0
    """K of the open-loop loss on the windows without frames, through the cached step (0: their
    teacher-forced loss on windows of context + 1 steps)"""
    rollout_batch: int = 0
    """windows per step of the K-step open-loop loss with frames (0: --batch-size)"""
    val_fraction: float = 0.1
    """held-out share of the dataset's episodes"""
    save_every: int = 250
    """steps between resumable checkpoints"""
    seed: int = 0
    """training seed"""
    balance: bool = True
    """update the MoE load-balancing bias (--no-balance: off, for contrast)"""
    val_batches: int = 8
    """held-out batches per validation (twice as many at the end)"""
    # Models with a state pathway (WorldModelConfig.pathway): each step also fits the pathway alone
    # to the state change on `state_batch` random transitions (an MLP pass: cheap next to the
    # transformer's), after `state_pretrain` steps of that alone before the first transformer step.
    state_batch: int = 1024
    """transitions per step that fit the state pathway alone (presets with one)"""
    state_pretrain: int = 0
    """steps fitting the state pathway alone before the first transformer step"""
    stage: Literal["mixed", "physics", "rollout", "frames"] = "mixed"
    """what the run trains (worldsim.train.stages): physics (teacher-forced windows without frames, batch-size
    of them), rollout (the K-step open-loop loss without frames on batch-size windows, K ramped up over
    --rollout-ramp steps, beside state-only-batch teacher-forced ones), frames (windows with frames, the
    frameless teacher-forced loss kept on state-only-batch windows), or mixed (frames on every loss turned on)"""
    rollout_ramp: int = 0
    """steps over which K of the open-loop loss grows from 1 to rollout-steps (0: K from the start)"""
    state_weight: float = 1.0
    """weight of the state's squared error against the reward and termination terms in every loss (the
    state's error compounds over a rollout, the others do not)"""
    rollout_detach: bool = False
    """feed each unrolled step the model's own state without its gradient (the pushforward trick: no
    gradient through the chain)"""
    open_loop_horizon: int = 50
    """steps of the held-out open-loop rollout scored at every validation; the run's output is its best
    checkpoint by that score (0: no score, the output is the last step)"""
    open_loop_episodes: int = 64
    """held-out episodes the open-loop score rolls out"""
    freeze_physics: bool = False
    """frames stage: train only the frame tokens' own weights (code and position embeddings, the frame
    type embedding, the pruning scorers, the frame head); every weight the physics tokens run through
    stays as it is, so the physics is the starting weights', bit for bit"""
    physics_tolerance: float = 0.05
    """frames stage: the share of the starting weights' open-loop valid horizon (mean over held-out
    episodes) a checkpoint may lose; among those within it, the best open-loop frame-token accuracy is
    the output"""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"DynamicsTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("corrupt_prob", "rollout_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"DynamicsTrainConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("state_batch", "state_pretrain", "rollout_steps", "state_only_batch", "state_rollout_steps",
                     "rollout_batch", "rollout_ramp", "open_loop_horizon", "open_loop_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"DynamicsTrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.physics_tolerance < 1:
            raise ValueError(f"DynamicsTrainConfig.physics_tolerance must be in [0, 1), got {self.physics_tolerance}")
        if not self.state_weight > 0:
            raise ValueError(f"DynamicsTrainConfig.state_weight must be > 0, got {self.state_weight}")
        if not self.state_noise >= 0:
            raise ValueError(f"DynamicsTrainConfig.state_noise must be >= 0, got {self.state_noise}")
        if self.stage not in STAGES:
            raise ValueError(f"DynamicsTrainConfig.stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.stage == "rollout" and self.rollout_steps < 1:
            raise ValueError("the rollout stage needs rollout_steps >= 1 (the K of its open-loop loss)")
        if self.stage == "frames" and self.state_only_batch < 1 and not self.freeze_physics:
            raise ValueError("the frames stage keeps the physics loss on frameless windows (state_only_batch >= 1) "
                             "or freezes the physics (freeze_physics)")
        if self.freeze_physics and (self.stage != "frames" or self.weight_decay):
            raise ValueError("freeze_physics belongs to the frames stage, with weight_decay 0 (the decay would move "
                             "the type embedding's action and state rows, which the physics reads)")


def batch_loss(wm: WorldModel, batch: dict[str, torch.Tensor], cfg: DynamicsTrainConfig,
               rng: torch.Generator | None = None, force_rollout: bool | None = None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The world model's window loss (`WorldModel.loss`) with this run's corruption, state noise and
    open-loop settings."""
    return wm.loss(batch, rng, force_rollout, corrupt_prob=cfg.corrupt_prob, state_noise=cfg.state_noise,
                   rollout_prob=cfg.rollout_prob)


@torch.no_grad()
def evaluate_batches(wm: WorldModel, batches, cfg: DynamicsTrainConfig) -> dict[str, float]:
    """Teacher-forced losses and accuracy over `batches` (an iterable of window batches), in eval mode
    (no corruption, no open-loop pass), each batch weighted by its windows; for MoE models also the
    expert load summed over all of them (worst layer's MaxVio and min load, dead experts of all layers)."""
    was_training = wm.training
    wm.eval()
    sums: dict[str, float] = {}
    n = 0
    moe = wm.dynamics.moe_layers()
    loads = [torch.zeros(m.experts) for m in moe]
    for batch in batches:
        b = len(batch["states"])
        _, lg = batch_loss(wm, batch, cfg) if "codes" in batch else wm.state_only_loss(batch)
        for k, v in lg.items():
            sums[k] = sums.get(k, 0.0) + v * b
        n += b
        for acc, m in zip(loads, moe):
            acc += m.last_load
    out = {f"val_{k}": v / n for k, v in sums.items()}
    if moe:
        stats = [load_stats(load) for load in loads]
        out["val_maxvio"] = max(s["maxvio"] for s in stats)
        out["val_min_load"] = min(s["min_load"] for s in stats)
        out["val_dead_experts"] = sum(s["dead_experts"] for s in stats)
    wm.train(was_training)
    return out


def validate(wm: WorldModel, sampler, cfg: DynamicsTrainConfig, batches: int = 8, seed: int = 1234
             ) -> dict[str, float]:
    """Held-out figures (`evaluate_batches`) on `batches` batches of `cfg.batch_size` windows; batch i
    is drawn from `seed` and i alone, so every validation of a run (resumed or not) sees the same
    windows. Leaves the model in training mode."""
    picks = (np.random.default_rng([seed, i]).integers(sampler.num_windows, size=cfg.batch_size)
             for i in range(batches))
    out = evaluate_batches(wm, (sampler.windows(p) for p in picks), cfg)
    wm.train()
    return out


def _dynamics_config(preset: str, m: dict, tok: Tokenizer, context: int, bias_gamma: float | None = None,
                     capacity: float | None = None, state_residual: bool | None = None) -> DynamicsConfig:
    """The transformer's config: `preset`'s, sized for the dataset (manifest `m`) and the tokenizer,
    with the overrides that were given."""
    extra = {} if bias_gamma is None else {"bias_gamma": bias_gamma}  # the MoE bias step (preset's otherwise)
    if capacity is not None:
        extra["capacity"] = capacity
    if state_residual is not None:
        extra["state_head"] = state_residual
    if PRESETS.get(preset, {}).get("frame_head") == "factorized":
        extra["code_levels"] = tuple(tok.cfg.levels)
    return preset_config(preset, state_dim=m["state_dim"], action_dim=m["action_dim"], grid=tok.cfg.grid,
                         codebook_size=tok.cfg.codebook_size, context=context, **extra)


def _world_model(m: dict, preset: str, tok: Tokenizer, dyn_cfg: DynamicsConfig, train_data, val_data,
                 codes: bool = True) -> WorldModel:
    """A new world model over the frozen `tok`, its state and reward statistics and state bounds from
    `train_data`; with `codes`, both datasets gain the tokenizer's `codes`."""
    low, high = state_bounds(train_data)
    wm_cfg = WorldModelConfig(scene=m["scene"], preset=preset, tokenizer=tok.cfg, dynamics=dyn_cfg,
                              static_state_dims=static_state_dims(train_data), state_low=low, state_high=high,
                              **PART_PRESETS.get(preset, {}))
    wm = WorldModel(wm_cfg)
    wm.tokenizer.load_state_dict(tok.state_dict())
    wm.tokenizer.requires_grad_(False)
    for d in (train_data, val_data) if codes else ():
        d.add_array("codes", encode_dataset(d, tok))
    wm.state_mean.copy_(torch.from_numpy(train_data.state_mean))
    wm.state_std.copy_(torch.from_numpy(np.maximum(train_data.state_std, 1e-3)))
    r = train_data.arrays["rewards"][train_data.action_frames()]
    wm.reward_mean.fill_(float(r.mean()))
    wm.reward_std.fill_(float(max(r.std(), 1e-3)))
    return wm


def start_from(wm: WorldModel, init: str | Path) -> dict[str, int]:
    """Start `wm`'s transformer, and its state and reward scale, from the world checkpoint `init`: each
    tensor of the same name and shape is copied, the others keep their fresh initialisation. Its
    tokenizer must be `wm`'s, or its frame codes would mean other images."""
    src = WorldModel.from_pretrained(init)
    ours, theirs = wm.tokenizer.state_dict(), src.tokenizer.state_dict()
    if src.cfg.tokenizer != wm.cfg.tokenizer or any(not torch.equal(ours[k].float().cpu(), theirs[k].float())
                                                    for k in ours):
        raise ValueError(f"init {str(init)!r}: its tokenizer is not this run's --tokenizer, so its frame codes mean "
                         f"other images")
    mine, given = wm.dynamics.state_dict(), src.dynamics.state_dict()
    copied = {k: given[k].to(mine[k]) for k in mine if k in given and given[k].shape == mine[k].shape}
    wm.dynamics.load_state_dict({**mine, **copied})
    for name in WorldModel.stats_fp32:
        getattr(wm, name).copy_(getattr(src, name))
    return {"copied": len(copied), "fresh": len(mine) - len(copied)}


def _pathway_draws(wm: WorldModel, cfg: DynamicsTrainConfig, train_data, state_sets, rank: int):
    """`draw(i, stage=1)`: `cfg.state_batch` random transitions of the training data and `state_sets`
    for the state pathway alone, from their own stream seeded by (stage, i) so that a resumed run
    draws the same ones; None for a model without a pathway (or `state_batch=0`)."""
    if wm.pathway is None or cfg.state_batch == 0:
        return None
    transitions = Sequences([train_data, *state_sets], wm, unroll=1)
    return lambda i, stage=1: transitions.sample(cfg.state_batch, np.random.default_rng([cfg.seed, rank, stage, i]))


def pretrain_pathway(wm: WorldModel, cfg: DynamicsTrainConfig, draw, ranks: Ranks, progress: bool) -> None:
    """`cfg.state_pretrain` steps fitting the state pathway alone, before the first transformer step:
    not resumable, nothing saved, and on each rank alone."""
    loop = TrainLoop(wm, list(wm.pathway.parameters()), LoopConfig(cfg.state_pretrain, cfg.lr, cfg.warmup),
                     ranks=ranks._replace(distributed=False), desc="state pathway", progress=progress)

    def loss(i: int) -> tuple[torch.Tensor, dict]:
        mse = wm.pathway_loss(draw(i, stage=0), clamp=False)[0]
        return mse, {"mse": mse.detach()}

    loop.run(loss)
    if ranks.rank == 0:
        print(f"state pathway: {cfg.state_pretrain} steps, mse {loop.logs['mse'].item():.3g}", flush=True)


def _check_state_data(state_data, preset: str, cfg: DynamicsTrainConfig, m: dict, data_dir) -> None:
    """Refuse `state_data` that nothing would read, or that holds another scene than the manifest `m`."""
    if state_data and not (PART_PRESETS.get(preset, {}).get("pathway") and cfg.state_batch) \
            and not cfg.state_only_batch:
        raise ValueError(f"state_data feeds the state pathway (which preset {preset!r}, or state_batch=0, lacks) "
                         f"or the transformer's state-only windows (state_only_batch=0 here)")
    keys = ("scene", "state_dim", "action_dim", "scene_config_hash")
    check_datasets(state_data, {k: m.get(k) for k in keys}, str(data_dir))


def _run_records(wm: WorldModel, cfg: DynamicsTrainConfig, data_dir, state_data, tokenizer, init
                 ) -> tuple[dict, dict]:
    """The run's identity (a resume must match it) and the record saved with its checkpoints."""
    run = {"model_config": wm.cfg.to_dict(), "train_config": run_config(cfg), "data": data_identity([data_dir]),
           "state_data": data_identity(state_data), "tokenizer": checkpoint_identity(tokenizer, "tokenizer"),
           **({} if init is None else {"init": checkpoint_identity(init, "world_model")})}
    provenance = {"state_data": [str(d) for d in state_data]} if state_data else {}
    if init is not None:
        provenance["init"] = str(init)
    return run, {"train_config": cfg.to_dict(), "data": str(data_dir), **provenance}


def _open(data_dir: str, tokenizer: str, preset: str, cfg: DynamicsTrainConfig, context: int, ranks: Ranks,
          overrides: dict, state_data, init) -> tuple[WorldModel, EpisodeDataset, EpisodeDataset]:
    """The run's world model (fresh, or its transformer from `init`) on `ranks.device`, and the training
    and held-out splits of `data_dir` (with the tokenizer's codes when the stage reads frames)."""
    m = read_manifest(data_dir)
    framed = cfg.stage in FRAMED_STAGES
    if framed and not m.get("frames", True):
        raise ValueError(f"dataset {data_dir} has no frames (generated with --no-frames); the {cfg.stage} stage "
                         f"trains frames: give a dataset with frames, or --stage physics / rollout")
    tok = Tokenizer.from_pretrained(tokenizer, device=ranks.device)
    dyn_cfg = _dynamics_config(preset, m, tok, context, **overrides)
    _check_state_data(state_data, preset, cfg, m, data_dir)  # before any work
    train_ep, val_ep = split_episodes(m["episodes"], cfg.val_fraction)
    train_data = EpisodeDataset(data_dir, train_ep, frames=framed)
    val_data = EpisodeDataset(data_dir, val_ep, verify=False, frames=framed)
    wm = _world_model(m, preset, tok, dyn_cfg, train_data, val_data, codes=framed)
    if init is not None:
        start = start_from(wm, init)
        if ranks.rank == 0:
            print(f"init {init}: {start['copied']} tensors copied, {start['fresh']} fresh", flush=True)
    wm = wm.to(ranks.device)
    for layer in wm.dynamics.moe_layers():
        layer.balance = cfg.balance
    return wm, train_data, val_data


def train_dynamics(data_dir: str, tokenizer: str, out: str | Path, preset: str = "v4",
                   cfg: DynamicsTrainConfig = DynamicsTrainConfig(), device: str = "auto", context: int = 4,
                   progress: bool = True, bias_gamma: float | None = None,
                   capacity: float | None = None, state_data: list[str] | tuple[str, ...] = (),
                   state_residual: bool | None = None, init: str | Path | None = None, force: bool = False,
                   log_config: dict | None = None) -> dict[str, float]:
    """Train (or resume) a world model's dynamics on `data_dir` with the frozen `tokenizer`.

    `cfg.stage` says what the run trains (`worldsim.train.stages`); the frameless stages read no frames,
    so `data_dir` may be a dataset made with `--no-frames`. `state_data`: more datasets of the same
    scene whose transitions (states and actions only) also fit the state pathway of presets that have
    one, and feed the frameless windows; their frames are not used. `init`: a world checkpoint whose
    transformer weights start the run (`start_from`). With `cfg.open_loop_horizon`, every validation
    rolls held-out episodes out open loop (`worldsim.train.open_loop`) and `out` is the checkpoint
    with the best score so far (the starting weights of a run from `init` included). `out` must be
    absent, empty or a world-model checkpoint (`force`: any checkpoint); a resume continues only the
    same run (same data, tokenizer, model and training configs; `cfg.steps` may change). `log_config`:
    the whole run's arguments, which `OUT.log/config.json` holds for `--config` (default: `cfg`'s).
    """
    if cfg.stage in ("rollout", "frames") and init is None:
        raise ValueError(f"the {cfg.stage} stage continues a trained world: give --init (the previous stage's output)")
    ranks = setup_distributed(device)
    state_dir = prepare_run(out, "world_model", ranks, force=force)
    seed_everything(cfg.seed)
    overrides = dict(bias_gamma=bias_gamma, capacity=capacity, state_residual=state_residual)
    wm, train_data, val_data = _open(data_dir, tokenizer, preset, cfg, context, ranks, overrides, state_data, init)
    params = frame_parameters(wm.dynamics) if cfg.freeze_physics else \
        [p for m in (wm.dynamics, *wm.parts().values()) for p in m.parameters() if p.requires_grad]
    run, record = _run_records(wm, cfg, data_dir, state_data, tokenizer, init)
    loop = TrainLoop(wm, params, LoopConfig(cfg.steps, cfg.lr, cfg.warmup, cfg.save_every, cfg.weight_decay,
                                            betas=(0.9, 0.95), clip=1.0),
                     state_dir=state_dir, kind="world_model", run=run, extra=record, seed=[cfg.seed, ranks.rank],
                     ranks=ranks, desc=f"dynamics {preset} ({cfg.stage})", progress=progress, config=log_config)
    objective = loop.ddp(Objective(wm), find_unused=wm.cfg.dynamics.moe)  # an expert may get no token on a rank
    state_sets = [EpisodeDataset(d, frames=False) for d in state_data]  # read once, for both uses
    draw = _pathway_draws(wm, cfg, train_data, state_sets, ranks.rank)
    if draw is not None and loop.step == 0 and cfg.state_pretrain:
        pretrain_pathway(wm, cfg, draw, ranks, progress)
    loss = stage_loss(objective, train_data, context, loop.rng, cfg, draw, ranks, state_sets)

    def write(step: int, metrics: dict[str, float], seconds: float | None = None) -> None:
        extra = {"steps": step, **record, **metrics}
        if seconds is not None:
            extra["train_seconds_this_run"] = seconds
        wm.save(out, force=force, extra=extra)

    held_out = HeldOut(wm, val_data, cfg, context, loop, write, out, validate)
    wm.train()
    wm.tokenizer.eval()
    if held_out.probe is not None and init is not None and not loop.resumed and ranks.rank == 0:
        # The starting weights are the first candidate: a stage that never beats them outputs them.
        first = held_out(False)
        print(f"init {init}: held-out open-loop valid horizon {first['open_valid_horizon']:g}, "
              f"score {first['open_score']:.4g}", flush=True)
    postfix = "loss={loss:.3f}, acc={token_acc:.3f}" if held_out.framed else "loss={loss:.4g}"
    save = (lambda step, metrics, seconds: write(step, metrics, seconds)) if held_out.probe is None else None
    return loop.run(loss, held_out, save, on_step=_bias_updater(wm, cfg, ranks), postfix=postfix)


def _bias_updater(wm: WorldModel, cfg: DynamicsTrainConfig, ranks: Ranks):
    """`update(step)`: the MoE load-balancing bias update after each step (its load summed over ranks);
    None with frozen physics, whose tokens' routing reads the bias."""
    if cfg.freeze_physics:
        return None

    def update(step: int) -> None:
        for layer in wm.dynamics.moe_layers():
            all_reduce_(layer.load_acc, ranks)
            layer.update_bias()

    return update
