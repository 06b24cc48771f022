"""Token selection, gather and scatter in Triton; see reference.py for what each computes.

- `_select_kernel`: one program per (batch, step) row of scores. A token's rank is the number of
  tokens that beat it (a higher score, or an equal score at a lower position); the top k are those of
  rank < k, and a prefix sum over the kept flags puts them in grid order. It writes both the grid-order
  picks and their stream positions (with the lead tokens), replacing topk + sort + cat + index math.
- `_copy_rows_kernel`: dst[b, m] = src[b, idx[b, m]] (gather), or dst[b, idx[b, m]] = src[b, m] (its
  backward, into zeros).
- `_scatter_fwd_kernel` / `_scatter_bwd_kernel`: the gated residual update of the kept rows, fused:
  the stream copy is one memcpy, then each kept row is read once and written once; the backward gives
  every gradient (stream, values, gate, kept) from one read of the kept rows' output gradient.
Index rows must hold distinct positions (as selection gives), so no two programs write one row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from worldsim.kernels.triton_utils import next_pow2

# Rows per program and the width chunk of the copy kernels: memory-bound copies of a few hundred
# floats a row; not yet measured on a GPU (no GPU lent to the kernels issue).
BLOCK_R = 16
MAX_BLOCK_D = 128


@triton.jit
def _select_kernel(SCORE, TOP, INDEX, T, N, K, LEAD, ss_b, ss_t, ss_n,
                   BLOCK_N: tl.constexpr, LEAD_PAD: tl.constexpr):
    row = tl.program_id(0)  # b * T + t
    b, t = row // T, row % T
    offs = tl.arange(0, BLOCK_N)
    valid = offs < N
    s = tl.load(SCORE + b * ss_b + t * ss_t + offs * ss_n, mask=valid, other=0.0).to(tl.float32)
    # beats[i, j]: token j ranks above token i
    beats = (s[None, :] > s[:, None]) | ((s[None, :] == s[:, None]) & (offs[None, :] < offs[:, None]))
    rank = tl.sum((beats & valid[None, :]).to(tl.int32), 1)
    keep = (rank < K) & valid
    pos = tl.cumsum(keep.to(tl.int32), 0) - 1  # place among the kept, in grid order
    m = LEAD + K
    tl.store(TOP + row * K + pos, offs.to(tl.int64), mask=keep)
    tl.store(INDEX + row * m + LEAD + pos, (t * (LEAD + N) + LEAD + offs).to(tl.int64), mask=keep)
    lead = tl.arange(0, LEAD_PAD)
    tl.store(INDEX + row * m + lead, (t * (LEAD + N) + lead).to(tl.int64), mask=lead < LEAD)


@triton.jit
def _copy_rows_kernel(SRC, IDX, DST, M, D, L_SRC, L_DST,
                      SCATTER: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_r, b = tl.program_id(0), tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < M
    pos = tl.load(IDX + b * M + rows, mask=rmask, other=0)
    if SCATTER:
        src_row, dst_row = b * L_SRC + rows, b * L_DST + pos
    else:
        src_row, dst_row = b * L_SRC + pos, b * L_DST + rows
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols[None, :] < D)
        val = tl.load(SRC + src_row[:, None] * D + cols[None, :], mask=mask)
        tl.store(DST + dst_row[:, None] * D + cols[None, :], val, mask=mask)


@triton.jit
def _scatter_fwd_kernel(X, IDX, VALUES, GATE, KEPT, OUT, M, D, L,
                        HAS_KEPT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """OUT[b, idx[b, m]] = kept + gate * (values - kept), kept = KEPT[b, m] or X[b, idx[b, m]]."""
    pid_r, b = tl.program_id(0), tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < M
    pos = b * L + tl.load(IDX + b * M + rows, mask=rmask, other=0)
    gate = tl.load(GATE + b * M + rows, mask=rmask, other=0.0).to(tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols[None, :] < D)
        val = tl.load(VALUES + (b * M + rows)[:, None] * D + cols[None, :], mask=mask).to(tl.float32)
        if HAS_KEPT:
            kept = tl.load(KEPT + (b * M + rows)[:, None] * D + cols[None, :], mask=mask).to(tl.float32)
        else:
            kept = tl.load(X + pos[:, None] * D + cols[None, :], mask=mask).to(tl.float32)
        out = kept + gate[:, None] * (val - kept)
        tl.store(OUT + pos[:, None] * D + cols[None, :], out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _scatter_bwd_kernel(G, X, IDX, VALUES, GATE, KEPT, DX, DVALUES, DGATE, DKEPT, M, D, L,
                        HAS_GATE: tl.constexpr, HAS_KEPT: tl.constexpr, BLOCK_R: tl.constexpr,
                        BLOCK_D: tl.constexpr):
    """Given DX = a copy of G: the kept rows' gradients from g = G[b, idx[b, m]].

    Ungated: dvalues = g, DX row = 0. Gated: dvalues = gate * g, dkept = g - gate * g (into DKEPT, or
    into the DX row when kept are x's own rows), dgate = sum_d g * (values - kept).
    """
    pid_r, b = tl.program_id(0), tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < M
    pos = b * L + tl.load(IDX + b * M + rows, mask=rmask, other=0)
    mrow = b * M + rows
    if HAS_GATE:
        gate = tl.load(GATE + mrow, mask=rmask, other=0.0).to(tl.float32)
    dgate = tl.zeros([BLOCK_R], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        mask = rmask[:, None] & (cols[None, :] < D)
        g = tl.load(G + pos[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_GATE:
            val = tl.load(VALUES + mrow[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            if HAS_KEPT:
                kept = tl.load(KEPT + mrow[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            else:
                kept = tl.load(X + pos[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            dgate += tl.sum(g * (val - kept), 1)
            dval = gate[:, None] * g
            dkept = g - dval
            if HAS_KEPT:
                tl.store(DKEPT + mrow[:, None] * D + cols[None, :], dkept.to(DKEPT.dtype.element_ty), mask=mask)
                tl.store(DX + pos[:, None] * D + cols[None, :], tl.zeros_like(g).to(DX.dtype.element_ty), mask=mask)
            else:
                tl.store(DX + pos[:, None] * D + cols[None, :], dkept.to(DX.dtype.element_ty), mask=mask)
        else:
            dval = g
            tl.store(DX + pos[:, None] * D + cols[None, :], tl.zeros_like(g).to(DX.dtype.element_ty), mask=mask)
        tl.store(DVALUES + mrow[:, None] * D + cols[None, :], dval.to(DVALUES.dtype.element_ty), mask=mask)
    if HAS_GATE:
        tl.store(DGATE + mrow, dgate.to(DGATE.dtype.element_ty), mask=rmask)


def select_tokens_triton(score: torch.Tensor, k: int, lead: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton path of `worldsim.kernels.select_tokens` (no gradient: indices only)."""
    b, t, n = score.shape
    top = torch.empty(b, t, k, device=score.device, dtype=torch.long)
    index = torch.empty(b, t * (lead + k), device=score.device, dtype=torch.long)
    if b * t:
        _select_kernel[(b * t,)](score, top, index, t, n, k, lead, *score.stride(),
                                 BLOCK_N=next_pow2(n), LEAD_PAD=next_pow2(lead))
    return top, index


def _copy_rows(src: torch.Tensor, index: torch.Tensor, dst: torch.Tensor, scatter: bool) -> torch.Tensor:
    b, m = index.shape
    d = src.shape[-1]
    if b * m * d:
        _copy_rows_kernel[(triton.cdiv(m, BLOCK_R), b)](
            src, index, dst, m, d, src.shape[1], dst.shape[1], SCATTER=scatter, BLOCK_R=BLOCK_R,
            BLOCK_D=min(MAX_BLOCK_D, next_pow2(d)))
    return dst


class GatherTokensFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index):
        x, index = x.contiguous(), index.contiguous()
        ctx.save_for_backward(index)
        ctx.length = x.shape[1]
        out = torch.empty(x.shape[0], index.shape[1], x.shape[2], device=x.device, dtype=x.dtype)
        return _copy_rows(x, index, out, scatter=False)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        dx = torch.zeros(g.shape[0], ctx.length, g.shape[2], device=g.device, dtype=g.dtype)
        return _copy_rows(g.contiguous(), index, dx, scatter=True), None


class ScatterTokensFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index, values, gate, kept):
        x, index, values = x.contiguous(), index.contiguous(), values.contiguous()
        gate = None if gate is None else gate.contiguous()
        kept = None if kept is None else kept.contiguous()
        b, m = index.shape
        d = x.shape[-1]
        out = x.clone()
        if gate is None:
            _copy_rows(values, index, out, scatter=True)
        elif b * m * d:
            _scatter_fwd_kernel[(triton.cdiv(m, BLOCK_R), b)](
                x, index, values, gate, kept if kept is not None else x, out, m, d, x.shape[1],
                HAS_KEPT=kept is not None, BLOCK_R=BLOCK_R, BLOCK_D=min(MAX_BLOCK_D, next_pow2(d)))
        ctx.save_for_backward(x, index, values, gate, kept)
        return out

    @staticmethod
    def backward(ctx, g):
        x, index, values, gate, kept = ctx.saved_tensors
        g = g.contiguous()
        b, m = index.shape
        d = x.shape[-1]
        dx = g.clone()
        dvalues = torch.empty_like(values)
        dgate = None if gate is None else torch.empty_like(gate)
        dkept = None if kept is None else torch.empty_like(kept)
        if b * m * d:
            _scatter_bwd_kernel[(triton.cdiv(m, BLOCK_R), b)](
                g, x, index, values, gate if gate is not None else values, kept if kept is not None else x,
                dx, dvalues, dgate if dgate is not None else dvalues, dkept if dkept is not None else dvalues,
                m, d, x.shape[1], HAS_GATE=gate is not None, HAS_KEPT=kept is not None, BLOCK_R=BLOCK_R,
                BLOCK_D=min(MAX_BLOCK_D, next_pow2(d)))
        return dx, None, dvalues, dgate, dkept


def gather_tokens_triton(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The Triton path of `worldsim.kernels.gather_tokens`."""
    return GatherTokensFunction.apply(x, index)


def scatter_tokens_triton(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
                          gate: torch.Tensor | None = None, kept: torch.Tensor | None = None) -> torch.Tensor:
    """The Triton path of `worldsim.kernels.scatter_tokens`."""
    return ScatterTokensFunction.apply(x, index, values, gate, None if gate is None else kept)
