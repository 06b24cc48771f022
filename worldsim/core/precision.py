"""Inference precision: fp32 everywhere, or bf16 for the matrix work where the hardware runs it natively.

`resolve_precision("auto", device)` is "bf16" on a GPU with bf16 support and on a CPU with bf16 matrix
units (AMX tiles or AVX-512 BF16), and "fp32" elsewhere: a CPU without them emulates bf16 matmuls at a
fraction of fp32's speed. `WorldModel.set_precision` says which weights each precision casts.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bf16_native(device: str | torch.device) -> bool:
    """Whether `device` computes bf16 matrix products in hardware."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # Private but long-standing probes of torch's CPU feature detection; absent ones mean "no".
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"auto" -> "bf16" where `bf16_native(device)`, else "fp32"; "fp32" and "bf16" as given.

    Raises:
        ValueError: for another name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def inference_copy(module: nn.Module, dtype: torch.dtype, keep: tuple[str, ...] = ()) -> nn.Module:
    """A frozen copy of `module` for inference, its parameters cast to `dtype` except those whose name
    holds one of `keep` (buffers keep their dtype)."""
    twin = copy.deepcopy(module).eval().requires_grad_(False)
    for name, p in twin.named_parameters():
        if not any(k in name for k in keep):
            p.data = p.data.to(dtype)
    return twin
