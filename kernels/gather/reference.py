"""Token gather / scatter for pruning, the readable reference.

`gather_tokens` picks, for each row, the tokens at `index` into a dense buffer; `scatter_tokens`
writes updated rows back into a copy of the full stream, leaving every other token unchanged.
"""

from __future__ import annotations

import torch


def gather_tokens_ref(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, L, D], index [B, M] long -> [B, M, D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def scatter_tokens_ref(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A copy of x [B, L, D] with rows `index` [B, M] replaced by values [B, M, D]."""
    return x.scatter(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]), values)
