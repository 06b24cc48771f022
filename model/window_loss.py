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

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from worldsim.model.world_model import WorldModel


def _one_pass(wm: WorldModel, t: dict[str, torch.Tensor], inp_codes: torch.Tensor, inp_states: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    """The teacher-forced loss of one pass from inputs `inp_codes`, `inp_states` against the window's
    targets `t`; returns (loss, logs, the predictions with the predicted codes)."""
    K = wm.cfg.dynamics.context
    out = wm.predict(inp_codes, inp_states, t["actions"][:, :K])
    m = t["valid"].float()
    denom = m.sum().clamp_min(1)
    ce = (wm.dynamics.code_loss(out["code_logits"], t["codes"][:, 1:]).mean(-1) * m).sum() / denom
    target_delta = t["states"][:, 1:] - inp_states
    st = ((out["state_delta"] - target_delta).pow(2).mean(-1) * m).sum() / denom
    rw = ((out["reward"] - t["rewards"][:, :K]).pow(2) * m).sum() / denom
    te = (F.binary_cross_entropy_with_logits(out["term_logit"], t["term"][:, :K], reduction="none") * m).sum() / denom
    with torch.no_grad():
        pred = wm.dynamics.predict_codes(out["code_logits"])
        acc = ((pred == t["codes"][:, 1:]).float().mean(-1) * m).sum() / denom
    return ce + st + rw + te, {"ce": ce.item(), "state_mse": st.item(), "reward_mse": rw.item(),
                               "term_bce": te.item(), "token_acc": acc.item()}, out | {"codes": pred}


def _targets(wm: WorldModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A window batch on the model's device, states and rewards in the model's normalised units."""
    dev, K = wm.device, wm.cfg.dynamics.context
    return {"codes": batch["codes"].to(dev).long(), "states": wm.normalize_state(batch["states"].to(dev)),
            "actions": batch["actions"].to(dev), "valid": batch["act_mask"].to(dev)[:, :K],
            "rewards": (batch["rewards"].to(dev) - wm.reward_mean) / wm.reward_std,
            "term": batch["terminated"].to(dev).float()}


def window_loss(wm: WorldModel, batch: dict[str, torch.Tensor], rng: torch.Generator | None = None,
                force_rollout: bool | None = None, *, corrupt_prob: float = 0.0, state_noise: float = 0.0,
                rollout_prob: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss on a window batch (codes [B, K+1, N], states, actions, rewards, terminated, act_mask).

    The open-loop second pass runs when `force_rollout` says so, or (when it is None) with
    probability `rollout_prob`; `rng` draws the corruption, the noise and that coin.
    """
    K, training = wm.cfg.dynamics.context, wm.dynamics.training
    t = _targets(wm, batch)
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
    loss, logs, out = _one_pass(wm, t, inp, inp_states)
    if force_rollout is None:
        coin = torch.rand((), generator=rng).item()
        force_rollout = training and rollout_prob > 0 and coin < rollout_prob
    if force_rollout:
        # Open-loop inputs: steps 1..K-1 take the model's own predicted frame and state.
        pred_states = (inp_states + out["state_delta"]).detach()
        roll_codes = torch.cat([inp[:, :1], out["codes"][:, : K - 1]], 1)
        roll_states = torch.cat([t["states"][:, :1], pred_states[:, : K - 1]], 1)
        loss2, logs2, _ = _one_pass(wm, t, roll_codes, roll_states)
        loss = loss + loss2
        logs["rollout_ce"] = logs2["ce"]
        logs["rollout_state_mse"] = logs2["state_mse"]
    logs["loss"] = loss.item()
    return loss, logs


def state_only_loss(wm: WorldModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The teacher-forced state, reward and termination loss on a batch of windows of K + 1 steps
    without frames (states, actions, rewards, terminated, act_mask; K the model's context)."""
    dev, K = wm.device, wm.cfg.dynamics.context
    states = wm.normalize_state(batch["states"].to(dev))
    out = wm.predict(None, states[:, :K], batch["actions"].to(dev)[:, :K])
    m = batch["act_mask"].to(dev)[:, :K].float()
    denom = m.sum().clamp_min(1)
    st = ((out["state_delta"] - (states[:, 1:] - states[:, :K])).pow(2).mean(-1) * m).sum() / denom
    rewards = (batch["rewards"].to(dev)[:, :K] - wm.reward_mean) / wm.reward_std
    rw = ((out["reward"] - rewards).pow(2) * m).sum() / denom
    term = batch["terminated"].to(dev)[:, :K].float()
    te = (F.binary_cross_entropy_with_logits(out["term_logit"], term, reduction="none") * m).sum() / denom
    loss = st + rw + te
    return loss, {"state_only_loss": loss.item(), "state_only_state_mse": st.item()}
