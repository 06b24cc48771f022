"""The grouped MoE FFN and the hierarchical router's top-k in Triton; see reference.py for the math.

The FFN follows ScatterMoE (https://arxiv.org/abs/2403.08245): the N*K (token, slot) pairs are sorted
by expert once (`order`, `offsets`); every GEMM then walks the sorted rows in blocks that never straddle
two experts, reading its input rows through `order` (the gather fused into the GEMM) and, where the
result belongs to a (token, slot), writing through `order` (the scatter fused too). Forward:

    up:      A, B = x[tok] @ w_gate[e], x[tok] @ w_up[e];  H = silu(A) * B      [NK, F] sorted rows
    down:    Y[slot] = H @ w_down[e]                                             [NK, D] slot order
    combine: out[n] = sum_k weight[n, k] * Y[n, k]                               [N, D]

Backward (dY = weight * g is never stored: the weight scales the gathered rows inside the GEMM):

    dweight[n, k] = g[n] . Y[n, k]
    dA, dB = swiglu'(A, B, (weight * g[tok]) @ w_down[e]^T)                      (epilogue of the GEMM)
    dw_down[e] = H_e^T (weight * g[tok])_e;  dw_gate[e] = x[tok]_e^T dA_e;  dw_up[e] = x[tok]_e^T dB_e
    dx[n] = sum_k (dA @ w_gate[e]^T + dB @ w_up[e]^T)[n, k]

A row block's expert is found in the kernel from `offsets` (a prefix sum over the experts' block
counts), so the launch needs no host sync; experts that receive no token own no block, and their
weight gradients are written as zeros.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from worldsim.kernels.triton_utils import autotune_configs, dot_precision, next_pow2

# GEMM tiles for D, F in the hundreds (the model's 192 x 128 and 512 x 384); not yet measured (no GPU
# was lent to the kernels issue), so autotune picks among them on first use.
_MM_CONFIGS = autotune_configs(
    [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
     for bm, bn, bk, w, s in [(64, 64, 32, 4, 3), (64, 128, 32, 4, 3), (128, 64, 32, 8, 3), (32, 64, 64, 4, 2),
                              (16, 64, 64, 4, 2)]],
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}, num_warps=4, num_stages=1),
)
_WGRAD_CONFIGS = autotune_configs(
    [triton.Config({"BLOCK_P": bp, "BLOCK_Q": bq, "BLOCK_R": br}, num_warps=w, num_stages=s)
     for bp, bq, br, w, s in [(64, 64, 32, 4, 3), (32, 64, 64, 4, 3), (64, 128, 32, 8, 3), (32, 32, 64, 4, 2)]],
    triton.Config({"BLOCK_P": 16, "BLOCK_Q": 16, "BLOCK_R": 16}, num_warps=4, num_stages=1),
)
# Rows per program of the combine and router kernels (memory-bound, tiny); not measured.
BLOCK_ROWS = 16


@triton.jit
def _expert_block(OFFSETS, pid_m, E, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
    """The expert of row block pid_m and that block's sorted rows [row_lo, row_hi); e == E: no block."""
    eo = tl.arange(0, E_PAD)
    lo = tl.load(OFFSETS + eo, mask=eo < E, other=0)
    hi = tl.load(OFFSETS + eo + 1, mask=eo < E, other=0)
    nblk = (hi - lo + BLOCK_M - 1) // BLOCK_M
    blk_end = tl.cumsum(nblk, 0)
    e = tl.minimum(tl.sum((blk_end <= pid_m).to(tl.int32), 0), E)
    this = eo == e
    first_blk = tl.sum(tl.where(this, blk_end - nblk, 0), 0)
    row_lo = tl.sum(tl.where(this, lo, 0), 0) + (pid_m - first_blk) * BLOCK_M
    row_hi = tl.sum(tl.where(this, hi, 0), 0)
    return e, row_lo, row_hi


@triton.autotune(configs=_MM_CONFIGS, key=["D", "F"])
@triton.jit
def _moe_up_kernel(X, WG, WU, ORDER, OFFSETS, A, B, H, E, D, F, TOP_K, sx,
                   swg_e, swg_d, swg_f, swu_e, swu_d, swu_f,
                   DOT_PRECISION: tl.constexpr, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """A, B, H [NK, F] at sorted rows: x[tok] @ w_gate[e], x[tok] @ w_up[e], silu(A) * B."""
    e, row_lo, row_hi = _expert_block(OFFSETS, tl.program_id(0), E, E_PAD, BLOCK_M)
    if e >= E:
        return
    rows = row_lo + tl.arange(0, BLOCK_M)
    rmask = rows < row_hi
    tok = tl.load(ORDER + rows, mask=rmask, other=0) // TOP_K
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < F
    acc_g = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    acc_u = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, D, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        kmask = kk < D
        x = tl.load(X + tok[:, None] * sx + kk[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        wmask = kmask[:, None] & cmask[None, :]
        wg = tl.load(WG + e * swg_e + kk[:, None] * swg_d + cols[None, :] * swg_f, mask=wmask, other=0.0)
        wu = tl.load(WU + e * swu_e + kk[:, None] * swu_d + cols[None, :] * swu_f, mask=wmask, other=0.0)
        acc_g += tl.dot(x, wg, input_precision=DOT_PRECISION)
        acc_u += tl.dot(x, wu, input_precision=DOT_PRECISION)
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    out = rows[:, None] * F + cols[None, :]
    mask = rmask[:, None] & cmask[None, :]
    tl.store(A + out, acc_g.to(A.dtype.element_ty), mask=mask)
    tl.store(B + out, acc_u.to(B.dtype.element_ty), mask=mask)
    tl.store(H + out, h.to(H.dtype.element_ty), mask=mask)


@triton.autotune(configs=_MM_CONFIGS, key=["K_IN", "N_OUT", "SECOND", "SWIGLU_BWD"])
@triton.jit
def _moe_mm_kernel(IN, IN2, W, W2, ORDER, OFFSETS, SCALE, OUT, OUT2, PRE_A, PRE_B, E, K_IN, N_OUT, TOP_K, s_in,
                   sw_e, sw_k, sw_n, sw2_e, sw2_k, sw2_n,
                   GATHER_IN: tl.constexpr, SCALE_IN: tl.constexpr, SECOND: tl.constexpr,
                   SCATTER_OUT: tl.constexpr, SWIGLU_BWD: tl.constexpr,
                   DOT_PRECISION: tl.constexpr, E_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr):
    """acc = scale * IN[row] @ W[e] (+ IN2[r] @ W2[e]) over sorted rows r, row = order[r] // K if GATHER_IN.

    Stored at OUT[order[r]] if SCATTER_OUT else OUT[r]; with SWIGLU_BWD acc is dH and the kernel stores
    dA into OUT and dB into OUT2 from the saved pre-activations PRE_A, PRE_B.
    """
    e, row_lo, row_hi = _expert_block(OFFSETS, tl.program_id(0), E, E_PAD, BLOCK_M)
    if e >= E:
        return
    rows = row_lo + tl.arange(0, BLOCK_M)
    rmask = rows < row_hi
    slot = tl.load(ORDER + rows, mask=rmask, other=0)
    in_rows = slot // TOP_K if GATHER_IN else rows
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < N_OUT
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, K_IN, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        amask = rmask[:, None] & (kk[None, :] < K_IN)
        wmask = (kk[:, None] < K_IN) & cmask[None, :]
        a = tl.load(IN + in_rows[:, None] * s_in + kk[None, :], mask=amask, other=0.0)
        w = tl.load(W + e * sw_e + kk[:, None] * sw_k + cols[None, :] * sw_n, mask=wmask, other=0.0)
        acc += tl.dot(a, w, input_precision=DOT_PRECISION)
        if SECOND:
            a2 = tl.load(IN2 + in_rows[:, None] * s_in + kk[None, :], mask=amask, other=0.0)
            w2 = tl.load(W2 + e * sw2_e + kk[:, None] * sw2_k + cols[None, :] * sw2_n, mask=wmask, other=0.0)
            acc += tl.dot(a2, w2, input_precision=DOT_PRECISION)
    if SCALE_IN:
        acc *= tl.load(SCALE + slot, mask=rmask, other=0.0).to(tl.float32)[:, None]
    mask = rmask[:, None] & cmask[None, :]
    out_rows = slot if SCATTER_OUT else rows
    out = out_rows[:, None] * N_OUT + cols[None, :]
    if SWIGLU_BWD:
        pre_a = tl.load(PRE_A + out, mask=mask, other=0.0).to(tl.float32)
        pre_b = tl.load(PRE_B + out, mask=mask, other=0.0).to(tl.float32)
        sig = tl.sigmoid(pre_a)
        tl.store(OUT + out, (acc * pre_b * sig * (1.0 + pre_a * (1.0 - sig))).to(OUT.dtype.element_ty), mask=mask)
        tl.store(OUT2 + out, (acc * pre_a * sig).to(OUT2.dtype.element_ty), mask=mask)
    else:
        tl.store(OUT + out, acc.to(OUT.dtype.element_ty), mask=mask)


@triton.autotune(configs=_WGRAD_CONFIGS, key=["P", "Q", "L_GATHER", "R_SCALE"])
@triton.jit
def _moe_wgrad_kernel(LEFT, RIGHT, ORDER, OFFSETS, SCALE, OUT, P, Q, TOP_K, s_l, s_r, so_e, so_p, so_q,
                      L_GATHER: tl.constexpr, R_GATHER: tl.constexpr, R_SCALE: tl.constexpr,
                      DOT_PRECISION: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_R: tl.constexpr):
    """OUT[e] [P, Q] = sum over expert e's sorted rows r of LEFT[l(r)]^T (scale(r) * RIGHT[r'(r)])."""
    e = tl.program_id(0)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    q = tl.program_id(2) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    lo, hi = tl.load(OFFSETS + e), tl.load(OFFSETS + e + 1)
    acc = tl.zeros([BLOCK_P, BLOCK_Q], tl.float32)
    for r0 in range(lo, hi, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        rmask = rows < hi
        slot = tl.load(ORDER + rows, mask=rmask, other=0)
        l_rows = slot // TOP_K if L_GATHER else rows
        r_rows = slot // TOP_K if R_GATHER else rows
        left = tl.load(LEFT + l_rows[None, :] * s_l + p[:, None], mask=rmask[None, :] & (p[:, None] < P), other=0.0)
        right = tl.load(RIGHT + r_rows[:, None] * s_r + q[None, :], mask=rmask[:, None] & (q[None, :] < Q), other=0.0)
        if R_SCALE:
            scale = tl.load(SCALE + slot, mask=rmask, other=0.0).to(tl.float32)
            right = (right.to(tl.float32) * scale[:, None]).to(left.dtype)
        acc += tl.dot(left, right, input_precision=DOT_PRECISION)  # [BP, BR] @ [BR, BQ]
    mask = (p[:, None] < P) & (q[None, :] < Q)
    tl.store(OUT + e * so_e + p[:, None] * so_p + q[None, :] * so_q, acc.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _moe_combine_kernel(Y, W, OUT, N, D, TOP_K: tl.constexpr, HAS_W: tl.constexpr, BLOCK_R: tl.constexpr,
                        BLOCK_D: tl.constexpr):
    """OUT[n] = sum_k W[n, k] * Y[n * K + k] (weights 1 without HAS_W), accumulated in fp32."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < N
    mask = rmask[:, None] & (cols[None, :] < D)
    acc = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    for k in tl.static_range(TOP_K):
        y = tl.load(Y + (rows * TOP_K + k)[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_W:
            y = y * tl.load(W + rows * TOP_K + k, mask=rmask, other=0.0).to(tl.float32)[:, None]
        acc += y
    tl.store(OUT + rows[:, None] * D + cols[None, :], acc.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _moe_combine_bwd_kernel(G, Y, DW, N, D, TOP_K: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """DW[n, k] = sum_d G[n, d] * Y[n * K + k, d]."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < N
    for k in tl.static_range(TOP_K):
        acc = tl.zeros([BLOCK_R], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            mask = rmask[:, None] & (cols[None, :] < D)
            g = tl.load(G + rows[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            y = tl.load(Y + (rows * TOP_K + k)[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            acc += tl.sum(g * y, 1)
        tl.store(DW + rows * TOP_K + k, acc.to(DW.dtype.element_ty), mask=rmask)


@triton.jit
def _route_fwd_kernel(AFF, BIAS, IDX, W, WSUM, N, E, GROUP_SIZE, TOP_GROUPS, TOP_K, s_a,
                      E_PAD: tl.constexpr, BLOCK_T: tl.constexpr):
    """Hierarchical top-k for BLOCK_T tokens: ranks by pairwise comparison over [BLOCK_T, E, E]."""
    tok = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = tok < N
    e = tl.arange(0, E_PAD)
    emask = e < E
    a = tl.load(AFF + tok[:, None] * s_a + e[None, :], mask=tmask[:, None] & emask[None, :], other=0.0)
    a = a.to(tl.float32)
    bias = tl.load(BIAS + e, mask=emask, other=0.0).to(tl.float32)
    biased = tl.where(emask[None, :], a + bias[None, :], float("-inf"))  # [BT, E]
    group = e // GROUP_SIZE
    earlier = (e[None, :] < e[:, None])[None, :, :]  # [1, i, j]: j comes before i
    same = (group[:, None] == group[None, :])[None, :, :]
    ej = emask[None, None, :]
    # within its group, expert i is in the top 2 when fewer than 2 others beat it
    bi, bj = biased[:, :, None], biased[:, None, :]
    beats = ((bj > bi) | ((bj == bi) & earlier)) & ej & same
    top2 = (tl.sum(beats.to(tl.int32), 2) < 2) & emask[None, :]
    group_score = tl.sum(tl.where(same & top2[:, None, :], bj, 0.0), 2)  # [BT, E], each expert's group's
    # rank the groups through their first experts
    leader = (((e % GROUP_SIZE) == 0) & emask)[None, None, :]
    gi, gj = group_score[:, :, None], group_score[:, None, :]
    g_earlier = (group[None, :] < group[:, None])[None, :, :]
    g_beats = ((gj > gi) | ((gj == gi) & g_earlier)) & leader
    kept = (tl.sum(g_beats.to(tl.int32), 2) < TOP_GROUPS) & emask[None, :]
    masked = tl.where(kept, biased, float("-inf"))
    mi, mj = masked[:, :, None], masked[:, None, :]
    rank = tl.sum((((mj > mi) | ((mj == mi) & earlier)) & ej).to(tl.int32), 2)  # [BT, E]
    sel = (rank < TOP_K) & kept & tmask[:, None]
    wsum = tl.sum(tl.where(sel, a, 0.0), 1)
    w = a / tl.maximum(wsum, 1e-9)[:, None]
    out = tok[:, None] * TOP_K + rank
    tl.store(IDX + out, (e[None, :] + tl.zeros_like(rank)).to(tl.int64), mask=sel)
    tl.store(W + out, w.to(W.dtype.element_ty), mask=sel)
    tl.store(WSUM + tok, wsum, mask=tmask)


@triton.jit
def _route_bwd_kernel(DW, W, IDX, WSUM, DAFF, N, E, TOP_K: tl.constexpr, E_PAD: tl.constexpr, BLOCK_T: tl.constexpr):
    """d affinity of w = a[idx] / max(sum a[idx], 1e-9): (dw_j - sum_i dw_i w_i) / sum at the picks, 0 elsewhere."""
    tok = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = tok < N
    e = tl.arange(0, E_PAD)
    wsum = tl.load(WSUM + tok, mask=tmask, other=1.0)
    dot = tl.zeros([BLOCK_T], tl.float32)
    for k in tl.static_range(TOP_K):
        dw = tl.load(DW + tok * TOP_K + k, mask=tmask, other=0.0).to(tl.float32)
        dot += dw * tl.load(W + tok * TOP_K + k, mask=tmask, other=0.0).to(tl.float32)
    # the clamp passes no gradient to the sum below its floor
    dot = tl.where(wsum >= 1e-9, dot, 0.0)
    denom = tl.maximum(wsum, 1e-9)
    daff = tl.zeros([BLOCK_T, E_PAD], tl.float32)
    for k in tl.static_range(TOP_K):
        idx = tl.load(IDX + tok * TOP_K + k, mask=tmask, other=-1)
        dw = tl.load(DW + tok * TOP_K + k, mask=tmask, other=0.0).to(tl.float32)
        daff += tl.where(e[None, :] == idx[:, None], ((dw - dot) / denom)[:, None], 0.0)
    mask = tmask[:, None] & (e[None, :] < E)
    tl.store(DAFF + tok[:, None] * E + e[None, :], daff.to(DAFF.dtype.element_ty), mask=mask)


def sort_by_expert(expert_index: torch.Tensor, experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """expert_index [N, K] -> (order [NK] int32: the flat slot n * K + k at each sorted row, offsets [E + 1])."""
    flat = expert_index.reshape(-1)
    order = torch.argsort(flat, stable=True).to(torch.int32)
    offsets = torch.zeros(experts + 1, device=flat.device, dtype=torch.int32)
    offsets[1:] = torch.cumsum(torch.bincount(flat, minlength=experts), 0)
    return order, offsets


def _mm_grid(rows: int, experts: int, n_out: int):
    # every expert may end in a partial block: at most cdiv(rows, BM) + E blocks
    return lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]) + experts, triton.cdiv(n_out, meta["BLOCK_N"]))


def _grouped_mm(inp, w, order, offsets, top_k, out, *, gather=False, scale=None, second=None, scatter=False,
                swiglu_pre=None, out2=None):
    """One launch of `_moe_mm_kernel`; w (and second's weight) are [E, K_IN, N_OUT] views of any strides."""
    e, k_in, n_out = w.shape
    inp2, w2 = second if second is not None else (inp, w)
    pre_a, pre_b = swiglu_pre if swiglu_pre is not None else (out, out)
    _moe_mm_kernel[_mm_grid(order.numel(), e, n_out)](
        inp, inp2, w, w2, order, offsets, scale if scale is not None else out, out, out2 if out2 is not None else out,
        pre_a, pre_b, e, k_in, n_out, top_k, inp.stride(0), *w.stride(), *w2.stride(),
        GATHER_IN=gather, SCALE_IN=scale is not None, SECOND=second is not None, SCATTER_OUT=scatter,
        SWIGLU_BWD=swiglu_pre is not None, DOT_PRECISION=dot_precision(inp.dtype), E_PAD=next_pow2(e))
    return out


def _wgrad(left, right, order, offsets, top_k, p, q, out, *, l_gather=False, r_gather=False, scale=None):
    e = out.shape[0]
    grid = lambda meta: (e, triton.cdiv(p, meta["BLOCK_P"]), triton.cdiv(q, meta["BLOCK_Q"]))  # noqa: E731
    _moe_wgrad_kernel[grid](left, right, order, offsets, scale if scale is not None else out, out, p, q, top_k,
                            left.stride(0), right.stride(0), *out.stride(), L_GATHER=l_gather, R_GATHER=r_gather,
                            R_SCALE=scale is not None, DOT_PRECISION=dot_precision(left.dtype))
    return out


def _combine(y, weight, n, d, top_k, out):
    grid = (triton.cdiv(n, BLOCK_ROWS), triton.cdiv(d, 64))
    _moe_combine_kernel[grid](y, weight if weight is not None else y, out, n, d, TOP_K=top_k,
                              HAS_W=weight is not None, BLOCK_R=BLOCK_ROWS, BLOCK_D=min(64, next_pow2(d)))
    return out


class MoEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down, expert_index, expert_weight):
        x, weight = x.contiguous(), expert_weight.contiguous()
        n, d = x.shape
        e, _, f = w_gate.shape
        top_k = expert_index.shape[1]
        order, offsets = sort_by_expert(expert_index, e)
        pre_a, pre_b, h = (torch.empty(n * top_k, f, device=x.device, dtype=x.dtype) for _ in range(3))
        _moe_up_kernel[_mm_grid(n * top_k, e, f)](
            x, w_gate, w_up, order, offsets, pre_a, pre_b, h, e, d, f, top_k, x.stride(0), *w_gate.stride(),
            *w_up.stride(), DOT_PRECISION=dot_precision(x.dtype), E_PAD=next_pow2(e))
        y = _grouped_mm(h, w_down, order, offsets, top_k, torch.empty(n * top_k, d, device=x.device, dtype=x.dtype),
                        scatter=True)
        out = _combine(y, weight, n, d, top_k, torch.empty_like(x))
        ctx.save_for_backward(x, w_gate, w_up, w_down, weight, order, offsets, pre_a, pre_b, h, y)
        return out

    @staticmethod
    def backward(ctx, g):
        x, w_gate, w_up, w_down, weight, order, offsets, pre_a, pre_b, h, y = ctx.saved_tensors
        g = g.contiguous()
        n, d = x.shape
        e, _, f = w_gate.shape
        top_k = weight.shape[1]
        dweight = torch.empty_like(weight)
        _moe_combine_bwd_kernel[(triton.cdiv(n, BLOCK_ROWS),)](g, y, dweight, n, d, TOP_K=top_k, BLOCK_R=BLOCK_ROWS,
                                                              BLOCK_D=min(64, next_pow2(d)))
        da, db = torch.empty_like(pre_a), torch.empty_like(pre_b)
        _grouped_mm(g, w_down.transpose(1, 2), order, offsets, top_k, da, gather=True, scale=weight,
                    swiglu_pre=(pre_a, pre_b), out2=db)
        dw_down = _wgrad(h, g, order, offsets, top_k, f, d, torch.empty_like(w_down), r_gather=True, scale=weight)
        dx_slots = _grouped_mm(da, w_gate.transpose(1, 2), order, offsets, top_k,
                               torch.empty(n * top_k, d, device=x.device, dtype=x.dtype),
                               second=(db, w_up.transpose(1, 2)), scatter=True)
        dx = _combine(dx_slots, None, n, d, top_k, torch.empty_like(x))
        dw_gate = _wgrad(x, da, order, offsets, top_k, d, f, torch.empty_like(w_gate), l_gather=True)
        dw_up = _wgrad(x, db, order, offsets, top_k, d, f, torch.empty_like(w_up), l_gather=True)
        return dx, dw_gate, dw_up, dw_down, None, dweight


class HierarchicalTopkFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, affinity, bias, groups, top_groups, top_k):
        affinity = affinity.contiguous()
        n, e = affinity.shape
        index = torch.empty(n, top_k, device=affinity.device, dtype=torch.long)
        weight = torch.empty(n, top_k, device=affinity.device, dtype=affinity.dtype)
        wsum = torch.empty(n, device=affinity.device, dtype=torch.float32)
        if n:
            _route_fwd_kernel[(triton.cdiv(n, BLOCK_ROWS),)](
                affinity, bias.contiguous(), index, weight, wsum, n, e, e // groups, top_groups, top_k,
                affinity.stride(0), E_PAD=next_pow2(e), BLOCK_T=BLOCK_ROWS)
        ctx.save_for_backward(weight, index, wsum)
        ctx.experts = e
        ctx.mark_non_differentiable(index)
        return index, weight

    @staticmethod
    def backward(ctx, _dindex, dweight):
        weight, index, wsum = ctx.saved_tensors
        n, top_k = weight.shape
        daff = torch.empty(n, ctx.experts, device=weight.device, dtype=weight.dtype)
        if n:
            _route_bwd_kernel[(triton.cdiv(n, BLOCK_ROWS),)](
                dweight.contiguous(), weight, index, wsum, daff, n, ctx.experts, TOP_K=top_k,
                E_PAD=next_pow2(ctx.experts), BLOCK_T=BLOCK_ROWS)
        return daff, None, None, None, None


def moe_ffn_triton(x, w_gate, w_up, w_down, expert_index, expert_weight) -> torch.Tensor:
    """The Triton path of `worldsim.kernels.moe_ffn`; weights are cast to x's dtype (as autocast would)."""
    if x.shape[0] == 0:
        return torch.zeros_like(x)
    w_gate, w_up, w_down = (w.to(x.dtype) for w in (w_gate, w_up, w_down))
    return MoEFunction.apply(x, w_gate, w_up, w_down, expert_index, expert_weight)


def hierarchical_topk_triton(affinity, bias, groups, top_groups, top_k) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton path of `worldsim.kernels.hierarchical_topk`."""
    return HierarchicalTopkFunction.apply(affinity, bias, groups, top_groups, top_k)
