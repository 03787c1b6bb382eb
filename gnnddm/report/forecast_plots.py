"""Pictures of forecasts: scores against lead time with the baselines, and maps of truth, forecast and error.

:func:`lead_figure` draws the RMSE and the ACC of one variable against lead time for the model, persistence
and climatology (a :func:`gnnddm.tasks.rollout.score_leads` result). :func:`map_figure` draws truth, forecast and
their difference for one variable: regular grids as images with latitude / longitude axes, meshes and
station networks as scatter plots of the node positions.
"""

from __future__ import annotations

import numpy as np

COLOURS = {"model": "C0", "persistence": "C1", "climatology": "C2"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lead_figure(result: dict, variable: str):
    """RMSE (left) and ACC (right) of ``variable`` against lead time (hours), model and baselines."""
    plt = pyplot()
    v = result["variables"].index(variable)
    units = result["units"][v]
    hours = result["lead_hours"]
    fig, (ax_rmse, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, table in result["scores"].items():
        ax_rmse.plot(hours, [row[v] for row in table["rmse"]], "o-", color=COLOURS.get(method), label=method)
        if method != "climatology":
            ax_acc.plot(hours, [row[v] for row in table["acc"]], "o-", color=COLOURS.get(method), label=method)
    ax_rmse.set(xlabel="lead time (h)", ylabel=f"RMSE ({units})", title=f"{variable}: RMSE")
    ax_acc.set(xlabel="lead time (h)", ylabel="ACC", title=f"{variable}: anomaly correlation")
    for ax in (ax_rmse, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['inits']} initial times; climatology {result['climatology']}", fontsize=9)
    fig.tight_layout()
    return fig


def map_figure(data, truth: np.ndarray, forecast: np.ndarray, variable: str, title: str):
    """Truth, forecast and forecast − truth of ``variable`` (physical values [N]) on ``data``'s nodes."""
    plt = pyplot()
    v = data.variables.index(variable)
    units = data.units[v]
    error = forecast - truth
    lo, hi = float(min(np.nanmin(truth), np.nanmin(forecast))), float(max(np.nanmax(truth), np.nanmax(forecast)))
    span = float(np.nanmax(np.abs(error))) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("truth", truth, "viridis", lo, hi), ("forecast", forecast, "viridis", lo, hi),
              ("forecast − truth", error, "RdBu_r", -span, span))
    for ax, (name, values, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        if data.kind == "grid" and data.grid_shape is not None:
            nlat, nlon = data.grid_shape
            lon_row = np.asarray(data.lon).reshape(nlat, nlon)[0]
            order = np.argsort(lon_row, kind="stable")
            lat = np.asarray(data.lat).reshape(nlat, nlon)[:, 0]
            image = values.reshape(nlat, nlon)[:, order]
            handle = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                               extent=(lon_row[order][0], lon_row[order][-1], lat[-1], lat[0]))
        else:
            handle = ax.scatter(data.lon, data.lat, c=values, s=max(2.0, 4000.0 / max(len(values), 1)), cmap=cmap,
                                vmin=vmin, vmax=vmax)
        ax.set(xlabel="longitude (°)", ylabel="latitude (°)", title=name)
        fig.colorbar(handle, ax=ax, label=units)
    fig.suptitle(f"{variable}: {title}", fontsize=10)
    fig.tight_layout()
    return fig


def lead_metrics_of(metrics: dict, score: str, method: str = "model") -> dict[str, dict[float, float]]:
    """``{variable: {lead hours: value}}`` of the lead-time metrics a run logged
    (``eval/<score>/<var>/<lead>h`` for the model, ``eval/<method>/<score>/<var>/<lead>h`` for a baseline)."""
    head = "eval/" if method == "model" else f"eval/{method}/"
    out: dict[str, dict[float, float]] = {}
    for name, value in metrics.items():
        if not name.startswith(head + score + "/"):
            continue
        var, lead = name[len(head) + len(score) + 1:].rsplit("/", 1)
        if "/" in var or not lead.endswith("h"):
            continue
        try:
            out.setdefault(var, {})[float(lead[:-1])] = float(value)
        except ValueError:
            continue
    return out


def runs_lead_figure(records, labels, score: str = "rmse"):
    """``score`` against lead time, one panel per variable: one line per run (coloured by its series), and
    the first run's persistence (and, for RMSE, climatology) dashed. A string when no run logged them."""
    per_run = [(r, lead_metrics_of(r.metrics, score)) for r in records]
    per_run = [(r, m) for r, m in per_run if m]
    if not per_run:
        return ("no run logged lead-time scores (eval/<score>/<var>/<lead>: train with trainer.eval_leads, or "
                "gnnddm evaluate leads=...)")
    plt = pyplot()
    variables = sorted({v for _, m in per_run for v in m})
    fig, axes = plt.subplots(1, len(variables), figsize=(4.2 * len(variables), 3.6), squeeze=False)
    first = per_run[0][0]
    series = sorted(set(labels[r.run_id] for r, _ in per_run))
    colour = {s: f"C{i % 10}" for i, s in enumerate(series)}
    for ax, var in zip(axes[0], variables, strict=True):
        shown = set()
        for r, m in per_run:
            if var not in m:
                continue
            label = labels[r.run_id]
            hours = sorted(m[var])
            ax.plot(hours, [m[var][h] for h in hours], "o-", color=colour[label], markersize=3,
                    label=None if label in shown else label)
            shown.add(label)
        baselines = ("persistence", "climatology") if score != "acc" else ("persistence",)
        for j, method in enumerate(baselines):
            base = lead_metrics_of(first.metrics, score, method).get(var)
            if base:
                hours = sorted(base)
                ax.plot(hours, [base[h] for h in hours], "--", color="0.3" if j == 0 else "0.6", label=method)
        ax.set(xlabel="lead time (h)", ylabel=score.upper(), title=var)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
