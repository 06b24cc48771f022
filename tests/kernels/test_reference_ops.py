"""The PyTorch references: the fused CPU path against the readable one, and hand-checked cases."""

import pytest
import torch
import torch.nn.functional as F

from worldsim.kernels import gather_tokens, moe_ffn, pruned_attention, scatter_tokens


@pytest.mark.parametrize("Lq_steps, per_step", [(1, 7), (3, 5), (5, 13)])
def test_attention_reference_and_fused_sdpa_agree(Lq_steps, per_step):
    torch.manual_seed(0)
    B, H, hd = 2, 3, 8
    L = Lq_steps * per_step
    q, k, v = (torch.randn(B, H, L, hd, requires_grad=True) for _ in range(3))
    step = torch.arange(Lq_steps).repeat_interleave(per_step)
    ref = pruned_attention(q, k, v, step, step, backend="torch")
    fused = pruned_attention(q, k, v, step, step, backend="auto")
    torch.testing.assert_close(ref, fused, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    ga = torch.autograd.grad(ref, (q, k, v), g)
    gb = torch.autograd.grad(fused, (q, k, v), g)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_attention_decode_mode_matches_the_last_step():
    torch.manual_seed(0)
    B, H, hd, S, T = 1, 2, 4, 6, 3
    q, k, v = (torch.randn(B, H, T * S, hd) for _ in range(3))
    step = torch.arange(T).repeat_interleave(S)
    full = pruned_attention(q, k, v, step, step, backend="torch")
    last = pruned_attention(q[:, :, -S:], k, v, step[-S:], step, backend="torch")
    torch.testing.assert_close(full[:, :, -S:], last)


def test_gather_scatter_round_trip():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 4)
    idx = torch.tensor([[0, 3, 8], [1, 2, 5]])
    g = gather_tokens(x, idx)
    torch.testing.assert_close(g[1, 2], x[1, 5])
    y = scatter_tokens(x, idx, g * 2)
    torch.testing.assert_close(y[1, 5], 2 * x[1, 5])
    untouched = [i for i in range(9) if i not in (0, 3, 8)]
    torch.testing.assert_close(y[0, untouched], x[0, untouched])


def test_moe_ffn_matches_a_per_token_loop_and_skips_empty_experts():
    torch.manual_seed(0)
    N, D, Fh, E, K = 11, 6, 5, 4, 2
    x = torch.randn(N, D)
    wg, wu, wd = torch.randn(E, D, Fh), torch.randn(E, D, Fh), torch.randn(E, Fh, D)
    idx = torch.randint(0, 3, (N, K))  # expert 3 receives no token
    idx[:, 1] = (idx[:, 0] + 1) % 3
    w = torch.rand(N, K)
    out = moe_ffn(x, wg, wu, wd, idx, w)
    for n in range(N):
        expect = sum(w[n, j] * ((F.silu(x[n] @ wg[idx[n, j]]) * (x[n] @ wu[idx[n, j]])) @ wd[idx[n, j]])
                     for j in range(K))
        torch.testing.assert_close(out[n], expect, rtol=1e-5, atol=1e-5)
