"""The PNG plots the demo and the benchmarks draw: goodput over time with marked instants, and CDFs.

Each function computes what it draws with a pure helper (tested on its own) and renders it with
matplotlib's object API on the Agg canvas, so no global pyplot state and no display are involved.
matplotlib is imported on first use: the rest of dysco does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dysco.errors import UserError


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF as steps: sorted values and the fraction of values <= each."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def fraction_within(values: Sequence[float], limit: float) -> float:
    """The fraction of ``values`` that are <= ``limit`` (0.0 for no values)."""
    return sum(v <= limit for v in values) / len(values) if values else 0.0


def _figure(width: float = 7.0, height: float = 4.0) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - the lock installs it
        raise UserError(
            "drawing PNGs needs matplotlib: run `make setup` (or pip install 'dysco[plots]')"
        ) from exc
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def cdf_png(
    path: str | Path,
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    references: Sequence[tuple[float, float, str]] = (),
    log_x: bool = False,
) -> Path:
    """Draw one CDF step line per series; ``references`` are (x, fraction, label) points to mark,
    e.g. the paper's "80% within 2 ms"; ``log_x`` for values over several orders of magnitude
    (all must be positive)."""
    if not any(series.values()):
        raise ValueError("a CDF needs at least one value")
    if log_x and any(v <= 0 for values in series.values() for v in values):
        raise ValueError("a logarithmic axis needs positive values")
    fig, ax = _figure()
    if log_x:
        ax.set_xscale("log")
    for label, values in series.items():
        if values:
            xs, ys = cdf_points(values)
            ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")
    for x, y, label in references:
        ax.plot([x], [y], marker="x", linestyle="none", color="black")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def timeseries_png(
    path: str | Path,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "time (s)",
    marks: Sequence[tuple[float, str]] = (),
) -> Path:
    """Draw (t, value) lines, e.g. goodput per second, with vertical lines at ``marks`` (t, label),
    e.g. the instants of reconfigurations."""
    fig, ax = _figure(8.0, 4.0)
    for label, points in series.items():
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], label=label)
    for i, (t, label) in enumerate(marks):
        ax.axvline(t, color="tab:red", linestyle="--", linewidth=1, label=label if i == 0 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
