"""What the Triton kernels share: the autotune config lists, which collapse to one under the interpreter."""

from __future__ import annotations

import os

import torch
import triton

from worldsim.kernels.dispatch import interpreting


def autotune_configs(full: list[triton.Config], single: triton.Config) -> list[triton.Config]:
    """`full` on a GPU; `single` under the interpreter or with WORLDSIM_KERNEL_AUTOTUNE=0 (tests, CI).

    Autotuning runs every config once per new key, which under the interpreter takes minutes and tests
    nothing more, so tests see exactly one config.
    """
    if interpreting() or os.environ.get("WORLDSIM_KERNEL_AUTOTUNE", "1") == "0":
        return [single]
    return full


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot`'s input precision: fp32 operands multiply in full fp32 ("ieee") unless PyTorch itself is
    allowed TF32 (`torch.set_float32_matmul_precision("high")`); half-precision operands are unaffected."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"
