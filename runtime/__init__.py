"""mobilevision.runtime: run exported artifacts without torch.

    from mobilevision.runtime import load
    model = load("emo_1m.tflite")
    print(model.classify("cat.jpg", top_k=5))
"""
from .api import Model, load, read_metadata
from .backends import BACKENDS, open_backend
from .batch import BatchItem, expand_images

__all__ = ["load", "Model", "read_metadata", "open_backend", "BACKENDS", "BatchItem", "expand_images"]
