"""Reference networks of the reproduced experiments."""
