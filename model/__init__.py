"""The learned world: tokenizer, dynamics transformer, pruning router, MoE, heads and `WorldModel`.

    from worldsim.model import Tokenizer, WorldModel
"""

from worldsim.model.tokenizer import Tokenizer, TokenizerConfig
from worldsim.model.world_model import WorldModel, WorldModelConfig

__all__ = ["Tokenizer", "TokenizerConfig", "WorldModel", "WorldModelConfig"]
