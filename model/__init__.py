"""The learned world: tokenizer, dynamics transformer, pruning router, MoE, heads and `WorldModel`."""
