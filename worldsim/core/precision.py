"""Inference precision: fp32 everywhere, or bf16 for the matrix work where the hardware runs it natively.

`resolve_precision("auto", device)` is "bf16" on a GPU with bf16 support and on a CPU with AMX tiles,
and "fp32" elsewhere. Measured at the model's shapes: a CPU with AVX2 alone emulates bf16 matmuls about
ten times slower than fp32 (docs/environment.md), and one with AVX-512 BF16 but no AMX ran them 1.7x
slower. `WorldModel.set_precision` says what each precision runs in bf16.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bf16_native(device: str | torch.device) -> bool:
    """Whether `device` has bf16 matrix units that run the model faster than fp32: a GPU with bf16
    support, or a CPU with AMX tiles."""
    device = torch.device(device)
    if device.type == "cuda":  # Ampere (compute capability 8) on; older cards emulate bf16
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    # A private but long-standing probe of torch's CPU feature detection; absent means "no".
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


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


class LowPrecisionCopy:
    """A frozen copy of `module` for inference in `dtype` (parameters whose name holds one of `keep` stay
    as they are; buffers keep their dtype), remade whenever one of the module's weights has changed since
    (an optimiser step, a load, a move to another device). A plain object, so a module that holds one
    neither registers, saves nor trains the copy."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, keep: tuple[str, ...] = ()):
        self.module, self.dtype, self.keep = module, dtype, keep
        self._key: tuple | None = None
        self._copy: nn.Module | None = None

    def get(self) -> nn.Module:
        key = tuple((p.data_ptr(), p._version, p.device) for p in self.module.parameters())
        if self._copy is None or key != self._key:
            twin = copy.deepcopy(self.module).eval().requires_grad_(False)
            for name, p in twin.named_parameters():
                if not any(k in name for k in self.keep):
                    p.data = p.data.to(self.dtype)
            self._key, self._copy = key, twin
        return self._copy
