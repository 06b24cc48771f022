"""The grouped MoE FFN and the hierarchical router's top-k, the readable reference.

`moe_ffn_ref`: a plain loop over experts. Each token goes to K experts with weights; each expert is a
SwiGLU FFN; the outputs are summed with the weights. An expert that receives no token is skipped.

`hierarchical_topk_ref`: DeepSeek-V3 node-limited routing (https://arxiv.org/abs/2412.19437, 2.1.2)
over E experts in G groups. Selection uses the biased affinity: a group's score is the sum of its top-2
biased affinities; a token keeps its top `top_groups` groups, then the top-k biased affinities inside
them. The gate weights are the unbiased affinities of the picks, normalised to sum to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_expert(h: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """One SwiGLU expert on its tokens h [M, D]: (silu(h W_gate) * h W_up) W_down."""
    return (F.silu(h @ w_gate) * (h @ w_up)) @ w_down


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
        y = swiglu_expert(x[tok], w_gate[e], w_up[e], w_down[e])
        out.index_add_(0, tok, y * flat_w[sel, None].to(y.dtype))
    return out


def moe_ffn_sorted(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
                   expert_index: torch.Tensor, expert_weight: torch.Tensor) -> torch.Tensor:
    """`moe_ffn_ref`, computed the way the grouped kernel does it (the fast PyTorch path on CPU).

    The N*K (token, expert) pairs are sorted by expert, the tokens gathered once into one buffer,
    each expert runs on its contiguous slice, and one `index_add_` combines the weighted outputs:
    two indexing ops per call instead of three per expert. Same signature and result as the reference.
    """
    n, k = expert_index.shape
    flat_e = expert_index.reshape(-1)
    order = torch.argsort(flat_e, stable=True)
    tok = order // k
    counts = torch.bincount(flat_e, minlength=w_gate.shape[0]).tolist()
    xs = x.index_select(0, tok)  # whole rows: several times faster on CPU than x[tok]
    ys, start = [], 0
    for e, c in enumerate(counts):
        if c:
            ys.append(swiglu_expert(xs[start : start + c], w_gate[e], w_up[e], w_down[e]))
        start += c
    y = torch.cat(ys) if ys else xs.new_zeros(0, x.shape[1])
    y = y * expert_weight.reshape(-1)[order, None].to(y.dtype)
    return torch.zeros_like(x).index_add_(0, tok, y.to(x.dtype))  # autocast computes y in bf16


def hierarchical_topk_ref(affinity: torch.Tensor, bias: torch.Tensor, groups: int, top_groups: int,
                          top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """affinity [N, E] (in (0, 1)), bias [E] -> (expert index [N, K] long, gate weight [N, K]).

    Picks are in descending order of biased affinity. Differentiable in affinity (through the weights).
    """
    n, e = affinity.shape
    biased = affinity + bias
    per_group = biased.view(n, groups, e // groups)
    group_score = per_group.topk(min(2, e // groups), dim=-1).values.sum(-1)  # [N, G]
    kept_groups = group_score.topk(top_groups, dim=-1).indices  # [N, top_groups]
    group_mask = torch.zeros(n, groups, dtype=torch.bool, device=affinity.device)
    group_mask.scatter_(1, kept_groups, True)
    expert_mask = group_mask.repeat_interleave(e // groups, dim=1)  # [N, E]
    masked = biased.masked_fill(~expert_mask, float("-inf"))
    index = masked.topk(top_k, dim=-1).indices  # [N, K]
    w = affinity.gather(1, index)
    return index, w / w.sum(-1, keepdim=True).clamp_min(1e-9)
