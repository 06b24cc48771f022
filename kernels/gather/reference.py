"""Token selection, gather and scatter for pruning (Mixture-of-Depths), the readable reference.

`select_tokens` keeps, in every step, the `lead` always-kept tokens (action, state) and the top `k`
frame tokens by score, in grid order, and returns their positions in the flat stream. `gather_tokens`
copies those rows into a dense buffer; `scatter_tokens` writes updated rows back into a copy of the
stream, every other token unchanged. With a gate it writes the gated residual update
`kept + gate * (values - kept)` (the Mixture-of-Depths output, https://arxiv.org/abs/2404.02258).
"""

from __future__ import annotations

import torch


def select_tokens_ref(score: torch.Tensor, k: int, lead: int) -> tuple[torch.Tensor, torch.Tensor]:
    """score [B, T, N] -> (top [B, T, k] long, frame-token indices in grid order,
    index [B, T * (lead + k)] long, positions in the stream of T steps of S = lead + N tokens)."""
    b, t, n = score.shape
    top = score.topk(k, dim=-1).indices.sort(dim=-1).values  # [B, T, k], in grid order
    local = torch.cat([torch.arange(lead, device=score.device).expand(b, t, lead), top + lead], dim=-1)
    index = (local + torch.arange(t, device=score.device)[None, :, None] * (lead + n)).reshape(b, -1)
    return top, index


def gather_tokens_ref(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, L, D], index [B, M] long -> [B, M, D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _stream_rows(index: torch.Tensor, length: int) -> torch.Tensor:
    """Positions index [B, M] in streams of `length` tokens -> rows [B * M] of the flattened stream."""
    return (index + torch.arange(index.shape[0], device=index.device)[:, None] * length).reshape(-1)


def gather_tokens_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`gather_tokens_ref` as one row lookup in the flattened [B * L, D] stream (the fast PyTorch
    path on CPU: `index_select` copies whole rows, where `gather` indexes every element)."""
    b, l, d = x.shape
    return x.reshape(b * l, d).index_select(0, _stream_rows(index, l)).view(b, -1, d)


def scatter_tokens_rows(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor, gate: torch.Tensor | None = None,
                        kept: torch.Tensor | None = None) -> torch.Tensor:
    """`scatter_tokens_ref` as one row copy into the flattened [B * L, D] stream (the fast PyTorch path
    on CPU); the gated update is one fused multiply-add."""
    b, l, d = x.shape
    if gate is not None:
        kept = gather_tokens_rows(x, index) if kept is None else kept
        values = torch.addcmul(kept, gate.unsqueeze(-1), values - kept)
    return x.reshape(b * l, d).index_copy(0, _stream_rows(index, l), values.reshape(-1, d)).view(b, l, d)


def scatter_tokens_ref(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor, gate: torch.Tensor | None = None,
                       kept: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of x [B, L, D] with rows `index` [B, M] replaced by values [B, M, D], or, with gate [B, M],
    by kept + gate * (values - kept), where kept [B, M, D] defaults to x's rows at index."""
    if gate is not None:
        kept = gather_tokens_ref(x, index) if kept is None else kept
        values = kept + gate.unsqueeze(-1) * (values - kept)
    return x.scatter(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]), values)
