"""The grouped MoE FFN and the hierarchical router's top-k: the Triton kernels (interpreted) against the reference."""

import pytest
import torch
from kernel_tolerances import assert_close

from worldsim.kernels import hierarchical_topk, moe_ffn


def experts(N, D, Fh, E, K, dtype=torch.float32, used=None, seed=0):
    """Inputs with tokens routed only to the first `used` experts (the rest receive none)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    w = [torch.randn(E, D, Fh, generator=g) * D**-0.5, torch.randn(E, D, Fh, generator=g) * D**-0.5,
         torch.randn(E, Fh, D, generator=g) * Fh**-0.5]
    used = E if used is None else used
    index = torch.stack([torch.randperm(used, generator=g)[:K] for _ in range(N)])
    weight = torch.rand(N, K, generator=g)
    return [t.to(dtype).requires_grad_() for t in (x, *w)] + [index, weight.to(dtype).requires_grad_()]


def check(x, wg, wu, wd, index, weight):
    out = moe_ffn(x, wg, wu, wd, index, weight, backend="triton")
    ref_in = [t.detach().float().requires_grad_() for t in (x, wg, wu, wd, weight)]
    ref = moe_ffn(*ref_in[:4], index, ref_in[4], backend="torch")
    assert out.dtype == x.dtype
    assert_close(out, ref, x.dtype)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, (x, wg, wu, wd, weight), g.to(x.dtype))
    for a, b in zip(grads, torch.autograd.grad(ref, ref_in, g)):
        assert_close(a, b, x.dtype)
    return grads


@pytest.mark.parametrize("N, D, Fh, E, K", [(23, 20, 12, 4, 2), (1, 20, 12, 4, 2), (9, 17, 33, 5, 3)])
def test_matches_reference_forward_and_backward(N, D, Fh, E, K):
    check(*experts(N, D, Fh, E, K))


def test_experts_without_tokens_get_zero_gradient():
    grads = check(*experts(11, 16, 8, 6, 2, used=3))
    for dw in grads[1:4]:
        assert torch.equal(dw[3:], torch.zeros_like(dw[3:]))


def test_fp16():
    check(*experts(23, 20, 12, 4, 2, dtype=torch.float16))


@pytest.mark.parametrize("used", [None, 3])
def test_sorted_cpu_path_matches_reference(used):
    """The CPU fast path (tokens sorted by expert, one gather, one combine) against the loop."""
    from worldsim.kernels.moe.reference import moe_ffn_ref, moe_ffn_sorted

    x, wg, wu, wd, index, weight = experts(29, 20, 12, 6, 2, used=used)
    out = moe_ffn_sorted(x, wg, wu, wd, index, weight)
    ref_in = [t.detach().clone().requires_grad_() for t in (x, wg, wu, wd, weight)]
    ref = moe_ffn_ref(*ref_in[:4], index, ref_in[4])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    for a, b in zip(torch.autograd.grad(out, (x, wg, wu, wd, weight), g), torch.autograd.grad(ref, ref_in, g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(moe_ffn(x, wg, wu, wd, index, weight), out)  # what "auto" takes on CPU


@pytest.mark.parametrize("N, E, G, top_groups, K", [(37, 16, 4, 2, 3), (20, 8, 4, 2, 2), (1, 6, 3, 1, 2),
                                                    (13, 4, 4, 2, 2)])
def test_router_topk_matches_reference(N, E, G, top_groups, K):
    g = torch.Generator().manual_seed(0)
    affinity = torch.rand(N, E, generator=g).requires_grad_()
    bias = torch.randn(E, generator=g) * 0.1
    index, weight = hierarchical_topk(affinity, bias, G, top_groups, K, backend="triton")
    ref_index, ref_weight = hierarchical_topk(affinity, bias, G, top_groups, K, backend="torch")
    assert torch.equal(index, ref_index)
    assert_close(weight, ref_weight, torch.float32)
    dw = torch.randn(N, K, generator=g)
    assert_close(torch.autograd.grad(weight, affinity, dw)[0], torch.autograd.grad(ref_weight, affinity, dw)[0],
                 torch.float32)


def test_router_rejects_bad_groups():
    with pytest.raises(ValueError, match="top_k <= top_groups"):
        hierarchical_topk(torch.rand(2, 8), torch.zeros(8), 4, 1, 3)
