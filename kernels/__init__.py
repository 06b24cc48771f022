"""Hot-path ops, one folder each: a PyTorch reference, a Triton kernel, and the dispatch between them.

The model calls only these entry points. Each takes `backend="auto" | "torch" | "triton"`: "auto" runs
the Triton kernel on CUDA tensors and PyTorch elsewhere (see `worldsim.kernels.dispatch`).

- `pruned_attention`: block-causal attention over the kept tokens, with a KV-cache decode mode.
- `select_tokens`, `gather_tokens`, `scatter_tokens`: top-capacity selection, the gather into a dense
  buffer and the (gated) scatter back into the residual stream.
- `moe_ffn`, `hierarchical_topk`: the grouped MoE FFN and its router's top-k.
"""

from worldsim.kernels.attention import pruned_attention
from worldsim.kernels.gather import gather_tokens, scatter_tokens, select_tokens
from worldsim.kernels.moe import hierarchical_topk, moe_ffn

__all__ = ["gather_tokens", "hierarchical_topk", "moe_ffn", "pruned_attention", "scatter_tokens", "select_tokens"]
