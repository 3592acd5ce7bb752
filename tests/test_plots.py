"""dysco.plots: the CDF and time-series data are right, and the PNGs are real images of it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dysco.plots import cdf_png, cdf_points, fraction_within, timeseries_png


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG signature"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _ink(path: Path) -> int:
    """Pixels that are not (nearly) white."""
    from matplotlib.image import imread

    img = imread(path)
    return int((img[:, :, :3].sum(axis=2) < 2.9).sum())


def test_cdf_points_are_sorted_steps() -> None:
    xs, ys = cdf_points([3.0, 1.0, 2.0, 2.0])
    assert xs == [1.0, 2.0, 2.0, 3.0]
    assert ys == [0.25, 0.5, 0.75, 1.0]


def test_fraction_within() -> None:
    assert fraction_within([1.0, 2.0, 3.0, 4.0, 5.0], 2.0) == 0.4
    assert fraction_within([], 2.0) == 0.0


def test_cdf_png_draws_the_series(tmp_path: Path) -> None:
    out = cdf_png(
        tmp_path / "sub" / "cdf.png",
        {"proxy removal": [1.0, 1.5, 2.0, 4.0]},
        title="t",
        xlabel="ms",
        references=[(2.0, 0.8, "paper: 80% <= 2 ms")],
    )
    assert out.exists() and _png_size(out) == (700, 400)
    empty = cdf_png(tmp_path / "empty.png", {"x": [1.0]}, title="t", xlabel="ms")
    assert _ink(out) > _ink(empty), "more data, more ink"


def test_cdf_png_refuses_no_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one value"):
        cdf_png(tmp_path / "x.png", {"a": []}, title="t", xlabel="ms")
    with pytest.raises(ValueError, match="logarithmic axis needs positive values"):
        cdf_png(tmp_path / "x.png", {"a": [0.0, 1.0]}, title="t", xlabel="ms", log_x=True)


def test_cdf_png_on_a_logarithmic_axis(tmp_path: Path) -> None:
    values = {"a": [2.0, 30.0, 400.0, 5000.0]}
    log = cdf_png(tmp_path / "log.png", values, title="t", xlabel="ms", log_x=True)
    linear = cdf_png(tmp_path / "linear.png", values, title="t", xlabel="ms")
    assert _png_size(log) == (700, 400) and log.read_bytes() != linear.read_bytes()


def test_timeseries_png_marks_instants(tmp_path: Path) -> None:
    points = [(float(t), 100.0 + 10 * t) for t in range(10)]
    plain = timeseries_png(tmp_path / "a.png", {"goodput": points}, title="t", ylabel="Mbit/s")
    marked = timeseries_png(
        tmp_path / "b.png",
        {"goodput": points},
        title="t",
        ylabel="Mbit/s",
        marks=[(3.0, "reconf"), (6.0, "")],
    )
    assert _png_size(plain) == (800, 400)
    assert _ink(marked) > _ink(plain), "the marks are drawn"
