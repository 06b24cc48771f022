"""The grouped MoE FFN, the readable reference: a plain loop over experts.

Each token goes to K experts with weights; each expert is a SwiGLU FFN; the outputs are summed with
the weights. An expert that receives no token is skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moe_ffn_ref(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
                expert_index: torch.Tensor, expert_weight: torch.Tensor) -> torch.Tensor:
    """x [N, D]; w_gate, w_up [E, D, F]; w_down [E, F, D]; expert_index [N, K] long;
    expert_weight [N, K] -> [N, D] = sum_k weight[n, k] * FFN_{index[n, k]}(x[n])."""
    out = torch.zeros_like(x)
    flat_e = expert_index.reshape(-1)
    flat_tok = torch.arange(x.shape[0], device=x.device).repeat_interleave(expert_index.shape[1])
    flat_w = expert_weight.reshape(-1)
    for e in range(w_gate.shape[0]):
        sel = (flat_e == e).nonzero(as_tuple=True)[0]
        if sel.numel() == 0:
            continue
        tok = flat_tok[sel]
        h = x[tok]
        y = (F.silu(h @ w_gate[e]) * (h @ w_up[e])) @ w_down[e]
        out.index_add_(0, tok, y * flat_w[sel, None].to(y.dtype))
    return out
