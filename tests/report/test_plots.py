"""Figures: integer p ticks, one legend entry per series, min-max error bars, PNG and PDF files."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from gnnddm.report.plots import comm_bytes_figure, save, scaling_figure, series_labels, val_loss_figure
from gnnddm.report.records import RunRecord
from gnnddm.training.tracking import metric_name


def _rows():
    """Two seeds of sync and asm at p = 2, 3, 4, and the global baseline at p = 1."""
    rows = [{"run_id": "g", "p": 1, "speedup_model_time": 1.0, "comm_bytes": 0.0}]
    for algo, rate in (("sync", 0.8), ("asm", 1.1)):
        for p in (2, 3, 4):
            for seed, noise in ((0, -0.1), (1, 0.3)):
                rows.append({"run_id": f"{algo}{p}{seed}", "p": p, "speedup_model_time": rate * p + noise,
                             "comm_bytes": 1e6 * p * rate})
    for row in rows:
        row.update(speedup_wall_time="not reached", comm_bytes_to_target="n/a")
    labels = {row["run_id"]: row["run_id"].rstrip("01234") for row in rows}
    return rows, labels


def test_p_axes_have_integer_ticks_at_the_p_values_and_each_series_once_in_the_legend():
    rows, labels = _rows()
    fig = scaling_figure(rows, "speedup", labels)
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [1, 2, 3, 4]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["asm", "g", "ideal", "sync"]
    plt.close(fig)


def test_error_bars_span_the_seeds_from_min_to_max():
    rows, labels = _rows()
    fig = scaling_figure(rows, "speedup", labels)
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    line, _, (vertical,) = bars["sync"].lines
    assert list(line.get_xdata()) == [2, 3, 4]
    assert line.get_ydata() == pytest.approx([0.8 * p + 0.1 for p in (2, 3, 4)])  # mean of the two seeds
    low_high = np.array([sorted(seg[:, 1]) for seg in vertical.get_segments()])
    np.testing.assert_allclose(low_high, [[0.8 * p - 0.1, 0.8 * p + 0.3] for p in (2, 3, 4)])
    # series are shifted sideways by a few points, and the axes still hold every bar
    values = [r["speedup_model_time"] for r in rows]
    assert ax.get_ylim()[0] <= min(values) and ax.get_ylim()[1] >= max(values)
    plt.close(fig)


def test_wide_p_ranges_get_a_log2_axis_with_integer_labels():
    rows = [{"run_id": f"r{p}", "p": p, "comm_bytes": float(p), "comm_bytes_to_target": "n/a"} for p in (1, 4, 16, 64)]
    fig = comm_bytes_figure(rows, {r["run_id"]: "asm" for r in rows})
    ax = fig.axes[1]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "16", "64"]
    plt.close(fig)
    assert "no run logged cost/comm_bytes" in comm_bytes_figure(
        [{"run_id": "a", "p": 2, "comm_bytes": "n/a", "comm_bytes_to_target": "n/a"}], {"a": "asm"})


def test_seeds_of_a_series_share_one_legend_entry_and_figures_are_saved_as_png_and_pdf(tmp_path):
    val, rounds = metric_name("val_loss"), metric_name("rounds")
    runs = [RunRecord(f"{a}{s}", f"{a}{s}", "finished",
                      tags={"gnnddm.algorithm": a, "gnnddm.num_parts": "2", "gnnddm.seed": str(s)},
                      histories={val: ([1, 2], [1.0, 0.5 + 0.1 * s]), rounds: ([1, 2], [1.0, 2.0])})
            for a in ("asm", "sync") for s in (0, 1, 2)]
    labels = series_labels(runs, ["algorithm", "num_parts"])
    assert labels["asm1"] == "asm p=2"
    fig = val_loss_figure(runs, "rounds", 0.6, labels)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["asm p=2", "sync p=2", "target 0.6"]
    colours = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    assert len(fig.axes[0].get_lines()) == 7 and colours["asm p=2"] != colours["sync p=2"]
    png, pdf = save(fig, tmp_path / "val_loss_vs_rounds")
    assert png.name == "val_loss_vs_rounds.png" and pdf.name == "val_loss_vs_rounds.pdf"
    assert pdf.read_bytes().startswith(b"%PDF") and png.stat().st_size > 1000
    assert plt.imread(png).ndim == 3 and np.asarray(plt.imread(png)).std() > 0
