"""Backend choice for the kernel entry points.

Every public op takes `backend="auto" | "torch" | "triton"`:
- "auto": the Triton kernel when the tensors are on CUDA and Triton is installed; otherwise PyTorch
  ("fused": PyTorch's fastest formulation of the same op: the fused `scaled_dot_product_attention`,
  the MoE sorted by expert, gather and scatter as row lookups in the flattened stream, and the
  reference itself elsewhere).
- "torch": the readable reference in `<op>/reference.py`.
- "triton": the Triton kernel. On CPU tensors it runs only under the Triton interpreter
  (`TRITON_INTERPRET=1` set before the kernel modules are imported), which is how the tests run it.

The environment variable WORLDSIM_KERNELS ("torch" or "triton") overrides what "auto" resolves to,
to switch the kernels off on a GPU or to run the whole model through them under the interpreter.
The Triton modules are imported on first use, so `import worldsim.kernels` never pays for Triton and a
CPU run never loads it; `load_triton()` is that first import.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

import torch

BACKENDS = ("auto", "torch", "triton")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def load_triton() -> ModuleType:
    """Import Triton so that it works whatever the process loaded before.

    Triton's `libtriton.so` carries its own copy of LLVM. Once Mesa's software GL driver has loaded the
    system's LLVM (any MuJoCo render with EGL or OSMesa, ours or the user's), a plain import binds part
    of Triton's LLVM to the system's and segfaults. `RTLD_DEEPBIND` makes the library resolve its own
    symbols first, so the import no longer depends on what ran before it.
    """
    if "triton" in sys.modules:
        return sys.modules["triton"]
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)  # glibc only; elsewhere there is no Mesa LLVM to collide with
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | deepbind)
    try:
        return importlib.import_module("triton")
    finally:
        sys.setdlopenflags(flags)


def interpreting() -> bool:
    """True when the Triton interpreter is on (kernels run on CPU tensors through numpy)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def pick_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Resolve a backend name for these tensors. Returns "torch", "fused" or "triton".

    Raises:
        ValueError: for an unknown name, or "triton" for CPU tensors without the interpreter.
        RuntimeError: for "triton" when the triton package is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        override = os.environ.get("WORLDSIM_KERNELS", "auto")
        if override not in BACKENDS:
            raise ValueError(f"WORLDSIM_KERNELS must be one of {BACKENDS}, got {override!r}")
        if override == "torch":
            return "fused"
        if override == "auto":
            return "triton" if on_cuda and triton_available() else "fused"
        backend = override
    if backend == "triton":
        if not triton_available():
            raise RuntimeError("backend='triton' needs the triton package (pip install triton)")
        if not on_cuda and not interpreting():
            devices = sorted({str(t.device) for t in tensors})
            raise ValueError(f"backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before the kernels "
                             f"are imported to run on the CPU; got tensors on {', '.join(devices)}")
        load_triton()  # before any kernel module's own `import triton`
    return backend
