"""Hierarchical mixture of experts with load-aware (auxiliary-loss-free) routing, DeepSeek-V3/V4 style.

E routed experts in G groups, plus one shared expert that sees every token.
- Affinity s = sigmoid(x W_r) [N, E]. A per-expert bias b is added for *selection only*.
- Tier 1: a group's score is the sum of its top-2 biased affinities; a token keeps its top `top_groups`.
- Tier 2: the top-k biased affinities inside the kept groups pick the experts; their gate weights are
  the unbiased affinities, normalised to sum to one.
- After each optimiser step, `update_bias()` moves b_i by gamma * sign(mean_load - load_i), with the
  load counted over the steps since the last update. No auxiliary loss enters the gradient.
(DeepSeek-V3, https://arxiv.org/abs/2412.19437, sections 2.1.2 and 2.1.3.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.kernels import hierarchical_topk, moe_ffn


class SwiGLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def hierarchical_route(affinity: torch.Tensor, bias: torch.Tensor, groups: int, top_groups: int,
                       top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """affinity [N, E] (in (0, 1)), bias [E] -> (expert index [N, K] long, gate weight [N, K]).

    Selection uses affinity + bias; weights use the affinity alone, normalised over the K picks
    (`worldsim.kernels.hierarchical_topk`: the reference on CPU, a Triton kernel on CUDA).
    """
    return hierarchical_topk(affinity, bias, groups, top_groups, top_k)


class HierarchicalMoE(nn.Module):
    """The MoE FFN: a shared SwiGLU expert plus `experts` routed SwiGLU experts in `groups` groups."""

    def __init__(self, d: int, experts: int, groups: int, top_groups: int, top_k: int, expert_hidden: int,
                 shared_hidden: int, bias_gamma: float):
        super().__init__()
        if experts % groups:
            raise ValueError(f"experts ({experts}) must be a multiple of groups ({groups})")
        if not 1 <= top_groups <= groups:
            raise ValueError(f"top_groups must be in [1, groups={groups}], got {top_groups}")
        if not 1 <= top_k <= top_groups * (experts // groups):
            raise ValueError(f"top_k={top_k} exceeds the experts in {top_groups} kept groups")
        self.experts, self.groups, self.top_groups, self.top_k = experts, groups, top_groups, top_k
        self.bias_gamma = bias_gamma
        self.router = nn.Linear(d, experts, bias=False)
        scale = d**-0.5
        self.w_gate = nn.Parameter(torch.randn(experts, d, expert_hidden) * scale)
        self.w_up = nn.Parameter(torch.randn(experts, d, expert_hidden) * scale)
        self.w_down = nn.Parameter(torch.randn(experts, expert_hidden, d) * expert_hidden**-0.5 * 0.5)
        self.shared = SwiGLU(d, shared_hidden)
        self.register_buffer("bias", torch.zeros(experts))
        # Tokens routed to each expert since the last bias update (persistent: it resumes with training).
        self.register_buffer("load_acc", torch.zeros(experts))
        self.balance = True  # False: the contrast run without the bias update
        self._last_index: torch.Tensor | None = None  # the last call's expert choice, counted on demand

    @property
    def last_load(self) -> torch.Tensor:
        """Tokens routed to each expert by the last call [E] (float, on the CPU)."""
        if self._last_index is None:
            return torch.zeros(self.experts)
        return torch.bincount(self._last_index.reshape(-1), minlength=self.experts).float().cpu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] -> [..., D]."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        affinity = torch.sigmoid(self.router(flat.to(self.router.weight.dtype)).float())
        index, weight = hierarchical_route(affinity, self.bias, self.groups, self.top_groups, self.top_k)
        self._last_index = index.detach()
        if self.training:
            self.load_acc += torch.bincount(index.reshape(-1), minlength=self.experts).float()
        routed = moe_ffn(flat, self.w_gate, self.w_up, self.w_down, index, weight.to(flat.dtype))
        return (routed + self.shared(flat)).reshape(shape)

    @torch.no_grad()
    def update_bias(self) -> None:
        """b_i += gamma * sign(mean_load - load_i) over the load counted since the last call."""
        if self.balance and self.load_acc.sum() > 0:
            self.bias += self.bias_gamma * torch.sign(self.load_acc.mean() - self.load_acc)
        self.load_acc.zero_()


def load_stats(load: torch.Tensor) -> dict[str, float]:
    """MaxVio = (max - mean) / mean, min load (as a fraction of mean) and dead experts of a load vector."""
    load = load.float()
    mean = load.mean().clamp_min(1e-9)
    return {"maxvio": float((load.max() - mean) / mean), "min_load": float(load.min() / mean),
            "dead_experts": int((load == 0).sum())}
