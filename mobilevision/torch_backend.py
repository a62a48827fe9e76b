"""The ``torch`` benchmark backend: the artifact's source architecture run eagerly in PyTorch.

It rebuilds the zoo model named in the artifact's metadata (random weights: latency does not
depend on their values) at the artifact's input shape, so ``mobilevision bench model.onnx
--backend ort --backend torch`` compares a runtime with plain PyTorch on the same machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import TensorSpec


class TorchBackend:
    name = "torch"
    computes_in = "fp32"   # the model is rebuilt from the metadata, in fp32, whatever the artifact's precision

    def __init__(self, path: Path, threads: int | None = None, data: dict[str, bytes] | None = None):
        from mobilevision import create_model
        from mobilevision.errors import BackendUnavailable
        from mobilevision.export.metadata import read_sidecar
        from mobilevision.runtime.api import load

        self.path = Path(path)
        try:
            with load(self.path, threads=1) as native:
                metadata = native.metadata
        except BackendUnavailable:  # e.g. a .mlpackage off macOS: the sidecar still says what it is
            metadata = read_sidecar(self.path)
        if metadata is None:
            raise ArtifactError(f"{self.path} has no mobilevision metadata, so the torch backend cannot "
                                "tell which model it is; export it with `mobilevision export`")
        if threads:
            torch.set_num_threads(int(threads))
        self.model = create_model(metadata.model, num_classes=metadata.num_classes).eval()
        self.inputs = [TensorSpec(t.name, list(t.shape), t.dtype, t.layout) for t in metadata.inputs]
        self.outputs = [TensorSpec(t.name, list(t.shape), t.dtype) for t in metadata.outputs]
        self._metadata_json = metadata.to_json()

    @torch.inference_mode()
    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        out = self.model(*[torch.from_numpy(a) for a in arrays])
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.numpy() for o in outs]

    def embedded_metadata(self) -> str | None:
        return self._metadata_json

    def close(self) -> None:
        self.model = None


def probe(device: str):
    """The torch backend runs wherever this module imports (torch is installed), on the CPU."""
    from mobilevision.runtime.backends.base import Availability

    return Availability("torch", device, device == "cpu", f"PyTorch {torch.__version__} eager"
                        if device == "cpu" else "the torch backend runs on the CPU only")
