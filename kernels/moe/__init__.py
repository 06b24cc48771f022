"""The grouped MoE FFN (SwiGLU experts, weighted combine); see reference.py."""

from __future__ import annotations

import torch

from worldsim.kernels.dispatch import pick_backend
from worldsim.kernels.moe.reference import moe_ffn_ref


def moe_ffn(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
            expert_index: torch.Tensor, expert_weight: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """x [N, D] through the experts in expert_index [N, K] with weights expert_weight [N, K] -> [N, D]."""
    pick_backend(backend)
    return moe_ffn_ref(x, w_gate, w_up, w_down, expert_index, expert_weight)
