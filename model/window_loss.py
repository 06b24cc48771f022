"""The world model's window loss: the transformer (with the state pathway's share of the state
change) teacher-forced over a window, plus an optional open-loop second pass.

Against drift: (1) a share `corrupt_prob` of input codes is replaced by random codes; (2) Gaussian
noise of `state_noise` (in dataset standard deviations) is added to the input states while the
targets stay the true next states, so the model learns to pull a perturbed state back rather than
carry the error on (the noise-injection trick of learned simulators, Sanchez-Gonzalez et al. 2020,
https://arxiv.org/abs/2002.09405); (3) an open-loop second pass feeds the model its own predictions
of frames and states and adds that loss. (1) to (3) apply in training mode only.

`state_only_loss` is the same teacher-forced loss on windows without frames (datasets made with
`data generate --no-frames`): each step carries its action and state tokens alone, and the loss has
no frame term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def targets(wm: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A window batch of the world model `wm` on its device, states and rewards in its normalised units
    (codes only when the batch has frames)."""
    dev = wm.device
    out = {"states": wm.normalize_state(batch["states"].to(dev)), "actions": batch["actions"].to(dev),
           "act_mask": batch["act_mask"].to(dev), "term": batch["terminated"].to(dev).float(),
           "rewards": (batch["rewards"].to(dev) - wm.reward_mean) / wm.reward_std}
    if "codes" in batch:
        out["codes"] = batch["codes"].to(dev).long()
    return out


def masked_terms(wm: nn.Module, out: dict[str, torch.Tensor], state_err: torch.Tensor, t: dict[str, torch.Tensor],
                 steps: slice, state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss terms of predictions `out` for the window steps `steps` of targets `t` (each step
    predicts the next): the next codes' cross-entropy (when `out` has frame logits), the state's
    squared error `state_err` [B, T, S], the reward's squared error and the termination's binary
    cross-entropy, each averaged over the steps whose episode has an action there; the loss weighs the
    state's term by `state_weight` (the terms are returned unweighted)."""
    nxt = slice(steps.start + 1, steps.stop + 1)
    m = t["act_mask"][:, steps].float()
    denom = m.sum().clamp_min(1)
    terms = {}
    if "code_logits" in out:
        terms["ce"] = (wm.dynamics.code_loss(out["code_logits"], t["codes"][:, nxt]).mean(-1) * m).sum() / denom
    terms["state_mse"] = (state_err.pow(2).mean(-1) * m).sum() / denom
    terms["reward_mse"] = ((out["reward"] - t["rewards"][:, steps]).pow(2) * m).sum() / denom
    bce = F.binary_cross_entropy_with_logits(out["term_logit"], t["term"][:, steps], reduction="none")
    terms["term_bce"] = (bce * m).sum() / denom
    return sum(terms.values()) + (state_weight - 1) * terms["state_mse"], terms


def _one_pass(wm: nn.Module, t: dict[str, torch.Tensor], inp_codes: torch.Tensor, inp_states: torch.Tensor,
              state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    """The teacher-forced loss of one pass from inputs `inp_codes`, `inp_states` against the window's
    targets `t`; returns (loss, logs, the predictions with the predicted codes)."""
    K = wm.cfg.dynamics.context
    out = wm.predict(inp_codes, inp_states, t["actions"][:, :K])
    loss, terms = masked_terms(wm, out, out["state_delta"] - (t["states"][:, 1:] - inp_states), t, slice(0, K),
                               state_weight)
    with torch.no_grad():
        pred = wm.dynamics.predict_codes(out["code_logits"])
        m = t["act_mask"][:, :K].float()
        acc = ((pred == t["codes"][:, 1:]).float().mean(-1) * m).sum() / m.sum().clamp_min(1)
    logs = {k: v.item() for k, v in terms.items()} | {"token_acc": acc.item()}
    return loss, logs, out | {"codes": pred}


def window_loss(wm: nn.Module, batch: dict[str, torch.Tensor], rng: torch.Generator | None = None,
                force_rollout: bool | None = None, *, corrupt_prob: float = 0.0, state_noise: float = 0.0,
                rollout_prob: float = 0.0, state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the world model `wm` on a window batch (codes [B, K+1, N], states, actions, rewards,
    terminated, act_mask).

    The open-loop second pass runs when `force_rollout` says so, or (when it is None) with
    probability `rollout_prob`; `rng` draws the corruption, the noise and that coin.
    """
    K, training = wm.cfg.dynamics.context, wm.dynamics.training
    t = targets(wm, batch)
    inp = t["codes"][:, :K]
    if corrupt_prob > 0 and training:
        noise = torch.rand(inp.shape, device=inp.device, generator=rng) < corrupt_prob
        inp = torch.where(noise, torch.randint_like(inp, wm.cfg.dynamics.codebook_size), inp)
    inp_states = t["states"][:, :K]
    if state_noise > 0 and training:
        noise = torch.randn(inp_states.shape, device=inp_states.device, generator=rng) * state_noise
        if wm.cfg.static_state_dims:  # held fixed in rollouts, so never perturbed
            noise[..., list(wm.cfg.static_state_dims)] = 0
        inp_states = inp_states + noise
    loss, logs, out = _one_pass(wm, t, inp, inp_states, state_weight)
    if force_rollout is None:
        coin = torch.rand((), generator=rng).item()
        force_rollout = training and rollout_prob > 0 and coin < rollout_prob
    if force_rollout:
        # Open-loop inputs: steps 1..K-1 take the model's own predicted frame and state.
        pred_states = (inp_states + out["state_delta"]).detach()
        roll_codes = torch.cat([inp[:, :1], out["codes"][:, : K - 1]], 1)
        roll_states = torch.cat([t["states"][:, :1], pred_states[:, : K - 1]], 1)
        loss2, logs2, _ = _one_pass(wm, t, roll_codes, roll_states, state_weight)
        loss = loss + loss2
        logs["rollout_ce"] = logs2["ce"]
        logs["rollout_state_mse"] = logs2["state_mse"]
    logs["loss"] = loss.item()
    return loss, logs


def state_only_loss(wm: nn.Module, batch: dict[str, torch.Tensor], state_noise: float = 0.0,
                    rng: torch.Generator | None = None, state_weight: float = 1.0
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """The teacher-forced state, reward and termination loss of the world model `wm` on a batch of
    windows of K + 1 steps without frames (states, actions, rewards, terminated, act_mask; K its context).
    In training mode, `state_noise` adds Gaussian noise of that std (in dataset stds, drawn from `rng`)
    to the input states, the targets staying the true next states, as `window_loss` does."""
    K = wm.cfg.dynamics.context
    t = targets(wm, batch)
    inp = t["states"][:, :K]
    if state_noise > 0 and wm.dynamics.training:
        noise = torch.randn(inp.shape, device=inp.device, generator=rng) * state_noise
        if wm.cfg.static_state_dims:  # held fixed in rollouts, so never perturbed
            noise[..., list(wm.cfg.static_state_dims)] = 0
        inp = inp + noise
    out = wm.predict(None, inp, t["actions"][:, :K])
    loss, terms = masked_terms(wm, out, out["state_delta"] - (t["states"][:, 1:] - inp), t, slice(0, K), state_weight)
    return loss, {"state_only_loss": loss.item(), "state_only_state_mse": terms["state_mse"].item()}
