"""Frame codes as FSQ digits: scoring and picking codes from logits, jointly or per channel.

A code c of a codebook of prod(levels) codes has one digit per FSQ channel, d_i = (c // basis_i) %
levels_i. A joint head gives one logit per code [..., V]; a factorized one gives each channel's
logits side by side [..., sum(levels)]. The frame head and the state renderer share these rules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CodeDigits(nn.Module):
    """The digit layout of FSQ `levels` (buffers, so they follow the model's device)."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        self.sizes = tuple(levels)
        lv = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)

    def digits(self, codes: torch.Tensor) -> torch.Tensor:
        """The digits of codes [...] (long): [..., C], one per channel."""
        return (codes.unsqueeze(-1) // self.basis) % self.levels

    def join(self, digits: torch.Tensor) -> torch.Tensor:
        """The codes [...] of digits [..., C]."""
        return (digits * self.basis).sum(-1)

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Factorized logits [..., sum(levels)] as one [..., levels_i] per channel."""
        return list(logits.split(self.sizes, dim=-1))


def code_loss(logits: torch.Tensor, codes: torch.Tensor, digits: CodeDigits | None = None) -> torch.Tensor:
    """Cross-entropy of `logits` [..., V'] against codes [...] (long): [...]. With `digits` the logits
    are factorized and the loss is the sum over channels of each channel's cross-entropy on its digit."""
    logits = logits.float()
    if digits is None:
        return F.cross_entropy(logits.flatten(0, -2), codes.flatten(), reduction="none").view(codes.shape)
    d = digits.digits(codes)  # [..., C]
    ce = [F.cross_entropy(lg.flatten(0, -2), d[..., i].flatten(), reduction="none")
          for i, lg in enumerate(digits.split(logits))]
    return torch.stack(ce, -1).sum(-1).view(codes.shape)


def predict_codes(logits: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None,
                  digits: CodeDigits | None = None) -> torch.Tensor:
    """Codes [...] from `logits` [..., V']: the argmax at temperature 0, else a sample of
    softmax(logits / temperature); per channel when `digits` says the logits are factorized."""
    parts = digits.split(logits) if digits is not None else [logits]
    picks = []
    for lg in parts:
        if temperature <= 0:
            picks.append(lg.argmax(-1))
        else:
            probs = torch.softmax(lg.float() / temperature, -1)
            pick = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            picks.append(pick.view(lg.shape[:-1]))
    if digits is None:
        return picks[0]
    return digits.join(torch.stack(picks, -1))
