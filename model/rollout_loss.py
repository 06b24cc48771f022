"""The transformer's K-step open-loop loss: trained on its own rollouts through the cached step.

From the first real step of a window of K + 1 steps, the model steps K times as `WorldModel.step` does,
each step through the key-value cache (in its differentiable mode), feeding back its own predicted
state (continuous, with gradients through the whole chain) and its own predicted frame codes (argmax,
without gradients through the discrete pick). Every unrolled step scores the next frame's codes, state,
reward and termination against the recorded ones. This is what holds a rollout together over an
episode: a one-step loss never shows the model the states its own errors lead to. At K = 1 it is the
one-step loss from a real step.

The state error is taken on the state itself (after `WorldModel.advance`: static dimensions held, the
model's bounds applied), as a rollout carries it, in the model's normalised units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from worldsim.model.kv_cache import KVCache

if TYPE_CHECKING:
    from worldsim.model.world_model import WorldModel


def step_terms(wm: WorldModel, out: dict[str, torch.Tensor], state_next: torch.Tensor, t: dict[str, torch.Tensor],
               k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of the prediction `out` (one step) and its state `state_next` [B, S] against step
    k + 1 of the window targets `t`, masked to the rows whose episode has an action at step k."""
    m = t["act_mask"][:, k].float()
    denom = m.sum().clamp_min(1)
    ce = (wm.dynamics.code_loss(out["code_logits"][:, 0], t["codes"][:, k + 1]).mean(-1) * m).sum() / denom
    st = ((state_next - t["states"][:, k + 1]).pow(2).mean(-1) * m).sum() / denom
    rw = ((out["reward"][:, 0] - t["rewards"][:, k]).pow(2) * m).sum() / denom
    te = (F.binary_cross_entropy_with_logits(out["term_logit"][:, 0], t["term"][:, k], reduction="none") * m
          ).sum() / denom
    return ce + st + rw + te, {"ce": ce.detach(), "state_mse": st.detach(), "reward_mse": rw.detach(),
                               "term_bce": te.detach()}


def _targets(wm: WorldModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    dev = wm.device
    return {"codes": batch["codes"].to(dev).long(), "states": wm.normalize_state(batch["states"].to(dev)),
            "actions": batch["actions"].to(dev), "act_mask": batch["act_mask"].to(dev),
            "rewards": (batch["rewards"].to(dev) - wm.reward_mean) / wm.reward_std,
            "term": batch["terminated"].to(dev).float()}


def rollout_loss(wm: WorldModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The K-step open-loop loss on a batch of windows of K + 1 steps (codes [B, K+1, N], states,
    actions, rewards, terminated, act_mask, as `WindowSampler` gives them): the mean over the K
    unrolled steps of each step's code cross-entropy, state, reward and termination losses."""
    t = _targets(wm, batch)
    K = t["codes"].shape[1] - 1
    if K < 1:
        raise ValueError(f"a rollout loss needs windows of at least 2 steps, got {K + 1}")
    caches = [KVCache(differentiable=True) for _ in wm.dynamics.blocks]
    codes, state = t["codes"][:, :1], t["states"][:, :1]
    total, sums = 0.0, {}
    for k in range(K):
        out = wm.predict(codes, state, t["actions"][:, k : k + 1], caches, k)
        state_next = wm.advance(state[:, 0], out["state_delta"][:, 0])
        loss_k, logs_k = step_terms(wm, out, state_next, t, k)
        total = total + loss_k
        for name, v in logs_k.items():
            sums[name] = sums.get(name, 0.0) + v
        with torch.no_grad():
            codes = wm.dynamics.predict_codes(out["code_logits"][:, 0])[:, None]
        state = state_next[:, None]
    logs = {f"unrolled_{name}": float(v) / K for name, v in sums.items()}
    loss = total / K
    logs["unrolled_loss"] = float(loss.detach())
    return loss, logs
