"""Pruned block-causal attention; see reference.py for the math and triton.py for the kernel."""

from __future__ import annotations

import torch

from worldsim.kernels.attention.reference import pruned_attention_ref, pruned_attention_sdpa
from worldsim.kernels.dispatch import pick_backend


def pruned_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_step: torch.Tensor,
                     k_step: torch.Tensor, k_valid: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Attention over (gathered, possibly pruned) tokens where a query at step t sees keys at steps <= t.

    Full within a step, causal across steps. For KV-cache decoding pass the new step's queries and the
    cache's keys and values (which include the new step's own).

    Args:
        q: [B, H, Lq, hd]; k, v: [B, H, Lk, hd], all one dtype.
        q_step: [Lq] long, the time step of each query; k_step: [Lk] long, of each key.
        k_valid: [B, Lk] bool, the keys each batch row may see (a cache whose rows restarted), or None.
        backend: "auto" | "torch" | "triton". "auto" takes the Triton kernel on CUDA and PyTorch's fused
            `scaled_dot_product_attention` with a boolean mask elsewhere (the fast CPU path); "torch"
            is the readable fp32 reference.

    Returns:
        [B, H, Lq, hd] in q's dtype; a query that sees no key gets zeros. Differentiable in q, k, v.
    """
    be = pick_backend(backend, q, k, v)
    if be == "triton":
        from worldsim.kernels.attention.triton import pruned_attention_triton

        return pruned_attention_triton(q, k, v, q_step, k_step, k_valid)
    if be == "torch":
        return pruned_attention_ref(q, k, v, q_step, k_step, k_valid)
    return pruned_attention_sdpa(q, k, v, q_step, k_step, k_valid)
