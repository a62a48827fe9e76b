"""Training losses that are part of a paper's method (the engine's default is plain cross-entropy)."""
from .bias import BiasLoss

__all__ = ["BiasLoss"]
