"""The outcome head: an MLP from (normalised next state, action) to that step's reward and termination.

In a rollout it reads the state just predicted, so reward and termination follow the predicted
physics, where the transformer's reward and termination heads read the action token, which never
sees that state (`worldsim train outcome` fits it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.core.config import ConfigBase, check_positive
from worldsim.model.mlp import mlp, state_action


@dataclass(frozen=True)
class OutcomeHeadConfig(ConfigBase):
    # Width of the MLP's two hidden layers.
    width: int = 128

    def __post_init__(self) -> None:
        check_positive("OutcomeHeadConfig", width=self.width)


class OutcomeHead(nn.Module):
    """(next states [..., S] normalised, actions [..., A]) -> (normalised reward [...], termination logit [...])."""

    # Kept in float32 at reduced precision: it is small (about 20k weights), and its termination
    # logit is read at its sign.
    keep_fp32: ClassVar[bool] = True

    def __init__(self, cfg: OutcomeHeadConfig, state_dim: int, action_dim: int):
        super().__init__()
        self.cfg = cfg
        self.mlp = mlp(state_dim + action_dim, cfg.width, cfg.width, 2)

    def forward(self, next_states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(state_action(next_states, actions))
        return out[..., 0], out[..., 1]

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on transitions (batch "next_states" normalised, "actions", "rewards" normalised,
        "terminated" as 0/1 floats): the reward's mean squared error plus the termination's binary
        cross-entropy; the logs hold the two terms and the termination's accuracy."""
        reward, logit = self(batch["next_states"], batch["actions"])
        term = batch["terminated"]
        mse = (reward - batch["rewards"]).pow(2).mean()
        bce = F.binary_cross_entropy_with_logits(logit, term)
        acc = ((logit > 0).float() == term).float().mean()
        return mse + bce, {"reward_mse": mse.detach(), "term_bce": bce.detach(), "term_acc": acc}
