"""Kernel tests: run the Triton kernels under the interpreter (tests/conftest.py sets TRITON_INTERPRET=1
before anything imports triton) and catch unwritten output memory."""

import pytest
import torch


@pytest.fixture(autouse=True)
def nan_filled_empty(monkeypatch):
    """torch.empty / empty_like filled with NaN (floats) or a huge sentinel (integers), so an output
    element a kernel forgets to write fails the comparison (as fla's conftest does)."""
    empty, empty_like = torch.empty, torch.empty_like

    def fill(t: torch.Tensor) -> torch.Tensor:
        if t.dtype.is_floating_point:
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(torch.iinfo(t.dtype).max)
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: fill(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: fill(empty_like(*a, **k)))
    yield
