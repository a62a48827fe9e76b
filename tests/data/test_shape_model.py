"""PCA shape model: component count semantics, clamping, reconstruction."""
import numpy as np
import pytest

from mobilevision.data.shape_model import ShapeModel


def shapes(m=200, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=10)
    # variance mostly along two directions (std 1.0 and 0.5), tiny isotropic noise
    d1, d2 = rng.normal(size=10), rng.normal(size=10)
    d1 /= np.linalg.norm(d1)
    d2 -= d1 * (d2 @ d1)
    d2 /= np.linalg.norm(d2)
    return base + rng.normal(size=(m, 1)) * d1 + 0.5 * rng.normal(size=(m, 1)) * d2 + 0.01 * rng.normal(size=(m, 10))


def test_keeps_fewest_components_exceeding_variance():
    s = shapes()
    assert ShapeModel.fit(s, 0.70).num_components == 1     # ~80 % on the first direction
    assert ShapeModel.fit(s, 0.95).num_components == 2
    assert ShapeModel.fit(s, 0.99999).num_components > 2


def test_soften_projects_and_clamps():
    s = shapes()
    model = ShapeModel.fit(s, 0.95)
    soft = model.soften(s)
    # shapes within 3 sigma change only by the discarded noise; the rare ones beyond are pulled in
    b = (s - model.mean) @ model.components.T
    inside = (np.abs(b) < 3 * np.sqrt(model.eigenvalues)).all(axis=1)
    assert inside.sum() > 190
    assert np.abs(soft - s)[inside].max() < 0.1
    assert np.abs(soft - s)[~inside].max() > 0.1
    # a shape 10 sigma along the first component is clamped to 3 sigma
    far = model.mean + 10 * np.sqrt(model.eigenvalues[0]) * model.components[0]
    b = (model.soften(far) - model.mean) @ model.components[0]
    assert b == pytest.approx(3 * np.sqrt(model.eigenvalues[0]))
    assert model.summary() == {"variance": 0.95, "components": 2, "clamp_sigmas": 3.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        ShapeModel.fit(shapes(), 90)
    with pytest.raises(ValueError, match="at least 3"):
        ShapeModel.fit(shapes()[:2], 0.9)
