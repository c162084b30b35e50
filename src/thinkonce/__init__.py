"""thinkonce."""
