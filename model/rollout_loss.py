"""The transformer's K-step open-loop loss: trained on its own rollouts through the cached step.

From the first real step of a window of K + 1 steps, the model steps K times as `WorldModel.step` does,
each step through the key-value cache (in its differentiable mode), feeding back its own predicted
state (continuous, with gradients through the whole chain, or without: `detach`) and its own
predicted frame codes (argmax, without gradients through the discrete pick). Every unrolled step
scores the next frame's codes, state, reward and termination against the recorded ones. This is what
holds a rollout together over an episode: a one-step loss never shows the model the states its own
errors lead to. At K = 1 it is the one-step loss from a real step.

The state error is taken on the state itself (after `WorldModel.advance`: static dimensions held, the
model's bounds applied), as a rollout carries it, in the model's normalised units.
"""

from __future__ import annotations

import torch
from torch import nn

from worldsim.model.kv_cache import KVCache
from worldsim.model.window_loss import masked_terms, targets


def rollout_loss(wm: nn.Module, batch: dict[str, torch.Tensor], prefix: str = "unrolled", detach: bool = False,
                 state_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The K-step open-loop loss of the world model `wm` on a batch of windows of K + 1 steps (codes
    [B, K+1, N], states, actions, rewards, terminated, act_mask, as `WindowSampler` gives them): the
    mean over the K unrolled steps of each step's code cross-entropy, state, reward and termination
    losses. A batch without codes unrolls steps without frames (action and state tokens alone) and
    has no code term. The logs' names start with `prefix`. With `detach`, each step's input state is
    the model's own prediction without its gradient (the pushforward trick of Brandstetter et al. 2022,
    https://arxiv.org/abs/2202.03376): every step learns from the states its rollout reaches, and no
    gradient runs back through the chain."""
    t = targets(wm, batch)
    framed = "codes" in t  # without codes the windows have no frames: steps of action and state tokens
    K = t["states"].shape[1] - 1
    if K < 1:
        raise ValueError(f"a rollout loss needs windows of at least 2 steps, got {K + 1}")
    caches = [KVCache(differentiable=True) for _ in wm.dynamics.blocks]
    codes, state = t["codes"][:, :1] if framed else None, t["states"][:, :1]
    total, sums = 0.0, {}
    for k in range(K):
        out = wm.predict(codes, state, t["actions"][:, k : k + 1], caches, k)
        state_next = wm.advance(state, out["state_delta"])  # [B, 1, S]
        loss_k, terms = masked_terms(wm, out, state_next - t["states"][:, k + 1 : k + 2], t, slice(k, k + 1),
                                     state_weight)
        total = total + loss_k
        for name, v in terms.items():
            sums[name] = sums.get(name, 0.0) + v.detach()
        if framed:
            with torch.no_grad():
                codes = wm.dynamics.predict_codes(out["code_logits"])
        state = state_next.detach() if detach else state_next
    logs = {f"{prefix}_{name}": float(v) / K for name, v in sums.items()}
    loss = total / K
    logs[f"{prefix}_loss"] = float(loss.detach())
    return loss, logs
