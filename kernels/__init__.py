"""Hot-path ops, one folder each: a PyTorch reference, a Triton kernel, and the dispatch between them."""
