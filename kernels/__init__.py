"""Hot-path ops, one folder each: a PyTorch reference, (later) a Triton kernel, and the dispatch.

The model calls only these entry points. Until the kernels issue lands, `backend="triton"` raises
`NotImplementedError`, and "auto" uses PyTorch (fused SDPA for attention).
"""

from worldsim.kernels.attention import block_causal_attention
from worldsim.kernels.gather import gather_tokens, scatter_tokens
from worldsim.kernels.moe import moe_ffn

__all__ = ["block_causal_attention", "gather_tokens", "moe_ffn", "scatter_tokens"]
