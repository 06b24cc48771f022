"""The state renderer: an MLP from a normalised state to per-FSQ-channel logits for the frame of that state.

In a rollout it reads the state predicted for the next step, so the predicted frame follows the
predicted physics; `mix` "sum" adds its log-probabilities to the frame head's logits, "replace" uses
them alone (`worldsim train renderer` fits it on a dataset's frames and states).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.core.config import ConfigBase, check_positive
from worldsim.model.codes import CodeDigits, code_loss, predict_codes
from worldsim.model.mlp import mlp

RENDER_MIXES = ("sum", "replace")


@dataclass(frozen=True)
class StateRendererConfig(ConfigBase):
    # Width of the MLP's three hidden layers.
    width: int = 512
    # How its logits combine with the frame head's: "sum" or "replace".
    mix: str = "sum"

    def __post_init__(self) -> None:
        check_positive("StateRendererConfig", width=self.width)
        if self.mix not in RENDER_MIXES:
            raise ValueError(f"StateRendererConfig.mix must be 'sum' or 'replace', got {self.mix!r}")


class StateRenderer(nn.Module):
    """Normalised states [..., S] -> logits [..., N, sum(levels)], per FSQ channel of the tokenizer's `levels`."""

    keep_fp32: ClassVar[bool] = False

    def __init__(self, cfg: StateRendererConfig, state_dim: int, tokens_per_frame: int, levels: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.frame = (tokens_per_frame, sum(levels))
        self.mlp = mlp(state_dim, w, w, w, tokens_per_frame * sum(levels))
        self.digits = CodeDigits(levels)
        # Every code's digits [V, C], to score a joint head's codes by channel.
        self.register_buffer("code_digits", self.digits.digits(torch.arange(math.prod(levels))), persistent=False)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.mlp(states).unflatten(-1, self.frame)

    def mix(self, logits: torch.Tensor, rendered: torch.Tensor, factorized: bool) -> torch.Tensor:
        """The frame head's logits [..., N, V'] (`factorized` or joint) combined with the renderer's
        [..., N, sum(levels)] as `cfg.mix` says, in the frame head's layout. For a joint head the
        renderer's channels become the joint log-probability of every code (the sum of its digits')."""
        if factorized:
            return rendered if self.cfg.mix == "replace" else logits + rendered
        lp = [F.log_softmax(lg.float(), -1) for lg in self.digits.split(rendered)]
        joint = sum(p[..., self.code_digits[:, i]] for i, p in enumerate(lp)).to(logits.dtype)  # [..., N, V]
        return joint if self.cfg.mix == "replace" else logits + joint

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The code loss on frames (batch "states" [n, S] normalised, "codes" [n, N] long): the mean
        per-channel cross-entropy; the logs hold it and the share of codes the argmax gets right."""
        logits = self(batch["states"])
        ce = code_loss(logits, batch["codes"], self.digits).mean()
        with torch.no_grad():
            acc = (predict_codes(logits, digits=self.digits) == batch["codes"]).float().mean()
        return ce, {"ce": ce.detach(), "token_acc": acc}
