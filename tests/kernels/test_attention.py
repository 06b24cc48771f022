"""Pruned block-causal attention: the Triton kernel (interpreted) against the reference, forward and backward."""

import pytest
import torch
from kernel_tolerances import assert_close

from worldsim.kernels import pruned_attention


def qkv(B, H, Lq, Lk, hd, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, hd, generator=g).to(dtype).requires_grad_() for n in (Lq, Lk, Lk)]


def check(q, k, v, q_step, k_step, k_valid=None):
    """Triton vs the fp32 reference on the same (upcast) inputs: output and the three gradients."""
    out = pruned_attention(q, k, v, q_step, k_step, k_valid, backend="triton")
    ref_in = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = pruned_attention(*ref_in, q_step, k_step, k_valid, backend="torch")
    assert out.dtype == q.dtype and out.shape == ref.shape
    assert_close(out, ref, q.dtype)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, (q, k, v), g.to(q.dtype))
    ref_grads = torch.autograd.grad(ref, ref_in, g)
    for a, b in zip(grads, ref_grads):
        assert_close(a, b, q.dtype)


@pytest.mark.parametrize("B, steps, per_step", [(2, 1, 7), (1, 3, 5), (2, 4, 13)])
def test_matches_reference_forward_and_backward(B, steps, per_step):
    # head_dim 12 is padded to 16 in the kernel; lengths are not multiples of the 16-wide blocks
    q, k, v = qkv(B, 2, steps * per_step, steps * per_step, 12)
    step = torch.arange(steps).repeat_interleave(per_step)
    check(q, k, v, step, step)


def test_uneven_steps_an_all_kept_and_a_nearly_all_pruned_step():
    # kept tokens per step after pruning: 17 (all kept), 1 (nearly all pruned), 6
    step = torch.tensor([0] * 17 + [1] + [2] * 6)
    q, k, v = qkv(2, 2, len(step), len(step), 16)
    check(q, k, v, step, step)


def test_decode_mode_queries_one_step_against_the_cache():
    S, T = 9, 3
    step = torch.arange(T).repeat_interleave(S)
    q, k, v = qkv(1, 2, S, T * S, 8)
    check(q, k, v, step[-S:], step)
    full_q = torch.cat([torch.randn(1, 2, (T - 1) * S, 8), q.detach()], 2)
    full = pruned_attention(full_q, k.detach(), v.detach(), step, step, backend="triton")
    last = pruned_attention(q.detach(), k.detach(), v.detach(), step[-S:], step, backend="triton")
    torch.testing.assert_close(full[:, :, -S:], last, rtol=1e-5, atol=1e-5)


def test_per_row_key_validity():
    step = torch.arange(3).repeat_interleave(6)
    q, k, v = qkv(2, 2, 6, 18, 8)
    valid = torch.ones(2, 18, dtype=torch.bool)
    valid[1, :12] = False  # row 1 restarted: it sees only the new step's keys
    check(q, k, v, step[-6:], step, valid)


def test_a_query_that_sees_no_key_gets_zeros():
    q, k, v = qkv(1, 1, 3, 4, 8)
    out = pruned_attention(q, k, v, torch.tensor([0, 1, 1]), torch.tensor([1, 1, 2, 2]), backend="triton")
    assert torch.equal(out[0, 0, 0], torch.zeros(8))
    ref = pruned_attention(q, k, v, torch.tensor([0, 1, 1]), torch.tensor([1, 1, 2, 2]), backend="torch")
    assert_close(out, ref, torch.float32)


def test_fp16():
    step = torch.arange(2).repeat_interleave(11)
    q, k, v = qkv(1, 2, 22, 22, 16, dtype=torch.float16)
    check(q, k, v, step, step)


