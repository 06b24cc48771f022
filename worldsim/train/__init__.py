"""Training: one resumable loop and, on top of it, each part's data and loss (tokenizer, dynamics,
the world model's optional parts), plus export for shipping."""
