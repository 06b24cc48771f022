"""The held-out open-loop score a dynamics run computes at every validation, so that each stage of a
recipe keeps the checkpoint that rolls out best, not the one with the lowest training loss.

From the first recorded state of each held-out episode the world model steps open loop under the
episode's recorded actions, through `WorldModel.start` / `WorldModel.step` (the KV-cached step
`DSV4World-v0` runs), without frames; with frames too when the run trains them. The figures are the
evaluation harness's (`worldsim.eval.metrics`): the state error at each step, each dimension over the
model's state std (0.1 is the valid-horizon threshold), and the valid horizon, the steps before that
error first exceeds 0.1, bounded by the episode's length.

    probe = OpenLoopProbe(val_data, horizon=50, episodes=64)
    figures = probe(wm)    # {"open_valid_horizon": ..., "open_nrmse_h50": ..., "open_score": ...}

`open_score` orders checkpoints: the mean valid horizon over episodes (finer-grained than the median
the harness reports) less the mean state error at the last scored step, plus, for a run with frames,
the mean open-loop frame-token accuracy (in [0, 1]: at most one step of horizon). The frames stage
(`HeldOut`) orders them by that accuracy instead, among those whose physics holds within
`physics_tolerance` of the starting weights'.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from worldsim.core.checkpoint import load_checkpoint_extra
from worldsim.envs.loader import WindowSampler
from worldsim.eval import metrics as M
from worldsim.model.world_model import WorldModel


class OpenLoopProbe:
    """Held-out episodes of `data` (an `EpisodeDataset`) ready to roll out: their first `episodes`
    (all, when fewer), up to `horizon` steps each (the probe's `horizon` is the longest of them);
    `codes` True also scores framed rollouts on the dataset's `codes` array (the tokenizer's codes
    of its frames)."""

    def __init__(self, data, horizon: int, episodes: int, codes: bool = False):
        if horizon < 1:
            raise ValueError(f"open-loop horizon must be >= 1, got {horizon}")
        n = min(episodes, len(data))
        if n < 1:
            raise ValueError("the held-out split has no episode to roll out; raise val_fraction")
        eps = [data.episode(i) for i in range(n)]
        # Steps each episode has after its first state; shorter episodes are scored up to their end,
        # and no step is rolled out past the longest.
        self.lengths = np.array([min(horizon, len(e["actions"])) for e in eps], np.int64)
        if int(self.lengths.max()) < 1:
            raise ValueError("no held-out episode has a single action to roll out")
        self.horizon = H = int(self.lengths.max())

        def pad(x: np.ndarray, n_rows: int) -> np.ndarray:
            x = x[:n_rows]
            return np.concatenate([x, np.repeat(x[-1:], n_rows - len(x), 0)]) if len(x) < n_rows else x

        self.states = torch.from_numpy(np.stack([pad(e["states"], H + 1) for e in eps]).astype(np.float32))
        self.actions = torch.from_numpy(np.stack([pad(e["actions"], H) for e in eps]).astype(np.float32))
        self.mask = np.arange(1, H + 1)[None] <= self.lengths[:, None]  # [E, H] the steps that exist
        self.codes = None
        if codes:
            if "codes" not in data.arrays:
                raise ValueError("framed open-loop scores need the held-out data's codes (add_array('codes', ...))")
            self.codes = torch.from_numpy(np.stack([pad(data.arrays["codes"][o : o + n_], H + 1)
                                                    for o, n_ in zip(data.offsets[:n], data.lengths[:n])]))

    @torch.no_grad()
    def rollout(self, wm: WorldModel, frames: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Open-loop states [E, H, S] (raw units) and, with `frames`, the predicted codes [E, H, N]."""
        dev = wm.device
        g = wm.cfg.dynamics.grid
        tokens = self.codes[:, :1].view(-1, 1, g, g).long() if frames else None
        h = wm.start(tokens, self.states[:, :1])
        states, codes = [], []
        acts = self.actions.to(dev)
        for t in range(self.horizon):
            c, s, _, _ = wm.step(h, acts[:, t])
            states.append(s.double().cpu())
            if c is not None:
                codes.append(c.reshape(len(c), -1).cpu())
        return torch.stack(states, 1).numpy(), (torch.stack(codes, 1).numpy() if codes else None)

    def __call__(self, wm: WorldModel, frames: bool = False) -> dict[str, float]:
        """The figures of `wm` (left in the mode it came in): frameless always; with `frames`, the
        framed rollout's frame-token accuracy too."""
        was_training = wm.training
        wm.eval()
        try:
            pred, _ = self.rollout(wm)
            out = self._state_figures(wm, pred)
            if frames:
                _, codes = self.rollout(wm, frames=True)
                hit = (codes == self.codes[:, 1:].numpy()).mean(-1)  # [E, H]
                acc = M.masked_step_mean(hit, self.mask)
                out["open_token_acc"] = float(hit[self.mask].mean())
                out[f"open_token_acc_h{self.horizon}"] = float(acc[-1])
                out["open_score"] += out["open_token_acc"]
        finally:
            wm.train(was_training)
        return out

    def _state_figures(self, wm: WorldModel, pred: np.ndarray) -> dict[str, float]:
        std = wm.state_std.double().cpu().numpy()
        nrmse = M.state_nrmse(pred, self.states[:, 1:].double().numpy(), std)  # [E, H]
        vh = M.valid_horizon(nrmse, 0.1, self.lengths)
        curve = M.masked_step_mean(nrmse, self.mask)
        H = self.horizon
        out = {"open_valid_horizon": float(np.median(vh)), "open_valid_mean": float(vh.mean()),
               "open_nrmse_h1": float(curve[0])}
        for h in sorted({10, H}):
            if h <= H:
                out[f"open_nrmse_h{h}"] = float(curve[h - 1])
        # Every step up to the horizon has an episode that runs there; a non-finite error counts as 1000.
        last = float(curve[-1]) if np.isfinite(curve[-1]) else 1e3
        out["open_score"] = float(vh.mean()) - min(last, 1e3)
        return out


class HeldOut:
    """`held_out(final)`: a dynamics run's held-out figures (`validate(wm, sampler, cfg, batches)`'s
    teacher-forced losses and, with a probe, the open-loop score), writing the model (`write(step,
    figures)`) whenever the score beats the best so far, so that `out` always holds the best checkpoint."""

    def __init__(self, wm: WorldModel, val_data, cfg, context: int, loop, write, out: str | Path, validate):
        framed = cfg.stage in ("mixed", "frames")
        self.wm, self.cfg, self.loop, self.write, self.framed, self.validate = wm, cfg, loop, write, framed, validate
        self.sampler = WindowSampler(val_data, T=context + 1, keys=("codes",) if framed else ())
        self.probe = OpenLoopProbe(val_data, cfg.open_loop_horizon, cfg.open_loop_episodes, codes=framed) \
            if cfg.open_loop_horizon else None
        self.best: dict[str, float] = {}
        if loop.resumed and (Path(out) / "config.json").is_file():
            extra = load_checkpoint_extra(out, kind="world_model")
            self.best = {k: extra[k] for k in ("open_score", "physics_reference") if k in extra}
        # The frames stage: the starting weights' physics (their first evaluation), which it must hold.
        self.reference = self.best.get("physics_reference")

    def __call__(self, final: bool) -> dict[str, float]:
        figures = self.validate(self.wm, self.sampler, self.cfg, (2 if final else 1) * self.cfg.val_batches)
        if self.probe is not None:
            figures |= self.probe(self.wm, frames=self.framed)
            if self.cfg.stage == "frames":
                figures |= self._frames_score(figures)
            if figures["open_score"] > self.best.get("open_score", -math.inf):  # the best so far is the output
                self.best = {**figures, "best_step": self.loop.step}
                self.write(self.loop.step, self.best)
            figures["best_open_score"] = self.best["open_score"]
        return figures

    def _frames_score(self, figures: dict[str, float]) -> dict[str, float]:
        """The frames stage's score: the open-loop frame-token accuracy, less 1000 when the physics
        (mean valid horizon) lost more than `physics_tolerance` of the starting weights'."""
        if self.reference is None:
            self.reference = figures["open_valid_mean"]
        holds = figures["open_valid_mean"] >= (1 - self.cfg.physics_tolerance) * self.reference
        return {"open_score": figures["open_token_acc"] - (0.0 if holds else 1000.0),
                "physics_reference": self.reference}
