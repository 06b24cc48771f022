"""The learned world: tokenizer, dynamics transformer (pruning router, MoE, heads, KV cache), the side
models (state pathway, state renderer, outcome head) and `WorldModel`, which composes them.

    from worldsim.model import Tokenizer, WorldModel
"""

from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

__all__ = ["Tokenizer", "TokenizerConfig", "WorldModel", "WorldModelConfig"]
