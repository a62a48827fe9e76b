"""Dataset readers for standard layouts and built-in data (no downloads)."""
from .classification import ClassificationData, builtin_digits, open_classification_data

__all__ = ["ClassificationData", "builtin_digits", "open_classification_data"]
