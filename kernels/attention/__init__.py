"""Block-causal attention over (possibly pruned) token sequences; see reference.py for the math."""

from __future__ import annotations

import torch

from worldsim.kernels.attention.reference import block_causal_attention_ref, block_causal_attention_sdpa
from worldsim.kernels.dispatch import pick_backend


def block_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_step: torch.Tensor,
                           k_step: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Attention where a query at step t sees keys at steps <= t.

    Args:
        q: [B, H, Lq, hd]; k, v: [B, H, Lk, hd].
        q_step: [Lq] long, the time step of each query; k_step: [Lk] long, of each key.
        backend: "auto" | "torch" | "triton". The Triton kernel is not written yet (the kernels issue):
            "auto" takes PyTorch's fused SDPA; "torch" the readable reference.
    """
    be = pick_backend(backend)
    if be == "torch":
        return block_causal_attention_ref(q, k, v, q_step, k_step)
    return block_causal_attention_sdpa(q, k, v, q_step, k_step)
