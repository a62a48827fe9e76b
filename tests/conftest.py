"""Shared fixtures: a tiny registered classifier (fast pipeline tests) and its exports."""
from __future__ import annotations

import pytest
import torch
from torch import nn

TOY = "toy_test_classifier"


class ToyClassifier(nn.Module):
    """Conv + LayerNorm + one attention step + head: the op mix EMO exports, at toy size."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c, h, w = x.shape
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        q = x.reshape(b, 2, c // 2, h * w).transpose(-1, -2)
        a = torch.softmax(q @ q.transpose(-2, -1) * 0.35, dim=-1) @ q
        x = nn.functional.gelu(a.transpose(-1, -2).reshape(b, c, h, w))
        return self.head(x.mean((2, 3)))


def _register_toy() -> None:
    from mobilevision import registry

    registry._ensure_loaded()
    if TOY not in registry._REGISTRY:
        labels = tuple(f"class_{i}" for i in range(10))
        registry.register_model(registry.ModelCard(
            name=TOY, task="classify", input_size=(3, 64, 64), num_classes=10, labels=labels,
            label_set="toy", description="test-only model"))(lambda num_classes=10, **kw: ToyClassifier(num_classes))


# Tests that use these session fixtures export to every target (tens of seconds on first use): they belong to
# the full suite, not to the quick set (pytest -m "not slow").
SLOW_FIXTURES = {"toy_exports", "shared_exports"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def toy_name() -> str:
    _register_toy()
    return TOY


def _shared_models() -> dict:
    """The real zoo models several test modules need exported to every target: (build, export keywords)."""
    import mobilevision
    from mobilevision.testing import spread_out_isp, trained_efficientad_weights

    def landmarks(out):
        torch.manual_seed(0)
        return mobilevision.create_model("landmarks_mnv2_035"), {}

    def efficientad(out):   # as a training run saves it: its run card carries F1-optimal thresholds
        return "efficientad_s", {"weights": trained_efficientad_weights(out / "run")}
    return {"efficientad": (efficientad, {}),             # EfficientAD-S, maps O(0.1), 256 px, with thresholds
            "landmarks_64": (landmarks, {"imgsz": 64}),     # landmarks_mnv2_035 at 64 px, seed 0
            "efficientisp_32": (lambda out: (spread_out_isp("efficientisp"), {}), {"imgsz": 32})}   # 32-px tiles


@pytest.fixture(scope="session")
def shared_exports(tmp_path_factory):
    """``get(key) -> {target: ExportResult or ExportFailure}``: one of ``_shared_models`` exported to every target
    at fp32, once per test session (on first use), for every module that needs it. Read-only: copy a file
    before changing it."""
    cache: dict = {}

    def get(key: str) -> dict:
        if key not in cache:
            from mobilevision.export import export_all

            build, kwargs = _shared_models()[key]
            out = tmp_path_factory.mktemp(f"shared_{key}")
            model, more = build(out)
            before = {k: v.clone() for k, v in model.state_dict().items()} if hasattr(model, "state_dict") else {}
            cache[key] = {r.target: r for r in export_all(model, "all", out_dir=out, **kwargs, **more)}
            # no converter may edit the user's module (coremltools' passes once shifted a buffer in place)
            changed = [k for k, v in before.items() if not torch.equal(model.state_dict()[k], v)]
            assert not changed, f"exporting {key} changed the module's {changed[:3]}"
        return cache[key]
    return get


@pytest.fixture(scope="session")
def toy_exports(tmp_path_factory, toy_name):
    """{target: ExportResult} for the toy model exported once to every target at fp32."""
    from mobilevision.export import export_all

    out = tmp_path_factory.mktemp("toy_exports")
    results = export_all(toy_name, "all", out_dir=out)
    by_target = {r.target: r for r in results}
    failures = [r for r in results if not hasattr(r, "path")]
    assert not failures, failures
    return by_target


def make_image_folder(root, classes=("cat", "dog"), per_class=4, val=True, size=(20, 24)):
    """root/train/<class>/*.png (+ root/val/<class>/*.png), random pixels; returns root."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in (["train", "val"] if val else [""]):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder():
    """The ``make_image_folder`` factory."""
    return make_image_folder


@pytest.fixture
def one_line_error(capsys):
    """``check(rc, *words)``: the command exited 2 with exactly one ``error:`` line holding every
    word and no traceback; returns that line."""
    def check(rc: int, *words: str) -> str:
        captured = capsys.readouterr()
        lines = [l for l in captured.err.strip().splitlines() if l.startswith("error:")]
        assert rc == 2, captured
        assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
        assert all(w in lines[0] for w in words), lines[0]
        return lines[0]
    return check


@pytest.fixture
def require_target():
    """``require_target(name)``: skip (with the target's own reason) a test of a target that cannot export on
    this machine, instead of failing it."""
    from mobilevision.export.targets import get_target

    def require(name: str) -> None:
        why = get_target(name).unavailable()
        if why:
            pytest.skip(f"target {name}: {why}")
    return require
