"""The state pathway: an MLP of (normalised state, action) that predicts the state's change.

Its output is added to the transformer's state prediction (or is the whole of it, when the
transformer has no state head: `DynamicsConfig.state_head=False`, the `mlp` baseline preset). It reads no
frame, so it can learn from datasets made without frames (`worldsim train pathway`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from worldsim.core.config import ConfigBase, check_positive
from worldsim.model.mlp import mlp, state_action


@dataclass(frozen=True)
class StatePathwayConfig(ConfigBase):
    # Width of the MLP's three hidden layers.
    width: int = 256

    def __post_init__(self) -> None:
        check_positive("StatePathwayConfig", width=self.width)


def _add(state: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return state + delta


class StatePathway(nn.Module):
    """(states [..., S] normalised, actions [..., A]) -> the state change [..., S]."""

    # Kept in float32 at reduced precision: it carries the state to about 1e-3 of its spread a step,
    # fp16's own rounding.
    keep_fp32: ClassVar[bool] = True

    def __init__(self, cfg: StatePathwayConfig, state_dim: int, action_dim: int):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.mlp = mlp(state_dim + action_dim, w, w, w, state_dim)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.mlp(state_action(states, actions))

    def loss(self, batch: dict[str, torch.Tensor],
             advance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _add
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The unrolled loss: from batch["states"][:, 0] the pathway is applied K times under
        batch["actions"] [n, K, A], each step taken by `advance(state, delta)` (the world model's rule:
        static dimensions held, bounds), against the recorded batch["states"] [n, K+1, S].

        Returns:
            (the mean squared error over all K predicted states, {"per_step": its value per step [K]}).
        """
        states, actions = batch["states"], batch["actions"]
        s, errs = states[:, 0], []
        for k in range(actions.shape[1]):
            s = advance(s, self(s, actions[:, k]))
            errs.append((s - states[:, k + 1]).pow(2).mean())
        per_step = torch.stack(errs)
        return per_step.mean(), {"per_step": per_step.detach()}
