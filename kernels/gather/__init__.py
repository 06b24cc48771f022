"""Gather kept tokens into a dense buffer and scatter them back (Mixture-of-Depths pruning)."""

from __future__ import annotations

import torch

from worldsim.kernels.dispatch import pick_backend
from worldsim.kernels.gather.reference import gather_tokens_ref, scatter_tokens_ref


def gather_tokens(x: torch.Tensor, index: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x [B, L, D], index [B, M] -> x at those rows [B, M, D]."""
    pick_backend(backend)
    return gather_tokens_ref(x, index)


def scatter_tokens(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x [B, L, D] with rows index [B, M] replaced by values [B, M, D] (out of place)."""
    pick_backend(backend)
    return scatter_tokens_ref(x, index, values)
