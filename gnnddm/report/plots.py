"""Report figures: convergence against each cost measure, scaling against p, per-rank time split.

Every function writes one PNG and returns its path, or returns a string saying why nothing was drawn
(e.g. no run logged per-rank times), so the report can list what is missing instead of failing.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from gnnddm.report.metrics import value_at_step
from gnnddm.report.records import RunRecord, get_field, num_parts

XLABELS = {
    "rounds": "communication rounds",
    "grad_evals": "epochs (gradient evaluations / N)",
    "wall_time": "wall time (s)",
    "model_time": "modelled parallel time (s)",
}
RANK_METRIC = re.compile(r"^time/(compute|communicate|wait)/rank(\d+)$")
PHASES = ("compute", "communicate", "wait")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def run_labels(records: Sequence[RunRecord]) -> dict[str, str]:
    """``"asm p=4"`` per run id; runs sharing a label get their run name appended."""
    base = {r.run_id: f"{get_field(r, 'algorithm') or '?'} p={num_parts(r) or '?'}" for r in records}
    counts: dict[str, int] = {}
    for label in base.values():
        counts[label] = counts.get(label, 0) + 1
    return {r.run_id: base[r.run_id] + (f" ({r.name})" if counts[base[r.run_id]] > 1 else "") for r in records}


def plot_val_loss(records: Sequence[RunRecord], x_metric: str, target: float | None, path: Path) -> Path | str:
    """val_loss (log scale) against the cumulative ``x_metric`` at each evaluation; one line per run.

    The x value of an evaluation at step s is ``x_metric`` at s (see :func:`value_at_step`).
    """
    labels = run_labels(records)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # one colour per algorithm, one line style per p, so that sweeps of many runs stay readable
    algos = sorted({str(get_field(r, "algorithm")) for r in records})
    ps = sorted({str(num_parts(r)) for r in records})
    colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(algos)}
    styles = dict(zip(ps, ["-", "--", "-.", (0, (5, 1)), (0, (1, 1))] * 4, strict=False))
    drawn = 0
    for r in records:
        if "val_loss" not in r.histories or x_metric not in r.histories:
            continue
        pts = []
        for step, loss in zip(*r.histories["val_loss"], strict=True):
            x = value_at_step(*r.histories[x_metric], step)
            if x is not None and loss > 0:
                pts.append((x, loss))
        if pts:
            pts.sort()
            failed = r.status != "finished"
            ax.plot(*zip(*pts, strict=True), marker="x" if failed else ".", markersize=4, label=labels[r.run_id],
                    color=colours[str(get_field(r, "algorithm"))],
                    linestyle=":" if failed else styles[str(num_parts(r))])
            drawn += 1
    if not drawn:
        plt.close(fig)
        return f"no run logged both val_loss and {x_metric}"
    if target is not None and target > 0:
        ax.axhline(target, color="grey", linestyle=":", label=f"target {target:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel(XLABELS.get(x_metric, x_metric))
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_scaling(rows: Sequence[dict], kind: str, path: Path) -> Path | str:
    """Speedup or efficiency (``kind``) against p, one line per algorithm, model and wall time side by side.

    Runs with equal algorithm and p are averaged. The ideal is dashed: speedup = p, efficiency = 1.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    drawn = 0
    all_p: set[int] = set()
    for ax, time_metric in zip(axes, ("model_time", "wall_time"), strict=True):
        col = f"{kind}_{time_metric}"
        by_algo: dict[str, dict[int, list[float]]] = {}
        for row in rows:
            if isinstance(row.get(col), int | float) and isinstance(row["p"], int):
                by_algo.setdefault(str(row["algorithm"]), {}).setdefault(row["p"], []).append(row[col])
        for algo, by_p in sorted(by_algo.items()):
            ps = sorted(by_p)
            ax.plot(ps, [sum(by_p[p]) / len(by_p[p]) for p in ps], marker="o", label=algo)
            all_p.update(ps)
            drawn += 1
        ax.set_title(time_metric.replace("_", " "))
        ax.set_xlabel("subdomains p")
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return f"no {kind} to draw (no baseline, or no run reached the target)"
    ps = sorted(all_p | {1})
    for ax in axes:
        ideal = ps if kind == "speedup" else [1.0] * len(ps)
        ax.plot(ps, ideal, linestyle="--", color="black", linewidth=1, label="ideal")
        ax.legend(fontsize="small")
    return _save(fig, path)


def rank_times(record: RunRecord) -> dict[int, dict[str, float]]:
    """``{rank: {"compute": s, "communicate": s, "wait": s}}`` from the run's latest per-rank metrics."""
    out: dict[int, dict[str, float]] = {}
    for name, value in record.metrics.items():
        m = RANK_METRIC.match(name)
        if m:
            out.setdefault(int(m.group(2)), {})[m.group(1)] = float(value)
    return out


def plot_rank_times(records: Sequence[RunRecord], path: Path) -> Path | str:
    """Stacked bars of compute / communicate / wait seconds for every rank of every distributed run."""
    labels = run_labels(records)
    bars = [(f"{labels[r.run_id]}\nrank {k}", t) for r in records for k, t in sorted(rank_times(r).items())]
    if not bars:
        return "no run logged per-rank times (time/compute/rank<r>)"
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
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)
