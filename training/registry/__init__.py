"""The model registry side of a bundle: what is stored, and checks on it before anything reads it."""
