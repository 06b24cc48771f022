"""The grouped MoE FFN (SwiGLU experts, weighted combine) and the hierarchical router's top-k."""

from __future__ import annotations

import torch

from worldsim.kernels.dispatch import pick_backend
from worldsim.kernels.moe.reference import hierarchical_topk_ref, moe_ffn_ref, moe_ffn_sorted


def moe_ffn(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
            expert_index: torch.Tensor, expert_weight: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Every token through its K experts, combined with its weights.

    Args:
        x: [N, D] tokens.
        w_gate, w_up: [E, D, F]; w_down: [E, F, D], the SwiGLU experts.
        expert_index: [N, K] long, each token's experts; expert_weight: [N, K], their weights.
        backend: "auto" | "torch" | "triton". "auto" takes the grouped Triton kernel on CUDA and, elsewhere,
            the same sort-by-expert scheme in PyTorch (`moe_ffn_sorted`); "torch" is the reference
            (a loop over experts).

    Returns:
        [N, D] = sum_k expert_weight[n, k] * FFN_{expert_index[n, k]}(x[n]); differentiable in x, the
        expert weights and expert_weight. An expert that receives no token costs nothing and gets zero
        gradient.
    """
    be = pick_backend(backend, x)
    if be == "triton":
        from worldsim.kernels.moe.triton import moe_ffn_triton

        return moe_ffn_triton(x, w_gate, w_up, w_down, expert_index, expert_weight)
    if be == "fused":
        return moe_ffn_sorted(x, w_gate, w_up, w_down, expert_index, expert_weight)
    return moe_ffn_ref(x, w_gate, w_up, w_down, expert_index, expert_weight)


def hierarchical_topk(affinity: torch.Tensor, bias: torch.Tensor, groups: int, top_groups: int, top_k: int,
                      backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The hierarchical router's top-k (DeepSeek-V3 node-limited routing; see reference.py).

    Args:
        affinity: [N, E] in (0, 1); bias: [E], added for selection only.
        groups: G, dividing E; top_groups: groups kept per token; top_k: experts picked in them.
        backend: "auto" | "torch" | "triton".

    Returns:
        (expert index [N, K] long, in descending order of biased affinity; gate weight [N, K], the
        picks' affinities normalised to sum to one, differentiable in affinity). Equal scores go to the
        lower index on the Triton path (torch.topk leaves that order unspecified).
    """
    n, e = affinity.shape
    if e % groups or not 1 <= top_groups <= groups or not 1 <= top_k <= top_groups * (e // groups):
        raise ValueError(f"need E % groups == 0, 1 <= top_groups <= groups and 1 <= top_k <= top_groups * E / groups;"
                         f" got E={e}, groups={groups}, top_groups={top_groups}, top_k={top_k}")
    be = pick_backend(backend, affinity)
    if be == "triton":
        from worldsim.kernels.moe.triton import hierarchical_topk_triton

        return hierarchical_topk_triton(affinity, bias, groups, top_groups, top_k)
    return hierarchical_topk_ref(affinity, bias, groups, top_groups, top_k)
