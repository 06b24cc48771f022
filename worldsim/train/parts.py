"""Fit parts of a trained world model alone, the transformer unchanged: `worldsim train pathway`,
`worldsim train renderer` and `worldsim train outcome`.

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

The state renderer (`DynamicsConfig.state_render`, added by `train renderer`) maps a normalised
state to the frame head's logits for the frame of that state. In a rollout it reads the state the
pathway just predicted, so the predicted frame follows the predicted physics; it is fitted on the
dataset's frames, encoded by the model's tokenizer, against their recorded states.

The outcome head (`DynamicsConfig.state_outcome`, added by `train outcome`) maps (normalised next
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

from worldsim.core.config import ConfigBase, check_positive
from worldsim.model.dynamics import RENDER_MIXES
from worldsim.model.world_model import WorldModel
from worldsim.train.loop import checkpoint_identity, cosine_lr, data_identity, run_config
from worldsim.train.state import has_train_state, load_train_state, prepare_outputs, save_train_state, state_dir_for


@dataclass(frozen=True)
class PartTrainConfig(ConfigBase):
    """What the part trainers share."""

    steps: int = 20000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup: int = 200
    val_fraction: float = 0.02
    save_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(type(self).__name__, steps=self.steps, batch_size=self.batch_size, save_every=self.save_every,
                       lr=self.lr)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"{type(self).__name__}.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class PathwayTrainConfig(PartTrainConfig):
    unroll: int = 1
    # For a model without a pathway: give it one of this width (it then carries the state alone,
    # replacing the state token's head). 0: fit the model's own pathway.
    width: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("PathwayTrainConfig", unroll=self.unroll)
        if self.width < 0:
            raise ValueError(f"PathwayTrainConfig.width must be >= 0, got {self.width}")


@dataclass(frozen=True)
class RendererTrainConfig(PartTrainConfig):
    steps: int = 6000
    batch_size: int = 256
    val_fraction: float = 0.05
    save_every: int = 500
    width: int = 512
    mix: str = "sum"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("RendererTrainConfig", width=self.width)
        if self.mix not in RENDER_MIXES:
            raise ValueError(f"RendererTrainConfig.mix must be 'sum' or 'replace', got {self.mix!r}")


@dataclass(frozen=True)
class OutcomeTrainConfig(PartTrainConfig):
    steps: int = 4000
    batch_size: int = 1024
    width: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("OutcomeTrainConfig", width=self.width)


class Sequences:
    """Every run of `unroll` consecutive transitions inside one episode of some datasets, states
    normalised by `wm`: `sample(n, rng)` draws n of them as states [n, K+1, S] and actions [n, K, A]."""

    def __init__(self, datasets: list, wm: WorldModel, unroll: int, what: str = "training"):
        states, actions, starts, base = [], [], [], 0
        self.short_episodes = 0  # episodes with fewer than `unroll` actions: they add no run
        for data in datasets:
            starts.append(base + data.action_frames(unroll))
            self.short_episodes += int((data.lengths - 1 < unroll).sum())
            states.append(data.arrays["states"]), actions.append(data.arrays["actions"])
            base += data.num_frames
        if not sum(len(s) for s in starts):
            names = ", ".join(str(d.root) for d in datasets)
            raise ValueError(f"no {what} episode of {names} has {unroll} actions, as --unroll {unroll} needs; "
                             f"lower --unroll (or, for the held-out split, raise --val-fraction)")
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


def unrolled_loss(wm: WorldModel, states: torch.Tensor, actions: torch.Tensor,
                  clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll the pathway from states[:, 0] under actions [n, K, A] as `WorldModel.step` does; returns
    (the mean squared error over all K predicted states, the per-step mean squared error [K]).
    `clamp=False` leaves the model's bounds out (the dynamics trainer's one-step loss)."""
    cfg = wm.cfg
    static = list(cfg.static_state_dims)
    low = high = None
    if clamp and wm.state_low is not None:
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


def _base_extra(checkpoint) -> dict:
    """The `extra` of the base checkpoint (its training record), kept in the refitted model's."""
    from worldsim.core.checkpoint import load_checkpoint_extra
    from worldsim.core.registry import resolve_checkpoint

    return load_checkpoint_extra(resolve_checkpoint(checkpoint, kind="world_model"), kind="world_model")


def check_datasets(datasets, want: dict, against: str) -> None:
    """Refuse, before any work, datasets whose manifest differs from `want` (e.g. scene, state_dim,
    action_dim) or that were made with different scene configs; `against` names what `want` came from."""
    from worldsim.envs.manifest import read_manifest

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
    from worldsim.core.runtime import resolve_device

    return WorldModel.from_pretrained(checkpoint, device=resolve_device(device)).float()


def _split(data, val_fraction: float, frames: bool) -> tuple[list, list]:
    """`data` opened for a part trainer: (training datasets, held-out datasets), the first dataset's
    last `val_fraction` of episodes held out."""
    from worldsim.envs.loader import EpisodeDataset
    from worldsim.envs.manifest import read_manifest
    from worldsim.train.tokenizer import split_episodes

    train_ep, val_ep = split_episodes(read_manifest(data[0])["episodes"], val_fraction)
    train = [EpisodeDataset(data[0], train_ep, frames=frames), *(EpisodeDataset(d, frames=frames) for d in data[1:])]
    return train, [EpisodeDataset(data[0], val_ep, frames=frames, verify=False)]


def _check_data(wm: WorldModel, checkpoint, datasets) -> None:
    dyn = wm.cfg.dynamics
    check_datasets(datasets, {"scene": wm.cfg.scene, "state_dim": dyn.state_dim, "action_dim": dyn.action_dim},
                   f"the model {checkpoint}")


def _fit(wm: WorldModel, params: list[torch.nn.Parameter], cfg: PartTrainConfig, out: str | Path,
         train_loss, validate, extra: dict, desc: str, progress: bool, force: bool) -> dict[str, float]:
    """The loop the part trainers run: AdamW on `params` alone (the rest of `wm` frozen) with a
    cosine schedule, `train_loss(step)` a batch's loss (seeded by the step, so a resumed run draws
    the same batches), `validate(batches)` a dict of held-out figures; resumable from `out`.train."""
    from tqdm import tqdm

    wm.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    state_dir = state_dir_for(out)
    step, rng = 0, np.random.default_rng(cfg.seed)
    key = f"{desc.replace(' ', '_')}_config"
    extra = {key: cfg.to_dict(), **extra}
    # A resumed run must be the same run: same part, training config (but steps), base weights and data.
    run = {"part": desc, "train_config": run_config(cfg), "model_config": wm.cfg.to_dict(),
           "base": checkpoint_identity(extra["base"], "world_model"),
           "data": data_identity(extra.get("state_data", extra.get("data", [])))}
    if has_train_state(state_dir):
        step, rng, _ = load_train_state(state_dir, wm, opt, type(wm.cfg), kind="world_model", run=run)
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, cfg.steps, cfg.warmup, cfg.lr)
        loss = train_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3g}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            logs = validate(8)
            bar.write(f"step {step}: train loss {loss.item():.4g}, "
                      + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
            save_train_state(state_dir, wm, opt, wm.cfg, kind="world_model", step=step, rng=rng, run=run, extra=extra)
    bar.close()
    metrics = validate(16)
    wm.save(out, force=force, extra={**extra, "steps": step, **metrics,
                                     "train_seconds_this_run": time.perf_counter() - t0,
                                     "base_extra": _base_extra(extra["base"])})
    return metrics


def train_pathway(checkpoint: str | Path, state_data: list[str] | tuple[str, ...], out: str | Path,
                  cfg: PathwayTrainConfig = PathwayTrainConfig(), device: str = "auto",
                  progress: bool = True, force: bool = False) -> dict[str, float]:
    """Fit the state pathway of the world model `checkpoint` on the transitions of `state_data` (datasets
    of its scene, with or without frames) and write the model to `out`; resumes from `out`.train."""
    if not state_data:
        raise ValueError("train pathway needs at least one dataset (--state-data)")
    prepare_outputs(out, "world_model", force=force)  # before any work
    wm = _base(checkpoint, device)
    if cfg.width:
        wm = with_pathway(wm, cfg.width, cfg.seed)
    elif not wm.cfg.dynamics.state_mlp:
        raise ValueError(f"{checkpoint}: this world model has no state pathway (state_mlp = 0); give it one "
                         f"with --width, or train with a preset that has one, e.g. --preset v4-lite")
    elif wm.cfg.dynamics.state_residual:
        raise ValueError(f"{checkpoint}: the state token's head adds its own correction to this model's pathway "
                         f"(state_residual=True), so the pathway cannot be fitted alone; train with a preset "
                         f"whose pathway carries the state alone (v4-lite)")
    _check_data(wm, checkpoint, state_data)
    train_sets, val_sets = _split(state_data, cfg.val_fraction, frames=False)
    train = Sequences(train_sets, wm, cfg.unroll)
    val = Sequences(val_sets, wm, cfg.unroll, what="held-out")

    def train_loss(step: int) -> torch.Tensor:
        return unrolled_loss(wm, *train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))[0]

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        per = torch.stack([unrolled_loss(wm, *val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]
                           for i in range(batches)]).mean(0)
        return {"val_mse": float(per.mean()), "val_mse_step1": float(per[0]), "val_mse_last": float(per[-1])}

    extra = {"base": str(checkpoint), "state_data": [str(d) for d in state_data], "runs": len(train),
             "short_episodes": train.short_episodes}
    return _fit(wm, list(wm.dynamics.state_mlp.parameters()), cfg, out, train_loss, validate, extra,
                "state pathway", progress, force)


class Frames:
    """Every frame of some datasets as (normalised state, tokenizer codes) pairs."""

    def __init__(self, datasets: list, wm: WorldModel):
        from worldsim.train.dynamics import encode_dataset

        dev = wm.device
        self.state = wm.normalize_state(torch.from_numpy(
            np.concatenate([d.arrays["states"] for d in datasets])).float().to(dev))
        codes = np.concatenate([encode_dataset(d, wm.tokenizer) for d in datasets])
        self.codes = torch.from_numpy(codes).long().to(dev)

    def __len__(self) -> int:
        return len(self.state)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.from_numpy(rng.integers(0, len(self), n)).to(self.state.device)
        return self.state[i], self.codes[i]


def _rebuilt(wm: WorldModel, seed: int, drop: str = "", **fields) -> WorldModel:
    """`wm` rebuilt with new dynamics config `fields`: its weights (less those under `drop`) loaded,
    the new parts initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = WorldModel(wm.cfg.replace(dynamics=wm.cfg.dynamics.replace(**fields))).to(wm.device)
    own = {k: v for k, v in wm.state_dict().items() if not (drop and k.startswith(drop))}
    missing, unexpected = new.load_state_dict(own, strict=False)
    new_parts = ("dynamics.state_mlp.", "dynamics.state_render.", "dynamics.state_outcome.")
    missing = [k for k in missing if not k.startswith(new_parts)]
    if missing or unexpected:
        raise ValueError(f"cannot rebuild the model with {fields}: missing {missing}, unexpected {unexpected}")
    return new


def with_pathway(wm: WorldModel, width: int, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained state pathway of `width` that carries the state alone (the state
    token's head, if any, dropped). A model that has a pathway already is refused."""
    if wm.cfg.dynamics.state_mlp:
        raise ValueError(f"the model has a state pathway already (width {wm.cfg.dynamics.state_mlp}); "
                         f"leave --width unset to fit it")
    return _rebuilt(wm, seed, drop="dynamics.state_head.", state_mlp=width, state_residual=False)


def with_renderer(wm: WorldModel, width: int, mix: str, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained state renderer initialised from `seed` (or its own, when it has one of
    this width: then only the mix changes)."""
    dyn = wm.cfg.dynamics
    if dyn.state_render == width and dyn.render_mix == mix:
        return wm
    if dyn.state_render and dyn.state_render != width:
        raise ValueError(f"the model has a state renderer of width {dyn.state_render}, asked for {width}")
    levels = dyn.code_levels or tuple(wm.cfg.tokenizer.levels)  # the renderer scores FSQ channels
    return _rebuilt(wm, seed, state_render=width, render_mix=mix, code_levels=levels)


def train_renderer(checkpoint: str | Path, data: list[str] | tuple[str, ...], out: str | Path,
                   cfg: RendererTrainConfig = RendererTrainConfig(), device: str = "auto",
                   progress: bool = True, force: bool = False) -> dict[str, float]:
    """Give the world model `checkpoint` a state renderer fitted on the frames and states of `data`
    (datasets of its scene, with frames) and write it to `out`; resumes from `out`.train."""
    from worldsim.envs.manifest import read_manifest

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
    dyn = wm.dynamics

    def train_loss(step: int) -> torch.Tensor:
        states, codes = train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step]))
        return dyn.code_loss(dyn.render_logits(states), codes, factorized=True).mean()

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        ce, acc = [], []
        for i in range(batches):
            states, codes = val.sample(cfg.batch_size, np.random.default_rng([1234, i]))
            logits = dyn.render_logits(states)
            ce.append(dyn.code_loss(logits, codes, factorized=True).mean())
            acc.append((dyn.predict_codes(logits, factorized=True) == codes).float().mean())
        return {"val_ce": float(torch.stack(ce).mean()), "val_token_acc": float(torch.stack(acc).mean())}

    extra = {"base": str(checkpoint), "data": [str(d) for d in data], "frames": len(train)}
    return _fit(wm, list(dyn.state_render.parameters()), cfg, out, train_loss, validate, extra, "state renderer",
                progress, force)


class Outcomes:
    """Every transition of some datasets as (normalised next state, action, normalised reward,
    terminated), the reward normalised by `wm`'s reward statistics."""

    def __init__(self, datasets: list, wm: WorldModel):
        dev, cols = wm.device, {"next": [], "action": [], "reward": [], "terminated": []}
        for d in datasets:
            i = d.action_frames()
            cols["next"].append(d.arrays["states"][i + 1])
            cols["action"].append(d.arrays["actions"][i])
            cols["reward"].append(d.arrays["rewards"][i])
            cols["terminated"].append(d.arrays["terminated"][i])
        c = {k: torch.from_numpy(np.concatenate(v)).float().to(dev) for k, v in cols.items()}
        self.reward_range = (float(c["reward"].min()), float(c["reward"].max()))  # raw units
        self.next, self.action = wm.normalize_state(c["next"]), c["action"]
        self.reward = (c["reward"] - wm.reward_mean) / wm.reward_std
        self.terminated = c["terminated"]

    def __len__(self) -> int:
        return len(self.next)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        i = torch.from_numpy(rng.integers(0, len(self), n)).to(self.next.device)
        return self.next[i], self.action[i], self.reward[i], self.terminated[i]


def outcome_loss(wm: WorldModel, next_states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                 terminated: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The outcome head's loss on transitions (normalised next states, actions, normalised rewards,
    terminated as 0/1 floats): the reward's mean squared error plus the termination's binary
    cross-entropy; returns (loss, its two terms and the termination's accuracy)."""
    reward, logit = wm.dynamics.outcome(next_states, actions)
    mse = (reward - rewards).pow(2).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, terminated)
    acc = ((logit > 0).float() == terminated).float().mean()
    return mse + bce, {"reward_mse": mse.detach(), "term_bce": bce.detach(), "term_acc": acc}


def with_outcome(wm: WorldModel, width: int, seed: int = 0) -> WorldModel:
    """`wm` with a new, untrained outcome head of `width` initialised from `seed` (or its own, when it
    has one of this width: it is then fitted further)."""
    have = wm.cfg.dynamics.state_outcome
    if have == width:
        return wm
    if have:
        raise ValueError(f"the model has an outcome head of width {have}, asked for {width}")
    return _rebuilt(wm, seed, state_outcome=width)


def train_outcome(checkpoint: str | Path, state_data: list[str] | tuple[str, ...], out: str | Path,
                  cfg: OutcomeTrainConfig = OutcomeTrainConfig(), device: str = "auto",
                  progress: bool = True, force: bool = False) -> dict[str, float]:
    """Give the world model `checkpoint` an outcome head fitted on the transitions of `state_data`
    (datasets of its scene, with or without frames) and write it to `out`, its rollout rewards held to
    the range of the training rewards (`WorldModelConfig.reward_range`); resumes from `out`.train."""
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
        return outcome_loss(wm, *train.sample(cfg.batch_size, np.random.default_rng([cfg.seed, step])))[0]

    @torch.no_grad()
    def validate(batches: int) -> dict[str, float]:
        logs = [outcome_loss(wm, *val.sample(cfg.batch_size, np.random.default_rng([1234, i])))[1]
                for i in range(batches)]
        return {f"val_{k}": float(torch.stack([g[k] for g in logs]).mean()) for k in logs[0]}

    extra = {"base": str(checkpoint), "state_data": [str(d) for d in state_data], "transitions": len(train),
             "terminations": int(train.terminated.sum())}
    return _fit(wm, list(wm.dynamics.state_outcome.parameters()), cfg, out, train_loss, validate, extra,
                "outcome head", progress, force)
