"""Every chart the project draws names both axes (with units where there are any): checked on the source, so
a new chart without axis labels fails here. Pictures (imshow grids, overlays) and scikit-learn's confusion
matrix display, which labels its own axes, are not charts in this sense."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("mobilevision/**/*.py"), *ROOT.glob("runtime/**/*.py")])
MAKES_AXES = {"subplots", "add_subplot", "add_axes"}
PICTURES = {"imshow", "ConfusionMatrixDisplay", "colorbar"}


def _calls(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def _charts() -> list[tuple[str, str, set[str]]]:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                calls = _calls(fn)
                if calls & MAKES_AXES and not calls & PICTURES:
                    found.append((str(path.relative_to(ROOT)), fn.name, calls))
    return found


def test_the_check_finds_the_charts():
    names = {f"{p}:{f}" for p, f, _ in _charts()}
    assert {"runtime/compare.py:chart", "benchmarks/zoo_latency.py:chart", "benchmarks/web_latency.py:chart"} <= names


@pytest.mark.parametrize("where, function, calls", _charts(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_chart_labels_both_axes(where, function, calls):
    missing = {"set_xlabel", "set_ylabel"} - calls
    assert not missing, f"{where}: {function}() draws a chart without {', '.join(sorted(missing))}"
