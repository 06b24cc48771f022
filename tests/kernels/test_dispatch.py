"""Backend choice: names, the CPU rule for "triton", the WORLDSIM_KERNELS override."""

import pytest
import torch

from worldsim.kernels import pruned_attention
from worldsim.kernels.dispatch import pick_backend

X = torch.zeros(1, 1, 2, 4)
S = torch.zeros(2, dtype=torch.long)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        pruned_attention(X, X, X, S, S, backend="cuda")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors, or TRITON_INTERPRET=1"):
        pruned_attention(X, X, X, S, S, backend="triton")


def test_auto_resolution_and_override(monkeypatch):
    assert pick_backend("auto", X) == "fused"  # CPU tensors: PyTorch
    assert pick_backend("torch", X) == "torch"
    assert pick_backend("triton", X) == "triton"  # the interpreter is on in tests
    monkeypatch.setenv("WORLDSIM_KERNELS", "triton")
    assert pick_backend("auto", X) == "triton"
    monkeypatch.setenv("WORLDSIM_KERNELS", "torch")
    assert pick_backend("auto", X) == "fused"
    monkeypatch.setenv("WORLDSIM_KERNELS", "fast")
    with pytest.raises(ValueError, match="WORLDSIM_KERNELS must be one of"):
        pick_backend("auto", X)
