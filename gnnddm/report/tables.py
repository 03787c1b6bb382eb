"""The comparison table: one row per run, written as CSV and Markdown.

Cells hold numbers, or one of two words: ``not reached`` (the run never got to the target, so it has
no time-to-target and no speedup) and ``n/a`` (the quantity does not apply or a metric is missing; the
``note`` column says which). Failed runs are rows like any other, with status ``failed`` and their error
in the note. Each run is compared with the baseline run of its own seed (:class:`~gnnddm.report.records.
Baselines`), named in the ``baseline_id`` column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from gnnddm.report.metrics import ACCOUNTING, Spread, ToTarget, efficiency, speedup, to_target
from gnnddm.report.records import (
    COSTS,
    ITERATIONS,
    VAL_LOSS,
    Baselines,
    RunRecord,
    get_field,
    num_parts,
    seed,
    split_metric,
)

NOT_REACHED = "not reached"
NA = "n/a"

TO_TARGET = {  # column -> cost counter at the target step
    "rounds_to_target": "rounds",
    "epochs_to_target": "grad_evals",
    "wall_time_to_target": "wall_time",
    "model_time_to_target": "model_time",
    "comm_bytes_to_target": "comm_bytes",
}
SCALING = {  # column -> (kind, time counter)
    "speedup_model_time": ("speedup", "model_time"),
    "speedup_wall_time": ("speedup", "wall_time"),
    "efficiency_model_time": ("efficiency", "model_time"),
    "efficiency_wall_time": ("efficiency", "wall_time"),
}
IDENTITY = ("run_name", "run_id", "seed", "status", "algorithm", "p", "overlap", "partitioner", "model",
            "backend", "ranks", "iterations")
FINAL = ("final_val_loss", "comm_bytes")  # values at the end of the run


def rmse_columns(records: Sequence[RunRecord]) -> list[str]:
    """``val/rmse/<var>`` columns for every variable any run reports."""
    prefix = split_metric("rmse", "val")
    return sorted({k for r in records for k in r.metrics if k.startswith(prefix)})


def columns(records: Sequence[RunRecord]) -> list[str]:
    return [*IDENTITY, *TO_TARGET, *SCALING, *FINAL, *rmse_columns(records), "baseline_id", "note"]


def iterations(record: RunRecord) -> int | None:
    """Outer iterations done: ``cost/iterations``, else the last step of any history."""
    if ITERATIONS in record.metrics:
        return int(record.metrics[ITERATIONS])
    steps = [s for steps, _ in record.histories.values() for s in steps]
    return int(max(steps)) if steps else None


def run_to_target(record: RunRecord, target: float | None) -> ToTarget | None:
    """The run's :class:`ToTarget`, or None if there is no target or the run logged no val/loss."""
    if target is None or VAL_LOSS not in record.histories:
        return None
    costs = {short: record.histories[name] for short, name in COSTS.items() if name in record.histories}
    return to_target(record.histories[VAL_LOSS], costs, target)


def build_rows(records: Sequence[RunRecord], target: float | None, baselines: Baselines | None) -> list[dict]:
    """One row per run (same order), values as numbers or the words ``not reached`` / ``n/a``.

    Speedup and efficiency of a run are against ``baselines.of(run)``, the baseline of its seed; a run
    whose seed has no baseline is compared with the overall one, and its note says so.
    """
    baselines = baselines or Baselines(None)
    rmse = rmse_columns(records)
    reached: dict[str, ToTarget | None] = {}
    rows = []
    for r in records:
        notes = []
        base = baselines.of(r)
        if base is not None and r.run_id == base.run_id:
            notes.append("baseline")
        elif base is not None and seed(base) != seed(r):
            own = f"seed {seed(r)}" if seed(r) is not None else "runs without a seed"
            notes.append(f"no baseline of {own}: compared with {base.name} (seed {seed(base)})")
        if r.status != "finished":
            notes.append(f"{r.status}: {r.error}" if r.error else r.status)
        p = num_parts(r)
        row = {
            "run_name": r.name, "run_id": r.run_id, "seed": _number(seed(r)), "status": r.status,
            "algorithm": get_field(r, "algorithm") or NA, "p": _or_na(p), "overlap": _number(get_field(r, "overlap")),
            "partitioner": get_field(r, "partitioner") or NA, "model": get_field(r, "model") or NA,
            "backend": get_field(r, "backend") or NA, "ranks": _number(get_field(r, "ranks")),
            "iterations": _or_na(iterations(r)),
        }
        tt = run_to_target(r, target)
        if VAL_LOSS not in r.histories:
            notes.append(f"missing metric {VAL_LOSS}")
        for col, metric in TO_TARGET.items():
            if tt is None:
                row[col] = NA
            elif not tt.reached:
                row[col] = NOT_REACHED
            else:
                row[col] = _or_na(getattr(tt, metric))
        missing = [COSTS[m] for m in ACCOUNTING if tt is not None and tt.reached and getattr(tt, m) is None]
        if missing:
            notes.append("missing metric " + ", ".join(missing))
        if base is not None and base.run_id not in reached:
            reached[base.run_id] = run_to_target(base, target)
        base_tt = reached.get(base.run_id) if base is not None else None
        if base_tt is not None and not base_tt.reached and tt is not None and tt.reached:
            notes.append("its baseline did not reach the target")
        base_p = (num_parts(base) or 1) if base is not None else 1
        for col, (kind, metric) in SCALING.items():
            if tt is not None and not tt.reached:
                row[col] = NOT_REACHED
                continue
            s = speedup(getattr(base_tt, metric) if base_tt else None, getattr(tt, metric) if tt else None)
            row[col] = _or_na(s if kind == "speedup" else efficiency(s, p, base_p))
        row["final_val_loss"] = _or_na(r.metrics.get(VAL_LOSS))
        row["comm_bytes"] = _or_na(r.metrics.get(COSTS["comm_bytes"]))
        for col in rmse:
            row[col] = _or_na(r.metrics.get(col))
        row["baseline_id"] = base.run_id if base is not None else NA
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def sort_records(records: Sequence[RunRecord], keys: Sequence[str]) -> list[RunRecord]:
    """Runs ordered by the group-by keys (numbers numerically, missing last), then seed, then start time."""

    def key(r: RunRecord):
        parts = []
        for k in [*keys, "seed"]:
            v = get_field(r, k)
            num = _float(v)
            parts.append((v is None, num is None, num if num is not None else 0.0, v or ""))
        return (*parts, r.start_time)

    return sorted(records, key=key)


# ------------------------------------------------------------------------------------------ writing
def write_csv(rows: Sequence[dict], cols: Sequence[str], path: Path) -> Path:
    """One CSV line per row; a :class:`Spread` cell becomes four columns: ``<col>`` (the mean),
    ``<col>_min``, ``<col>_max`` and ``<col>_n``."""
    spread_cols = {c for c in cols for row in rows if isinstance(row.get(c), Spread)}
    header = [h for c in cols for h in ((c, f"{c}_min", f"{c}_max", f"{c}_n") if c in spread_cols else (c,))]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            cells = []
            for c in cols:
                v = row.get(c, NA)
                if c not in spread_cols:
                    cells.append(_csv_cell(v))
                elif isinstance(v, Spread):
                    cells += [_csv_cell(v.mean), _csv_cell(v.low), _csv_cell(v.high), str(v.n)]
                else:
                    cells += [_csv_cell(v), NA, NA, "0"]
            w.writerow(cells)
    return path


def markdown_table(rows: Sequence[dict], cols: Sequence[str], n_col: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; run ids shortened to 8 characters, numbers to 4 digits.

    A :class:`Spread` reads ``mean [min, max]`` (the mean alone when all values are equal), followed by
    ``(n=k)`` when it covers fewer runs than the row's ``n_col`` cell.
    """
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c, NA)
            if c in ("run_id", "baseline_id") and isinstance(v, str) and v != NA:
                v = f"`{v[:8]}`"
            elif isinstance(v, Spread):
                v = _md_spread(v, row.get(n_col) if n_col else None)
            cells.append(_md_cell(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md_spread(s: Spread, n) -> str:
    text = f"{s.mean:.4g}" if s.low == s.high else f"{s.mean:.4g} [{s.low:.4g}, {s.high:.4g}]"
    return text + (f" (n={s.n})" if isinstance(n, int) and s.n < n else "")


def _md_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _csv_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def _or_na(v):
    return NA if v is None else v


def _float(v) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def _number(v):
    f = _float(v)
    if f is None:
        return NA if v is None else v
    return int(f) if f.is_integer() else f
