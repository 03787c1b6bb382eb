"""Report figures: convergence against each cost, scaling and communication volume against p, per-rank
time split.

Every ``*_figure`` function returns a matplotlib figure, or a string saying why nothing was drawn
(e.g. no run logged per-rank times), so the report can list what is missing instead of failing;
:func:`save` writes a figure as PNG and PDF. Runs are drawn by series: the runs with equal group-by
keys (seeds of one configuration) share a colour and one legend entry. Plots against p take the mean
over a series' runs at each p, with error bars from the smallest to the largest value.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from gnnddm.report.metrics import spread, value_at_step
from gnnddm.report.records import COSTS, VAL_LOSS, RunRecord, get_field, seed

XLABELS = {
    "rounds": "communication rounds",
    "grad_evals": "epochs (gradient evaluations / N)",
    "wall_time": "wall time (s)",
    "model_time": "modelled parallel time (s)",
}
#: what metric_name("time/<phase>/rank<r>") gives: one rank's cumulative clock
RANK_METRIC = re.compile(r"^cost/rank(\d+)/(compute|communicate|wait)$")
PHASES = ("compute", "communicate", "wait")
SHORT = {"num_parts": "p"}
STYLES = ["-", "--", "-.", ":"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (vector), close the figure, return both paths."""
    fig.tight_layout()
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.savefig(paths[0], dpi=100)
        fig.savefig(paths[1], metadata={"CreationDate": None})  # the same figure gives the same bytes
    _pyplot().close(fig)
    return paths


def series_labels(records: Sequence[RunRecord], keys: Sequence[str]) -> dict[str, str]:
    """A label per run id from its values of ``keys``: ``"asm p=4 overlap=1"`` (the algorithm bare).

    Runs with equal keys share the label; with no keys every run reads ``all runs``.
    """
    out = {}
    for r in records:
        parts = []
        for k in keys:
            v = get_field(r, k)
            parts.append(str(v) if k == "algorithm" else f"{SHORT.get(k, k)}={v if v is not None else '?'}")
        out[r.run_id] = " ".join(parts) or "all runs"
    return out


def _styles(labels: Mapping[str, str]) -> dict[str, dict]:
    """Colour and line style per label: ten colours, then the next line style."""
    plt = _pyplot()
    names = list(dict.fromkeys(labels.values()))
    return {name: {"color": plt.get_cmap("tab10")(i % 10), "linestyle": STYLES[(i // 10) % len(STYLES)]}
            for i, name in enumerate(names)}


def _legend(ax, **kwargs) -> None:
    """A legend with each label once (seeds of one series draw several lines under one label)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(list(unique.values()), list(unique), fontsize="small", **kwargs)


def p_axis(ax, ps: Sequence[int]) -> None:
    """Ticks at the p values drawn, as integers; a log2 axis when p spans a factor of 8 or more."""
    from matplotlib.ticker import NullLocator

    ps = sorted(set(ps))
    if ps and ps[0] > 0 and ps[-1] / ps[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ps, [str(p) for p in ps])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("subdomains p")


def val_loss_figure(records: Sequence[RunRecord], x_metric: str, target: float | None,
                    labels: Mapping[str, str]):
    """``val/loss`` (log scale) against the cumulative cost ``x_metric`` (short name) at each evaluation.

    One line per run, coloured by its series; failed runs dotted with crosses. The x value of an
    evaluation at step s is the cost at s (see :func:`value_at_step`).
    """
    name = COSTS[x_metric]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = _styles(labels)
    drawn = 0
    for r in records:
        if VAL_LOSS not in r.histories or name not in r.histories:
            continue
        pts = []
        for step, loss in zip(*r.histories[VAL_LOSS], strict=True):
            x = value_at_step(*r.histories[name], step)
            if x is not None and loss > 0:
                pts.append((x, loss))
        if pts:
            pts.sort()
            style = dict(styles[labels[r.run_id]])
            failed = r.status != "finished"
            if failed:
                style["linestyle"] = ":"
            ax.plot(*zip(*pts, strict=True), marker="x" if failed else ".", markersize=4,
                    label=labels[r.run_id], **style)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return f"no run logged both {VAL_LOSS} and {name}"
    if target is not None and target > 0:
        ax.axhline(target, color="grey", linestyle=":", label=f"target {target:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel(XLABELS.get(x_metric, x_metric))
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    return fig


def _against_p(ax, rows: Sequence[dict], col: str, labels: Mapping[str, str]) -> set[int]:
    """Mean of ``col`` per series and p with min-max error bars; returns the p values drawn.

    Series are shifted sideways by a few points each, so that equal values at one p stay visible.
    """
    from matplotlib.transforms import offset_copy

    styles = _styles(labels)
    by_series: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        v, p = row.get(col), row.get("p")
        if isinstance(v, int | float) and isinstance(p, int):
            by_series.setdefault(labels[row["run_id"]], {}).setdefault(p, []).append(float(v))
    drawn: set[int] = set()
    for i, (label, by_p) in enumerate(by_series.items()):
        ps = sorted(by_p)
        spreads = [spread(by_p[p]) for p in ps]
        means = [s.mean for s in spreads]
        shift = offset_copy(ax.transData, fig=ax.figure, x=4.0 * (i - (len(by_series) - 1) / 2), units="points")
        ax.errorbar(ps, means, yerr=[[m - s.low for m, s in zip(means, spreads, strict=True)],
                                     [s.high - m for m, s in zip(means, spreads, strict=True)]],
                    marker="o", capsize=3, label=label, transform=shift, **styles[label])
        # the shifted artists do not widen the axes' limits themselves
        ax.update_datalim([(p, y) for p, sp in zip(ps, spreads, strict=True) for y in (sp.low, sp.high)])
        drawn.update(ps)
    return drawn


def scaling_figure(rows: Sequence[dict], kind: str, labels: Mapping[str, str], baseline_parts: int = 1):
    """Speedup or efficiency (``kind``) against p per series, model and wall time side by side.

    The ideal is dashed: speedup = p / p_baseline, efficiency = 1.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    all_p: set[int] = set()
    for ax, time_metric in zip(axes, ("model_time", "wall_time"), strict=True):
        all_p |= _against_p(ax, rows, f"{kind}_{time_metric}", labels)
        ax.set_title(time_metric.replace("_", " "))
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
    if not all_p:
        plt.close(fig)
        return f"no {kind} to draw (no baseline, or no run reached the target)"
    ps = sorted(all_p | {baseline_parts})
    for ax in axes:
        ideal = [p / baseline_parts for p in ps] if kind == "speedup" else [1.0] * len(ps)
        ax.plot(ps, ideal, linestyle="--", color="black", linewidth=1, label="ideal")
        p_axis(ax, ps)
        _legend(ax)
    return fig


def comm_bytes_figure(rows: Sequence[dict], labels: Mapping[str, str]):
    """Bytes communicated against p per series: up to the target (runs that reached it) and in the
    whole run (``cost/comm_bytes`` at the end)."""
    from matplotlib.ticker import EngFormatter

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    all_p: set[int] = set()
    for ax, col, title in zip(axes, ("comm_bytes_to_target", "comm_bytes"), ("to the target", "whole run"),
                              strict=True):
        drawn = _against_p(ax, rows, col, labels)
        all_p |= drawn
        ax.set_title(title)
        ax.set_ylabel("bytes communicated")
        ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
        ax.grid(alpha=0.3)
        if drawn:
            p_axis(ax, drawn)
            _legend(ax)
    if not all_p:
        plt.close(fig)
        return f"no run logged {COSTS['comm_bytes']}"
    return fig


def rank_times(record: RunRecord) -> dict[int, dict[str, float]]:
    """``{rank: {"compute": s, "communicate": s, "wait": s}}`` from the run's latest per-rank metrics."""
    out: dict[int, dict[str, float]] = {}
    for name, value in record.metrics.items():
        m = RANK_METRIC.match(name)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = float(value)
    return out


def rank_times_figure(records: Sequence[RunRecord], labels: Mapping[str, str]):
    """Stacked bars of compute / communicate / wait seconds for every rank of every distributed run."""
    bars = [(f"{labels[r.run_id]} seed {seed(r)}\nrank {k}", t)
            for r in records for k, t in sorted(rank_times(r).items())]
    if not bars:
        return "no run logged per-rank times (cost/rank<r>/compute)"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(bars) + 2), 4.5))
    bottom = [0.0] * len(bars)
    x = range(len(bars))
    for phase in PHASES:
        heights = [t.get(phase, 0.0) for _, t in bars]
        ax.bar(x, heights, bottom=bottom, label=phase)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(list(x), [name for name, _ in bars], fontsize="x-small", rotation=90)
    ax.set_ylabel("seconds (cumulative)")
    _legend(ax)
    ax.grid(alpha=0.3, axis="y")
    return fig
