"""The Target seam: every registered target declares its format itself, and the export pipeline names none."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mobilevision.export.api import PRECISIONS
from mobilevision.export.metadata import IMAGE_LAYOUTS, NORMALIZATIONS, SCORES
from mobilevision.export.targets import TARGETS, get_target
from mobilevision.runtime.backends import BACKENDS, backends_for

EXPORT = Path(__file__).resolve().parents[2] / "export"


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_declares_its_format(name):
    t = get_target(name)
    assert t.name == name and re.fullmatch(r"\.[a-z0-9]+", t.suffix)
    assert "fp32" in t.precisions and set(t.precisions) <= set(PRECISIONS)
    assert t.tools and all(isinstance(p, str) and p for p in t.tools)     # versions recorded in the metadata
    assert t.runtime in BACKENDS and t.runtime == backends_for(f"x{t.suffix}")[0]   # its parity runs in its runtime
    for method in ("convert", "save", "validate", "numeric_parity_unavailable"):
        assert callable(getattr(t, method))
    assert set(getattr(t, "layouts", ("NCHW",))) <= set(IMAGE_LAYOUTS)
    assert getattr(t, "input_normalization", "app") in (*NORMALIZATIONS, "uniform")
    assert getattr(t, "classifier_scores", "logits") in SCORES
    assert isinstance(getattr(t, "directory", False), bool) and isinstance(getattr(t, "int8_calibrates", True), bool)


def test_the_export_pipeline_names_no_format():
    """export/api.py asks the target; a format's name or suffix in it is a seam leaking."""
    source = (EXPORT / "api.py").read_text()
    code = re.sub(r'"""[\s\S]*?"""|#[^\n]*', "", source)          # docstrings and comments may explain
    for name in TARGETS:
        t = get_target(name)
        assert f'"{name}"' not in code and f'"{t.suffix}"' not in code, f"export/api.py names {name}"


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_says_whether_it_can_export_here(name):
    """``unavailable()``: None, or one line naming what is missing and the fix (tests skip with it)."""
    why = get_target(name).unavailable()
    assert why is None or (isinstance(why, str) and "\n" not in why and len(why) > 20)
    assert isinstance(getattr(get_target(name), "in_all", True), bool)
