"""``build_report``: select runs, fix the target and the baselines, write tables and plots, attach them.

Target, in order of precedence: ``target_val_loss``; the final ``val/loss`` of the ``target_from`` run
times ``1 + target_tol``; the ``trainer.target_val_loss`` all runs were trained with (if they agree);
the largest final ``val/loss`` of the seeds' baselines times ``1 + target_tol`` (so that every seed's
baseline reaches it; with one seed, the baseline's). Baseline spec: ``baseline``, else
``algorithm=global``; the overall baseline is the first (oldest) run it matches, and every seed gets its
own, the first run of that seed it matches (:func:`~gnnddm.report.records.pair_by_seed`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gnnddm.errors import GnnddmError
from gnnddm.report import forecast_plots, groups, plots, tables
from gnnddm.report.records import (
    VAL_LOSS,
    Baselines,
    RunRecord,
    check_keys,
    default_group_keys,
    get_field,
    matches,
    num_parts,
    pair_by_seed,
    parse_spec,
    seed,
)
from gnnddm.report.store import RunStore
from gnnddm.schema.root import TrackingConfig

CONVENTION = (
    f"A run reaches the target at its first evaluation with {VAL_LOSS} <= target; rounds, epochs "
    "(grad_evals), wall time, model time and bytes to target are the cumulative cost/ counters at that "
    "iteration. speedup = baseline time-to-target / run time-to-target, against the baseline run of the "
    "same seed; efficiency = speedup x p_baseline / p."
)
SPREAD = ("Each cell is the mean over the group's runs (its seeds) with the range [min, max]; "
          "n = runs in the group, and (n=k) marks a cell that only k of them have (e.g. reached the target).")
DEFAULT_BASELINE = {"algorithm": "global"}
PLOTS = {f"val_loss_vs_{m}": m for m in plots.XLABELS}
SCALING_PLOTS = ("speedup", "efficiency")
COMM_PLOT = "comm_bytes"
RANK_PLOT = "rank_times"
LEAD_SCORES = ("rmse", "acc")  # scores against lead time of forecast runs (trainer.eval_leads)
TABLES = ("comparison.md", "comparison.csv", "groups.csv", "skill.csv")
MAPS_DIR = "partition_maps"


@dataclass(frozen=True)
class Target:
    value: float | None
    source: str


def build_report(
    tracking_uri: str = TrackingConfig.uri,
    *,
    experiment: str | None = None,
    parent: str | None = None,
    runs: Sequence[str] | None = None,
    baseline: str | None = None,
    target_val_loss: float | None = None,
    target_from: str | None = None,
    target_tol: float = 0.02,
    group_by: Sequence[str] | None = None,
    output: str | Path = "report",
    log: bool = True,
) -> dict:
    """Write ``comparison.md``, ``comparison.csv``, ``groups.csv``, ``skill.csv`` and the plots (PNG and
    PDF) into ``output``.

    Exactly one of ``experiment``, ``parent`` (a sweep's parent run id) and ``runs`` (run ids) selects
    the runs. Specs (``baseline``, ``target_from``) are a run id or ``key=value[,key=value]``
    (first matching run, oldest first), e.g. ``algorithm=global``. ``group_by`` None groups by every
    identity label that differs among the runs (never the seed).

    Returns
    -------
    dict
        ``output``, ``files`` (paths written), ``rows`` (the per-run table), ``groups``, ``skill``,
        ``group_by`` (the keys used), ``target``, ``target_source``, ``baseline`` (the overall baseline's
        run id or None), ``baselines`` (seed -> run id), ``logged_to`` (run id the report was attached
        to, or None).
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
    if group_by is not None:
        group_by = list(group_by)
        check_keys(group_by, records, "--group-by")
    if not any(VAL_LOSS in r.histories for r in records):
        raise GnnddmError(
            f"none of the {len(records)} runs logged the metric {VAL_LOSS} "
            f"({', '.join(r.name for r in records[:10])}); nothing to compare (evaluations are logged "
            "every trainer.eval_every iterations)"
        )

    baselines = _baselines(baseline, records, store)
    base = baselines.overall
    selected_parents = {r.parent_id for r in records}
    if base is not None and base.run_id not in {r.run_id for r in records}:
        records.append(base)  # a baseline from outside the selection is shown, but does not pick the parent
    target = _target(records, baselines, store, target_val_loss, target_from, target_tol)
    group_by = default_group_keys(records) if group_by is None else group_by

    records = tables.sort_records(records, group_by)
    rows = tables.build_rows(records, target.value, baselines)
    group_table = groups.group_rows(records, rows, group_by)
    skill_table = groups.skill_rows(records, group_by)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    written = [
        tables.write_csv(rows, tables.columns(records), out / "comparison.csv"),
        tables.write_csv(group_table, groups.group_columns(group_by), out / "groups.csv"),
        tables.write_csv(skill_table, groups.skill_columns(group_by), out / "skill.csv"),
    ]
    figures = _figures(records, rows, group_by, target, base, out)
    maps = {}
    for r in records:
        dest = store.copy_artifact(r, "partition_map.png", out / MAPS_DIR / f"{_safe(r.name)}-{r.short_id}.png")
        if dest is not None:
            maps[r.run_id] = dest
    written += [p for paths in figures.values() if isinstance(paths, list) for p in paths] + list(maps.values())
    md = _markdown(records, rows, group_table, skill_table, group_by, source, target, baselines, figures,
                   maps, out)
    (out / "comparison.md").write_text(md)
    written.insert(0, out / "comparison.md")

    logged_to = parent or (selected_parents.pop() if len(selected_parents) == 1 else None)
    if log and logged_to is not None:
        store.attach_report(logged_to, written, out)
    else:
        logged_to = None
    return {"output": out, "files": written, "rows": rows, "groups": group_table, "skill": skill_table,
            "group_by": group_by, "target": target.value, "target_source": target.source,
            "baseline": base.run_id if base else None,
            "baselines": {s: r.run_id for s, r in baselines.by_seed.items()}, "logged_to": logged_to}


# ------------------------------------------------------------------------------------------ helpers
def _figures(records, rows, group_by, target: Target, base, out: Path) -> dict[str, list[Path] | str]:
    """Every plot, saved as PNG and PDF (or why it was not drawn), by file stem."""
    runs = plots.series_labels(records, group_by)
    series = plots.series_labels(records, [k for k in group_by if k not in ("num_parts", "p")] or ["algorithm"])
    made = {stem: plots.val_loss_figure(records, metric, target.value, runs) for stem, metric in PLOTS.items()}
    for kind in SCALING_PLOTS:
        made[kind] = plots.scaling_figure(rows, kind, series, (num_parts(base) or 1) if base else 1)
    made[COMM_PLOT] = plots.comm_bytes_figure(rows, series)
    made[RANK_PLOT] = plots.rank_times_figure(records, runs)
    for score in LEAD_SCORES:
        made[f"{score}_vs_lead"] = forecast_plots.runs_lead_figure(records, runs, score)
    return {stem: fig if isinstance(fig, str) else plots.save(fig, out / stem) for stem, fig in made.items()}


def _baselines(spec: str | None, records: list[RunRecord], store: RunStore) -> Baselines:
    if spec is None:
        overall = next((r for r in sorted(records, key=lambda r: r.start_time)
                        if matches(r, DEFAULT_BASELINE) and VAL_LOSS in r.histories), None)
        return pair_by_seed(records, overall, DEFAULT_BASELINE)
    overall = _resolve(spec, records, store, "--baseline")
    if VAL_LOSS not in overall.histories:
        raise GnnddmError(_no_val_loss(overall, "--baseline"))
    conditions = parse_spec(spec)
    return pair_by_seed(records, overall, conditions if isinstance(conditions, dict) else None)


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


def _no_val_loss(r: RunRecord, option: str) -> str:
    return f"{option}: run {r.name!r} ({r.run_id}) logged no {VAL_LOSS} metric; choose a run that evaluated"


def _target(records, baselines: Baselines, store, value, spec, tol) -> Target:
    if value is not None:
        return Target(float(value), "--target-val-loss")
    if spec is not None:
        ref = _resolve(spec, records, store, "--target-from")
        if VAL_LOSS not in ref.metrics:
            raise GnnddmError(_no_val_loss(ref, "--target-from"))
        return Target(ref.metrics[VAL_LOSS] * (1 + tol), f"final {VAL_LOSS} of `{ref.name}` x (1 + {tol:g})")
    configured = {r.params.get("trainer.target_val_loss") for r in records} - {None, "None", "null", ""}
    if len(configured) == 1:
        return Target(float(configured.pop()), "trainer.target_val_loss of the runs")
    finals = [r for r in baselines.by_seed.values() if VAL_LOSS in r.metrics]
    if finals:
        # the loosest of the seeds' baselines, so that each of them reaches the target
        worst = max(finals, key=lambda r: r.metrics[VAL_LOSS])
        if len(finals) == 1:
            source = f"final {VAL_LOSS} of baseline `{worst.name}`"
        else:
            source = f"largest final {VAL_LOSS} of the {len(finals)} seed baselines (`{worst.name}`)"
        return Target(worst.metrics[VAL_LOSS] * (1 + tol), f"{source} x (1 + {tol:g})")
    return Target(None, "none (give --target-val-loss or --target-from)")


def _clear(out: Path) -> None:
    """Remove the files an earlier report left, so no stale plot survives."""
    stems = [*PLOTS, *SCALING_PLOTS, COMM_PLOT, RANK_PLOT]
    for name in [*TABLES, *(f"{s}.{ext}" for s in stems for ext in ("png", "pdf"))]:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / MAPS_DIR, ignore_errors=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _markdown(records, rows, group_table, skill_table, group_by, source, target, baselines: Baselines,
              figures, maps, out: Path) -> str:
    failed = [r for r in records if r.status == "failed"]
    lines = [f"# Comparison of {len(records)} runs", "", f"- runs: {source}"]
    if target.value is None:
        lines.append(f"- target: {target.source}")
    else:
        lines.append(f"- target: {VAL_LOSS} <= {target.value:.6g} ({target.source})")
    lines += _baseline_lines(records, rows, baselines)
    lines.append(f"- failed runs: {len(failed)}" + (f" ({', '.join(r.name for r in failed)})" if failed else ""))
    lines += ["", f"Convention: {CONVENTION}", "", "## Runs", "",
              tables.markdown_table(rows, tables.columns(records)), ""]
    keys = ", ".join(group_by) or "nothing (the runs differ only by seed)"
    lines += [f"## Groups by {keys}", "", SPREAD, "",
              tables.markdown_table(group_table, groups.group_columns(group_by), n_col="n"), ""]
    lines += ["## Skill against the reference method", "",
              f"Root-mean-square error per variable (physical units) at the end of each run, of the model and of "
              f"the reference method ({groups.reference(records)}), and skill = 100 (1 - RMSE / reference "
              f"RMSE) in percent; {SPREAD[0].lower()}{SPREAD[1:]}", ""]
    if skill_table:
        lines.append(tables.markdown_table(skill_table, groups.skill_columns(group_by), n_col="n"))
    else:
        lines.append("No run logged an RMSE per variable.")
    lines += ["", "## Plots", ""]
    for stem, result in figures.items():
        if isinstance(result, list):
            png, pdf = result
            lines.append(f"![{stem}]({png.relative_to(out).as_posix()}) ([PDF]({pdf.relative_to(out).as_posix()}))")
        else:
            lines.append(f"- {stem}: not drawn, {result}")
    if maps:
        lines += ["", "## Partition maps", ""]
        by_id = {r.run_id: r for r in records}
        for run_id, path in maps.items():
            lines.append(f"![{by_id[run_id].name}]({path.relative_to(out).as_posix()})")
    return "\n".join(lines) + "\n"


def _baseline_lines(records, rows, baselines: Baselines) -> list[str]:
    base = baselines.overall
    if base is None:
        return ["- baseline: none (no run with algorithm=global; give --baseline), so no speedups"]
    row = next(row for row in rows if row["run_id"] == base.run_id)
    missed = row["rounds_to_target"] == tables.NOT_REACHED
    lines = [f"- baseline: `{base.name}` (`{base.short_id}`, algorithm {row['algorithm']}, p={row['p']})"
             + ("; it did not reach the target" if missed else "")]
    seeds = sorted({seed(r) for r in records}, key=lambda s: (s is None, len(s or ""), s or ""))  # 2 before 10
    if len(seeds) > 1 or seeds != [seed(base)]:
        paired = [f"seed {s}: `{baselines.by_seed[s].name}` (`{baselines.by_seed[s].short_id}`)"
                  for s in seeds if s in baselines.by_seed]
        alone = [str(s) for s in seeds if s not in baselines.by_seed]
        lines.append("- each run is compared with the baseline of its own seed: " + "; ".join(paired)
                     + (f"; seeds without one ({', '.join(alone)}) use the baseline above" if alone else ""))
    return lines
