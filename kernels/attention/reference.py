"""Block-causal attention, the readable reference: full within a step, causal across steps.

Queries and keys carry the index of the time step they belong to; a query at step t sees every key at
steps <= t. With pruning the sequences hold only the kept tokens of each step, so the same rule holds
whatever the number of tokens per step. The KV-cache decode mode is the same call with queries of one
new step against the cache plus that step's own keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def block_causal_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               q_step: torch.Tensor, k_step: torch.Tensor) -> torch.Tensor:
    """q [B, H, Lq, hd], k / v [B, H, Lk, hd], q_step [Lq], k_step [Lk] (long) -> out [B, H, Lq, hd].

    A query row with no visible key (it cannot happen with its own step's keys present) returns zeros.
    """
    allowed = q_step[:, None] >= k_step[None, :]  # [Lq, Lk]
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.nan_to_num(F.softmax(scores, dim=-1), nan=0.0)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v.float()).to(q.dtype)


def block_causal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                q_step: torch.Tensor, k_step: torch.Tensor) -> torch.Tensor:
    """The same through `F.scaled_dot_product_attention` with a boolean mask (fused on CPU and GPU)."""
    allowed = q_step[:, None] >= k_step[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
