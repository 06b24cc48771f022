"""Pruned block-causal attention in Triton: flash-style forward and backward; see reference.py for the math.

Forward: one program per (block of BLOCK_M queries, batch x head); it walks the keys in blocks of
BLOCK_N with an online softmax, so no [Lq, Lk] score matrix is ever stored, and saves the row
logsumexp (base 2) for the backward. The block-causal rule is applied inside each tile from the step
indices; a query block stops at its last visible key (`kv_end`), so the fully masked tail of future
steps costs nothing.

Backward (FlashAttention-2, https://arxiv.org/abs/2307.08691, algorithm 2): P is recomputed from the
saved logsumexp. One kernel per key block accumulates dK and dV over the query blocks that see it
(starting at `q_start`); a second per query block accumulates dQ; no atomics.

Shapes: q [B, H, Lq, hd], k / v [B, H, Lk, hd], steps [Lq] / [Lk], optional key validity [B, Lk].
Any strides with a unit last one.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from worldsim.kernels.triton_utils import autotune_configs, dot_precision, next_pow2

LOG2E = 1.4426950408889634

# Tile sizes for head_dim <= 64 on an H100/H200; not yet measured (no GPU lent to the kernels issue).
_FWD_CONFIGS = autotune_configs(
    [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
     for bm, bn, w, s in [(64, 64, 4, 2), (64, 32, 4, 3), (128, 64, 8, 2), (32, 32, 2, 2)]],
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1),
)
_BWD_CONFIGS = autotune_configs(
    [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
     for bm, bn, w, s in [(32, 64, 4, 2), (64, 64, 4, 2), (32, 32, 2, 2), (64, 32, 4, 2)]],
    triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4, num_stages=1),
)


@triton.jit
def _load_tile(base, rows, n_rows, stride_row, offs_d, HEAD_DIM: tl.constexpr):
    """rows [R] of a [n_rows, HEAD_DIM] matrix at base -> [R, D_PAD], zeros outside."""
    mask = (rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM)
    return tl.load(base + rows[:, None] * stride_row + offs_d[None, :], mask=mask, other=0.0)


@triton.jit
def _allowed(q_step, k_step, qm, kn, b, KVALID, LQ, LK, HAS_VALID: tl.constexpr):
    """[BM, BN] mask of the tile: the block-causal rule, in bounds, and (optionally) the key valid for row b."""
    allowed = (q_step[:, None] >= k_step[None, :]) & (qm[:, None] < LQ) & (kn[None, :] < LK)
    if HAS_VALID:
        valid = tl.load(KVALID + b * LK + kn, mask=kn < LK, other=0)
        allowed = allowed & (valid[None, :] != 0)
    return allowed


@triton.autotune(configs=_FWD_CONFIGS, key=["LQ", "LK", "HEAD_DIM"])
@triton.jit
def _attn_fwd_kernel(Q, K, V, O, LSE, QSTEP, KSTEP, KV_END, KVALID,
                     sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, so_b, so_h, so_l,
                     H, LQ, LK, qk_scale,
                     HAS_VALID: tl.constexpr, DOT_PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                     D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // H, bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_PAD)
    q = _load_tile(Q + b * sq_b + h * sq_h, offs_m, LQ, sq_l, offs_d, HEAD_DIM)  # [BM, D]
    q_step = tl.load(QSTEP + offs_m, mask=offs_m < LQ, other=-1)
    kv_end = tl.max(tl.load(KV_END + offs_m, mask=offs_m < LQ, other=0), 0)
    k_base, v_base = K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for start in range(0, kv_end, BLOCK_N):
        kn = start + offs_n
        k = _load_tile(k_base, kn, LK, sk_l, offs_d, HEAD_DIM)  # [BN, D]
        v = _load_tile(v_base, kn, LK, sv_l, offs_d, HEAD_DIM)  # [BN, D]
        k_step = tl.load(KSTEP + kn, mask=kn < LK, other=0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # [BM, BN], log2 units
        allowed = _allowed(q_step, k_step, offs_m, kn, b, KVALID, LQ, LK, HAS_VALID)
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen no key yet keeps m = -inf; shift it by 0 so exp2 gives 0, not NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    seen = l_i > 0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    # +inf for a row with no visible key: the backward's exp2(s - lse) is then 0 there.
    lse = tl.where(seen, m_i + tl.log2(tl.where(seen, l_i, 1.0)), float("inf"))
    o_mask = (offs_m[:, None] < LQ) & (offs_d[None, :] < HEAD_DIM)
    tl.store(O + b * so_b + h * so_h + offs_m[:, None] * so_l + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=o_mask)
    tl.store(LSE + bh * LQ + offs_m, lse, mask=offs_m < LQ)


@triton.jit
def _attn_bwd_delta_kernel(O, DO, DELTA, so_b, so_h, so_l, sdo_b, sdo_h, sdo_l, H, LQ,
                           HEAD_DIM: tl.constexpr, D_PAD: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta[i] = sum_d dO[i, d] * O[i, d], the softmax backward's row term."""
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // H, bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D_PAD)
    o = _load_tile(O + b * so_b + h * so_h, offs_m, LQ, so_l, offs_d, HEAD_DIM).to(tl.float32)
    do = _load_tile(DO + b * sdo_b + h * sdo_h, offs_m, LQ, sdo_l, offs_d, HEAD_DIM).to(tl.float32)
    tl.store(DELTA + bh * LQ + offs_m, tl.sum(o * do, 1), mask=offs_m < LQ)


@triton.autotune(configs=_BWD_CONFIGS, key=["LQ", "LK", "HEAD_DIM"])
@triton.jit
def _attn_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, QSTEP, KSTEP, Q_START, KVALID, DK, DV,
                          sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sdo_b, sdo_h, sdo_l,
                          H, LQ, LK, qk_scale, sm_scale,
                          HAS_VALID: tl.constexpr, DOT_PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                          D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // H, bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D_PAD)
    k = _load_tile(K + b * sk_b + h * sk_h, offs_n, LK, sk_l, offs_d, HEAD_DIM)  # [BN, D]
    v = _load_tile(V + b * sv_b + h * sv_h, offs_n, LK, sv_l, offs_d, HEAD_DIM)  # [BN, D]
    k_step = tl.load(KSTEP + offs_n, mask=offs_n < LK, other=0)
    q_start = tl.min(tl.load(Q_START + offs_n, mask=offs_n < LK, other=LQ), 0)
    q_base, do_base = Q + b * sq_b + h * sq_h, DO + b * sdo_b + h * sdo_h

    dk = tl.zeros([BLOCK_N, D_PAD], tl.float32)
    dv = tl.zeros([BLOCK_N, D_PAD], tl.float32)
    for start in range(q_start, LQ, BLOCK_M):
        qm = start + offs_m
        q = _load_tile(q_base, qm, LQ, sq_l, offs_d, HEAD_DIM)  # [BM, D]
        do = _load_tile(do_base, qm, LQ, sdo_l, offs_d, HEAD_DIM)  # [BM, D]
        lse = tl.load(LSE + bh * LQ + qm, mask=qm < LQ, other=float("inf"))
        delta = tl.load(DELTA + bh * LQ + qm, mask=qm < LQ, other=0.0)
        q_step = tl.load(QSTEP + qm, mask=qm < LQ, other=-1)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # [BM, BN]
        allowed = _allowed(q_step, k_step, qm, offs_n, b, KVALID, LQ, LK, HAS_VALID)
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # [BM, BN]
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PRECISION)
    mask = (offs_n[:, None] < LK) & (offs_d[None, :] < HEAD_DIM)
    # DK and DV are contiguous [B, H, LK, hd]
    out = bh * LK * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=mask)


@triton.autotune(configs=_BWD_CONFIGS, key=["LQ", "LK", "HEAD_DIM"])
@triton.jit
def _attn_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, QSTEP, KSTEP, KV_END, KVALID, DQ,
                        sq_b, sq_h, sq_l, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sdo_b, sdo_h, sdo_l,
                        H, LQ, LK, qk_scale, sm_scale,
                        HAS_VALID: tl.constexpr, DOT_PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr,
                        D_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // H, bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_PAD)
    q = _load_tile(Q + b * sq_b + h * sq_h, offs_m, LQ, sq_l, offs_d, HEAD_DIM)
    do = _load_tile(DO + b * sdo_b + h * sdo_h, offs_m, LQ, sdo_l, offs_d, HEAD_DIM)
    lse = tl.load(LSE + bh * LQ + offs_m, mask=offs_m < LQ, other=float("inf"))
    delta = tl.load(DELTA + bh * LQ + offs_m, mask=offs_m < LQ, other=0.0)
    q_step = tl.load(QSTEP + offs_m, mask=offs_m < LQ, other=-1)
    kv_end = tl.max(tl.load(KV_END + offs_m, mask=offs_m < LQ, other=0), 0)
    k_base, v_base = K + b * sk_b + h * sk_h, V + b * sv_b + h * sv_h

    dq = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for start in range(0, kv_end, BLOCK_N):
        kn = start + offs_n
        k = _load_tile(k_base, kn, LK, sk_l, offs_d, HEAD_DIM)
        v = _load_tile(v_base, kn, LK, sv_l, offs_d, HEAD_DIM)
        k_step = tl.load(KSTEP + kn, mask=kn < LK, other=0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        allowed = _allowed(q_step, k_step, offs_m, kn, b, KVALID, LQ, LK, HAS_VALID)
        p = tl.where(allowed, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
    mask = (offs_m[:, None] < LQ) & (offs_d[None, :] < HEAD_DIM)
    tl.store(DQ + bh * LQ * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=mask)


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def visible_ranges(q_step: torch.Tensor, k_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """kv_end [Lq]: one past each query's last visible key; q_start [Lk]: each key's first viewer (Lq if none).

    Exact for any step order (the kernels still mask every tile); with the steps sorted, as in the
    token stream and the cache, they bound the work to the visible blocks.
    """
    allowed = q_step[:, None] >= k_step[None, :]  # [Lq, Lk]
    lq, lk = allowed.shape
    kv_end = torch.where(allowed, torch.arange(1, lk + 1, device=allowed.device), 0).amax(1)
    q_start = torch.where(allowed, torch.arange(lq, device=allowed.device)[:, None], lq).amin(0)
    return kv_end.to(torch.int32), q_start.to(torch.int32)


def _grid_q(lq: int, bh: int):
    return lambda meta: (triton.cdiv(lq, meta["BLOCK_M"]), bh)


def _grid_k(lk: int, bh: int):
    return lambda meta: (triton.cdiv(lk, meta["BLOCK_N"]), bh)


class PrunedAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, q_step, k_step, k_valid):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        b, h, lq, hd = q.shape
        lk = k.shape[2]
        q_step, k_step = q_step.to(torch.int32).contiguous(), k_step.to(torch.int32).contiguous()
        kv_end, q_start = visible_ranges(q_step, k_step)
        o = torch.empty(b, h, lq, hd, device=q.device, dtype=q.dtype)
        lse = torch.empty(b * h, lq, device=q.device, dtype=torch.float32)
        sm_scale = hd**-0.5
        has_valid = k_valid is not None
        k_valid = k_valid.to(torch.int8).contiguous() if has_valid else q_step
        _attn_fwd_kernel[_grid_q(lq, b * h)](
            q, k, v, o, lse, q_step, k_step, kv_end, k_valid, *_strides(q), *_strides(k), *_strides(v),
            *_strides(o), h, lq, lk, sm_scale * LOG2E, HAS_VALID=has_valid, DOT_PRECISION=dot_precision(q.dtype),
            HEAD_DIM=hd, D_PAD=max(16, next_pow2(hd)))
        ctx.save_for_backward(q, k, v, o, lse, q_step, k_step, kv_end, q_start, k_valid)
        ctx.has_valid = has_valid
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, q_step, k_step, kv_end, q_start, k_valid = ctx.saved_tensors
        do = _unit_last(do)
        b, h, lq, hd = q.shape
        lk = k.shape[2]
        d_pad = max(16, next_pow2(hd))
        delta = torch.empty_like(lse)
        _attn_bwd_delta_kernel[(triton.cdiv(lq, 16), b * h)](
            o, do, delta, *_strides(o), *_strides(do), h, lq, HEAD_DIM=hd, D_PAD=d_pad, BLOCK_M=16)
        dq = torch.empty(b, h, lq, hd, device=q.device, dtype=q.dtype)
        dk = torch.empty(b, h, lk, hd, device=k.device, dtype=k.dtype)
        dv = torch.empty(b, h, lk, hd, device=v.device, dtype=v.dtype)
        args = (*_strides(q), *_strides(k), *_strides(v), *_strides(do), h, lq, lk, ctx.sm_scale * LOG2E,
                ctx.sm_scale)
        flags = dict(HAS_VALID=ctx.has_valid, DOT_PRECISION=dot_precision(q.dtype), HEAD_DIM=hd, D_PAD=d_pad)
        _attn_bwd_dkdv_kernel[_grid_k(lk, b * h)](q, k, v, do, lse, delta, q_step, k_step, q_start, k_valid, dk, dv,
                                                  *args, **flags)
        _attn_bwd_dq_kernel[_grid_q(lq, b * h)](q, k, v, do, lse, delta, q_step, k_step, kv_end, k_valid, dq,
                                                *args, **flags)
        return dq, dk, dv, None, None, None


def pruned_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_step: torch.Tensor,
                            k_step: torch.Tensor, k_valid: torch.Tensor | None = None) -> torch.Tensor:
    """The Triton path of `worldsim.kernels.pruned_attention` (same arguments and result)."""
    if q.shape[2] == 0 or k.shape[2] == 0:
        return torch.zeros_like(q)
    return PrunedAttentionFunction.apply(q, k, v, q_step, k_step, k_valid)
