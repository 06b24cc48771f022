"""Backend choice for the kernel entry points."""

from __future__ import annotations

BACKENDS = ("auto", "torch", "triton")


def pick_backend(backend: str) -> str:
    """Validate a backend name. Returns "torch", or "fused" for auto (PyTorch's fused ops).

    Raises:
        ValueError: for an unknown name.
        NotImplementedError: for "triton", until the Triton kernels land (the kernels issue).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        raise NotImplementedError("the Triton kernels are not written yet; use backend='auto' or 'torch'")
    return "torch" if backend == "torch" else "fused"
