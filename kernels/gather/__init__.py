"""Token selection, gather and scatter for pruning (Mixture-of-Depths); see reference.py and triton.py."""

from __future__ import annotations

import torch

from worldsim.kernels.dispatch import pick_backend
from worldsim.kernels.gather.reference import (
    gather_tokens_ref,
    gather_tokens_rows,
    scatter_tokens_ref,
    scatter_tokens_rows,
    select_tokens_ref,
)


def select_tokens(score: torch.Tensor, k: int, lead: int = 2, backend: str = "auto") -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """The top-capacity selection of a pruned block: per step, `lead` always-kept tokens and the top k by score.

    Args:
        score: [B, T, N], one score per frame token of each of T steps; a step holds S = lead + N tokens,
            the lead ones first.
        k: frame tokens kept per step, 1 <= k <= N.
        lead: always-kept tokens at the start of each step (the action and state tokens).
        backend: "auto" | "torch" | "triton" (see `worldsim.kernels.dispatch`).

    Returns:
        top [B, T, k] long: the kept frame tokens of each step in grid order; index [B, T * (lead + k)]
        long: their positions in the [B, T * S] stream, lead tokens first in each step, ready for
        `gather_tokens`. Not differentiable; equal scores go to the lower position on the Triton path
        (torch.topk leaves that order unspecified).
    """
    if not 1 <= k <= score.shape[-1]:
        raise ValueError(f"k must be in [1, N={score.shape[-1]}], got {k}")
    be = pick_backend(backend, score)
    if be == "triton":
        from worldsim.kernels.gather.triton import select_tokens_triton

        return select_tokens_triton(score.detach(), k, lead)
    return select_tokens_ref(score.detach(), k, lead)


def gather_tokens(x: torch.Tensor, index: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x [B, L, D], index [B, M] long (distinct positions per row) -> x's rows at index [B, M, D]."""
    be = pick_backend(backend, x)
    if be == "triton":
        from worldsim.kernels.gather.triton import gather_tokens_triton

        return gather_tokens_triton(x, index)
    return gather_tokens_rows(x, index) if be == "fused" else gather_tokens_ref(x, index)


def scatter_tokens(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor, gate: torch.Tensor | None = None,
                   kept: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """A copy of the stream x [B, L, D] with the rows at index [B, M] (distinct per row) replaced.

    Without a gate the rows become values [B, M, D]. With gate [B, M] they become the gated residual
    update `kept + gate * (values - kept)`, fused into the scatter; kept [B, M, D] defaults to x's rows at
    index (pass the already gathered rows to reuse them). Differentiable in x, values, gate and kept.
    """
    be = pick_backend(backend, x)
    if be == "triton":
        from worldsim.kernels.gather.triton import scatter_tokens_triton

        return scatter_tokens_triton(x, index, values, gate, kept)
    if be == "fused":
        return scatter_tokens_rows(x, index, values, gate, kept)
    return scatter_tokens_ref(x, index, values, gate, kept)
