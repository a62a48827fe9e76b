"""``bench --compare``: the rows of one interleaved run side by side, as ratios to a baseline row, and as a chart.

The rows share one run (``profile.benchmark`` interleaves their timed runs), so their ratios carry the machine's
drift equally; that is what makes a ratio quotable where two separate runs' milliseconds are not. The baseline is
the first row that ran (the first artifact on the command line, its first backend) unless another is named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilevision.errors import MobileVisionError


@dataclass
class Comparison:
    """One row against the baseline: ``ratio`` = its median / the baseline's (below 1: faster), ``speedup`` the
    inverse; ``p90_ratio`` the same for p90."""

    label: str
    median_ms: float
    p90_ms: float
    ratio: float
    speedup: float
    p90_ratio: float
    precision: str | None


def row_label(r) -> str:
    """artifact · backend (· OpenVINO precision when it is not ours)."""
    asked = getattr(r, "ov_precision", None)
    return f"{Path(r.artifact).name} · {r.backend}" + (f" ({asked})" if asked not in (None, "f32") else "")


def compare(rows, baseline: str | None = None) -> tuple[str, list[Comparison]]:
    """(the baseline's label, one Comparison per row that ran, in the run's order). ``baseline``: a row label, or
    a prefix of one (``emo_1m.tflite``); default the first row that ran. MobileVisionError when fewer than two
    rows ran or the baseline names none (or several) of them."""
    ran = [r for r in rows if not r.error and r.median_ms]
    if len(ran) < 2:
        raise MobileVisionError(f"--compare needs at least two rows that ran, got {len(ran)}: give more artifacts or "
                                "backends")
    if baseline is None:
        base = ran[0]
    else:
        found = [r for r in ran if row_label(r) == baseline] or [r for r in ran if row_label(r).startswith(baseline)]
        if len(found) != 1:
            labels = "; ".join(row_label(r) for r in ran)
            raise MobileVisionError(f"--baseline {baseline!r} names {'no' if not found else 'more than one'} row: "
                                    f"choose one of {labels}")
        base = found[0]
    out = [Comparison(row_label(r), r.median_ms, r.p90_ms, r.median_ms / base.median_ms,
                      base.median_ms / r.median_ms, r.p90_ms / base.p90_ms, r.precision) for r in ran]
    return row_label(base), out


def chart(base: str, comparisons: list[Comparison], path: Path, title: str) -> Path:
    """A horizontal bar chart of the medians (p90 as a whisker), each bar labelled with its ratio to the baseline;
    written atomically as PNG."""
    try:
        import matplotlib
    except ImportError as e:
        raise MobileVisionError("--compare draws its chart with matplotlib, which is not installed: "
                                "pip install matplotlib") from e
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mobilevision.atomic_io import atomic_save_figure

    n = len(comparisons)
    fig = Figure(figsize=(9, 1.2 + 0.45 * n), dpi=120)
    ax = fig.subplots()
    y = list(range(n))[::-1]
    med = [c.median_ms for c in comparisons]
    colors = ["#7f7f7f" if c.label == base else ("#2ca02c" if c.ratio < 1 else "#d62728") for c in comparisons]
    ax.barh(y, med, color=colors, height=0.6)
    ax.errorbar(med, y, xerr=[[0] * n, [c.p90_ms - c.median_ms for c in comparisons]], fmt="none", ecolor="black",
                capsize=3, linewidth=1)
    for yi, c in zip(y, comparisons):
        text = "baseline" if c.label == base else f"{c.ratio:.2f}× ({c.speedup:.2f}× {'faster' if c.ratio < 1 else 'as fast'})"
        ax.text(c.p90_ms, yi, f"  {c.median_ms:.2f} ms · {text}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{c.label}\n{c.precision or ''}" for c in comparisons], fontsize=8)
    ax.set_xlabel("median latency per inference (ms; whisker: p90)")
    ax.set_ylabel("row (artifact, runtime)")
    ax.set_xlim(0, max(c.p90_ms for c in comparisons) * 1.6)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return atomic_save_figure(fig, path)
