"""Soft landmarks from a PCA shape model (active shape model), the Tolerant teacher's targets (spec §4).

Fit PCA on every training shape (2N interleaved, normalised coordinates), keeping the fewest components
whose cumulative explained-variance ratio exceeds ``variance`` (scikit-learn's semantics for a fractional
``n_components``); a shape is softened by projecting onto them, clamping each coefficient b_i to
+-3 sqrt(lambda_i) (lambda: ``explained_variance_``, n-1 denominator) and reconstructing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_VARIANCE = 0.90    # the paper's value is unknown; the code's "t90" label hints at 90 % (spec §4)
CLAMP_SIGMAS = 3.0


@dataclass
class ShapeModel:
    mean: np.ndarray            # (2N,)
    components: np.ndarray      # (k, 2N), rows are eigenvectors
    eigenvalues: np.ndarray     # (k,)
    variance: float

    @classmethod
    def fit(cls, shapes: np.ndarray, variance: float = DEFAULT_VARIANCE) -> "ShapeModel":
        """PCA of (M, 2N) training shapes keeping ``variance`` (0 < variance < 1) of the variance."""
        from sklearn.decomposition import PCA

        shapes = np.asarray(shapes, np.float64)
        if not 0.0 < variance < 1.0:
            raise ValueError(f"shape-model variance {variance} must lie strictly between 0 and 1 (e.g. 0.90)")
        if shapes.ndim != 2 or len(shapes) < 3:
            raise ValueError(f"the shape model needs at least 3 training shapes of 2N values, got {shapes.shape}")
        pca = PCA(n_components=variance, svd_solver="full").fit(shapes)
        return cls(mean=pca.mean_, components=pca.components_, eigenvalues=pca.explained_variance_,
                   variance=variance)

    @property
    def num_components(self) -> int:
        return len(self.eigenvalues)

    def soften(self, shapes: np.ndarray) -> np.ndarray:
        """s_soft = mu + V clamp(V^T (s - mu), +-3 sqrt(lambda)) for (M, 2N) or (2N,) shapes."""
        shapes = np.asarray(shapes, np.float64)
        b = (shapes - self.mean) @ self.components.T
        limit = CLAMP_SIGMAS * np.sqrt(self.eigenvalues)
        return self.mean + np.clip(b, -limit, limit) @ self.components

    def summary(self) -> dict:
        """What the run metadata records."""
        return {"variance": self.variance, "components": self.num_components, "clamp_sigmas": CLAMP_SIGMAS}
