"""Token selection, gather and (gated) scatter: the Triton kernels (interpreted) and the fused CPU path
("auto" on CPU tensors: row lookups in the flattened stream) against the reference."""

import pytest
import torch
from kernel_tolerances import assert_close

from worldsim.kernels import gather_tokens, scatter_tokens, select_tokens


@pytest.mark.parametrize("B, T, N, k", [(1, 1, 13, 1), (2, 3, 13, 5), (2, 3, 13, 13), (1, 2, 64, 26)])
def test_select_matches_reference(B, T, N, k):
    # k = 1: a nearly all pruned step; k = N: all kept; 64 / 26: a v4 step at capacity 0.4
    score = torch.randn(B, T, N, generator=torch.Generator().manual_seed(0))
    top, index = select_tokens(score, k, lead=2, backend="triton")
    ref_top, ref_index = select_tokens(score, k, lead=2, backend="torch")
    assert torch.equal(top, ref_top) and torch.equal(index, ref_index)


def test_select_with_ties_keeps_a_valid_top_k_preferring_lower_positions():
    score = torch.tensor([[[0.5, 1.0, 0.5, 0.5, 2.0, 0.5]]])
    top, index = select_tokens(score, 3, lead=2, backend="triton")
    assert top.tolist() == [[[0, 1, 4]]]
    assert index.tolist() == [[0, 1, 2, 3, 6]]


def test_select_rejects_a_bad_capacity():
    with pytest.raises(ValueError, match=r"k must be in \[1, N=4\]"):
        select_tokens(torch.zeros(1, 1, 4), 5)


def stream(B, T, N, D, k, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T * (N + 2), D, generator=g).to(dtype).requires_grad_()
    _, index = select_tokens(torch.randn(B, T, N, generator=g), k, lead=2)
    return x, index


@pytest.mark.parametrize("backend", ["triton", "auto"])
@pytest.mark.parametrize("B, T, N, D, k", [(1, 1, 9, 7, 1), (2, 3, 9, 20, 4), (2, 2, 9, 130, 9)])
def test_gather_matches_reference(B, T, N, D, k, backend):
    x, index = stream(B, T, N, D, k)
    out = gather_tokens(x, index, backend=backend)
    ref = gather_tokens(x, index, backend="torch")
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@pytest.mark.parametrize("backend", ["triton", "auto"])
@pytest.mark.parametrize("gated, with_kept", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("B, T, N, D, k", [(1, 1, 9, 7, 1), (2, 3, 9, 130, 4)])
def test_scatter_matches_reference(B, T, N, D, k, gated, with_kept, backend):
    x, index = stream(B, T, N, D, k)
    g = torch.Generator().manual_seed(1)
    values = torch.randn(B, index.shape[1], D, generator=g).requires_grad_()
    gate = torch.rand(B, index.shape[1], generator=g).requires_grad_() if gated else None
    results = []
    for be in (backend, "torch"):
        kept = gather_tokens(x, index, backend=be) if with_kept else None
        out = scatter_tokens(x, index, values, gate, kept, backend=be)
        inputs = [x, values] + ([gate] if gated else [])
        results.append([out, *torch.autograd.grad(out, inputs, torch.randn(out.shape, generator=g.manual_seed(2)))])
    for a, b in zip(*results):
        assert_close(a, b, torch.float32)


def test_fp16_gated_round_trip():
    x, index = stream(2, 2, 9, 20, 4, dtype=torch.float16)
    values = torch.randn(2, index.shape[1], 20, dtype=torch.float16, requires_grad=True)
    gate = torch.rand(2, index.shape[1], dtype=torch.float16, requires_grad=True)
    out = scatter_tokens(x, index, values, gate, gather_tokens(x, index, backend="triton"), backend="triton")
    ref_in = [t.detach().float().requires_grad_() for t in (x, values, gate)]
    ref = scatter_tokens(ref_in[0], index, ref_in[1], ref_in[2], backend="torch")
    assert out.dtype == torch.float16
    assert_close(out, ref, torch.float16)
    g = torch.randn(ref.shape)
    for a, b in zip(torch.autograd.grad(out, (x, values, gate), g.half()), torch.autograd.grad(ref, ref_in, g)):
        assert_close(a, b, torch.float16)
