"""``build_report``: select runs, fix the target and baseline, write tables and plots, attach them.

Target, in order of precedence: ``target_val_loss``; the final val_loss of the ``target_from`` run
times ``1 + target_tol``; the ``trainer.target_val_loss`` all runs were trained with (if they agree);
the baseline's final val_loss times ``1 + target_tol``. Baseline: the ``baseline`` spec, else the
first run with ``algorithm=global``, else none (then no speedups).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gnnddm.errors import GnnddmError
from gnnddm.report import plots, tables
from gnnddm.report.records import RunRecord, check_keys, get_field, matches, parse_spec
from gnnddm.report.store import RunStore

CONVENTION = (
    "A run reaches the target at its first evaluation with val_loss <= target; rounds, epochs "
    "(grad_evals), wall and model time to target are the cumulative metrics at that iteration. "
    "speedup = baseline time-to-target / run time-to-target; efficiency = speedup / p."
)
PLOTS = {f"val_loss_vs_{m}.png": m for m in plots.XLABELS}
SCALING_PLOTS = {"speedup.png": "speedup", "efficiency.png": "efficiency"}
RANK_PLOT = "rank_times.png"
MAPS_DIR = "partition_maps"


@dataclass(frozen=True)
class Target:
    value: float | None
    source: str


def build_report(
    tracking_uri: str = "sqlite:///mlflow.db",
    *,
    experiment: str | None = None,
    parent: str | None = None,
    runs: Sequence[str] | None = None,
    baseline: str | None = None,
    target_val_loss: float | None = None,
    target_from: str | None = None,
    target_tol: float = 0.02,
    group_by: Sequence[str] = ("algorithm", "num_parts"),
    output: str | Path = "report",
    log: bool = True,
) -> dict:
    """Write ``comparison.md``, ``comparison.csv`` and the PNG plots into ``output``.

    Exactly one of ``experiment``, ``parent`` (a sweep's parent run id) and ``runs`` (run ids) selects
    the runs. Specs (``baseline``, ``target_from``) are a run id or ``key=value[,key=value]``
    (first matching run, oldest first), e.g. ``algorithm=global``.

    Returns
    -------
    dict
        ``output``, ``files`` (paths written), ``rows`` (the table), ``target``, ``target_source``,
        ``baseline`` (run id or None), ``logged_to`` (run id the report was attached to, or None).
    """
    if sum(x is not None for x in (experiment, parent, runs)) != 1:
        raise GnnddmError("choose the runs with exactly one of --experiment, --parent, --runs")
    if target_tol < 0:
        raise GnnddmError(f"--target-tol {target_tol:g}: must be >= 0")
    store = RunStore(tracking_uri)
    if experiment is not None:
        records, source = store.experiment_runs(experiment), f"experiment `{experiment}`"
    elif parent is not None:
        records, source = store.child_runs(parent), f"sweep `{store.run_name(parent)}` (parent run `{parent}`)"
    else:
        records, source = store.runs_by_id(list(runs)), f"{len(runs)} runs given by id"
    group_by = list(group_by)
    check_keys(group_by, records, "--group-by")
    if not any("val_loss" in r.histories for r in records):
        raise GnnddmError(
            f"none of the {len(records)} runs logged the metric val_loss "
            f"({', '.join(r.name for r in records[:10])}); nothing to compare (evaluations are logged "
            "every trainer.eval_every iterations)"
        )

    base = _resolve(baseline, records, store, "--baseline") if baseline else _default_baseline(records)
    selected_parents = {r.parent_id for r in records}
    if base is not None and base.run_id not in {r.run_id for r in records}:
        records.append(base)  # a baseline from outside the selection is shown, but does not pick the parent
    if baseline and "val_loss" not in base.histories:
        raise GnnddmError(_no_val_loss(base, "--baseline"))
    target = _target(records, base, store, target_val_loss, target_from, target_tol)

    records = tables.sort_records(records, group_by)
    rows = tables.build_rows(records, target.value, base)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    written = [tables.write_csv(rows, tables.columns(records), out / "comparison.csv")]
    figures: dict[str, Path | str] = {}
    for name, metric in PLOTS.items():
        figures[name] = plots.plot_val_loss(records, metric, target.value, out / name)
    for name, kind in SCALING_PLOTS.items():
        figures[name] = plots.plot_scaling(rows, kind, out / name)
    figures[RANK_PLOT] = plots.plot_rank_times(records, out / RANK_PLOT)
    maps = {}
    for r in records:
        dest = store.copy_artifact(r, "partition_map.png", out / MAPS_DIR / f"{_safe(r.name)}-{r.short_id}.png")
        if dest is not None:
            maps[r.run_id] = dest
    written += [p for p in figures.values() if isinstance(p, Path)] + list(maps.values())
    md = _markdown(records, rows, group_by, source, target, base, figures, maps, out)
    (out / "comparison.md").write_text(md)
    written.insert(0, out / "comparison.md")

    logged_to = parent or (selected_parents.pop() if len(selected_parents) == 1 else None)
    if log and logged_to is not None:
        store.attach_report(logged_to, written, out)
    else:
        logged_to = None
    return {"output": out, "files": written, "rows": rows, "target": target.value,
            "target_source": target.source, "baseline": base.run_id if base else None, "logged_to": logged_to}


# ------------------------------------------------------------------------------------------ helpers
def _resolve(spec: str, records: list[RunRecord], store: RunStore, option: str) -> RunRecord:
    parsed = parse_spec(spec)
    if isinstance(parsed, str):
        for r in records:
            if r.run_id == parsed:
                return r
        return store.runs_by_id([parsed], option)[0]
    check_keys(list(parsed), records, option)
    for r in sorted(records, key=lambda r: r.start_time):
        if matches(r, parsed):
            return r
    present = {k: sorted({get_field(r, k) or "none" for r in records}) for k in parsed}
    hint = "; ".join(f"{k} values present: {', '.join(v)}" for k, v in present.items())
    raise GnnddmError(f"{option} {spec}: matches none of the {len(records)} selected runs ({hint})")


def _default_baseline(records: Sequence[RunRecord]) -> RunRecord | None:
    for r in sorted(records, key=lambda r: r.start_time):
        if get_field(r, "algorithm") == "global" and "val_loss" in r.histories:
            return r
    return None


def _no_val_loss(r: RunRecord, option: str) -> str:
    return f"{option}: run {r.name!r} ({r.run_id}) logged no val_loss metric; choose a run that evaluated"


def _target(records, base, store, value, spec, tol) -> Target:
    if value is not None:
        return Target(float(value), "--target-val-loss")
    if spec is not None:
        ref = _resolve(spec, records, store, "--target-from")
        if "val_loss" not in ref.metrics:
            raise GnnddmError(_no_val_loss(ref, "--target-from"))
        return Target(ref.metrics["val_loss"] * (1 + tol), f"final val_loss of `{ref.name}` x (1 + {tol:g})")
    configured = {r.params.get("trainer.target_val_loss") for r in records} - {None, "None", "null", ""}
    if len(configured) == 1:
        return Target(float(configured.pop()), "trainer.target_val_loss of the runs")
    if base is not None and "val_loss" in base.metrics:
        return Target(base.metrics["val_loss"] * (1 + tol), f"final val_loss of baseline `{base.name}` x (1 + {tol:g})")
    return Target(None, "none (give --target-val-loss or --target-from)")


def _clear(out: Path) -> None:
    """Remove the files an earlier report left, so no stale plot survives."""
    for name in ("comparison.md", "comparison.csv", *PLOTS, *SCALING_PLOTS, RANK_PLOT):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / MAPS_DIR, ignore_errors=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _markdown(records, rows, group_by, source, target, base, figures, maps, out: Path) -> str:
    failed = [r for r in records if r.status == "failed"]
    lines = [f"# Comparison of {len(records)} runs", "", f"- runs: {source}"]
    if target.value is None:
        lines.append(f"- target: {target.source}")
    else:
        lines.append(f"- target: val_loss <= {target.value:.6g} ({target.source})")
    if base is None:
        lines.append("- baseline: none (no run with algorithm=global; give --baseline), so no speedups")
    else:
        row = next(row for row in rows if row["run_id"] == base.run_id)
        missed = row["rounds_to_target"] == tables.NOT_REACHED
        lines.append(f"- baseline: `{base.name}` (`{base.short_id}`, algorithm {row['algorithm']}, p={row['p']})"
                     + ("; it did not reach the target, so no speedups" if missed else ""))
    lines.append(f"- failed runs: {len(failed)}" + (f" ({', '.join(r.name for r in failed)})" if failed else ""))
    lines += ["", f"Convention: {CONVENTION}", "", "## Runs", "",
              tables.markdown_table(rows, tables.columns(records)), ""]
    groups = tables.group_rows(records, rows, group_by)
    lines += [f"## Groups by {', '.join(group_by)}", "",
              tables.markdown_table(groups, list(groups[0]) if groups else group_by), "", "## Plots", ""]
    for name, result in figures.items():
        if isinstance(result, Path):
            lines.append(f"![{name[:-4]}]({result.relative_to(out).as_posix()})")
        else:
            lines.append(f"- {name}: not drawn, {result}")
    if maps:
        lines += ["", "## Partition maps", ""]
        by_id = {r.run_id: r for r in records}
        for run_id, path in maps.items():
            lines.append(f"![{by_id[run_id].name}]({path.relative_to(out).as_posix()})")
    return "\n".join(lines) + "\n"
