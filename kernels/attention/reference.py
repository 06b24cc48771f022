"""Pruned block-causal attention, the readable reference: full within a step, causal across steps.

Queries and keys carry the index of the time step they belong to; a query at step t sees every key at
steps <= t. With pruning the sequences hold only the kept tokens of each step (gathered into a dense
buffer by `worldsim.kernels.gather_tokens`), so the same rule holds whatever the number of tokens per
step. The KV-cache decode mode is the same call with queries of one new step against the cache plus
that step's own keys.

    allowed[i, j] = q_step[i] >= k_step[j]   (and, optionally, key j valid for this batch row)
    out[i] = softmax_j(q_i . k_j / sqrt(hd), over allowed j) @ v
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def allowed_mask(q_step: torch.Tensor, k_step: torch.Tensor, k_valid: torch.Tensor | None) -> torch.Tensor:
    """[Lq, Lk] bool, or [B, 1, Lq, Lk] with per-row key validity k_valid [B, Lk]."""
    allowed = q_step[:, None] >= k_step[None, :]
    return allowed if k_valid is None else allowed & k_valid[:, None, None, :]


def pruned_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_step: torch.Tensor,
                         k_step: torch.Tensor, k_valid: torch.Tensor | None = None) -> torch.Tensor:
    """q [B, H, Lq, hd], k / v [B, H, Lk, hd], q_step [Lq], k_step [Lk] (long), k_valid [B, Lk] bool or
    None (all valid) -> out [B, H, Lq, hd].

    Computed in fp32 and cast back. A query row with no visible key (it cannot happen with its own
    step's keys present) returns zeros.
    """
    allowed = allowed_mask(q_step, k_step, k_valid)
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.nan_to_num(F.softmax(scores, dim=-1), nan=0.0)
    return torch.einsum("bhqk,bhkd->bhqd", probs, v.float()).to(q.dtype)


def pruned_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_step: torch.Tensor,
                          k_step: torch.Tensor, k_valid: torch.Tensor | None = None) -> torch.Tensor:
    """The same through `F.scaled_dot_product_attention` with a boolean mask (the fast CPU path).

    KV-cache decoding (every key at or before every query's step, all keys valid) needs no mask,
    which lets SDPA take its unmasked kernel.
    """
    if k_valid is None and q_step.numel() and bool(q_step.min() >= k_step.max()):
        return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed_mask(q_step, k_step, k_valid))
