"""The comparison table: one row per run, written as CSV and Markdown.

Cells hold numbers, or one of two words: ``not reached`` (the run never got to the target, so it has
no time-to-target and no speedup) and ``n/a`` (the quantity does not apply or a metric is missing; the
``note`` column says which). Failed runs are rows like any other, with status ``failed`` and their error
in the note.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from gnnddm.report.metrics import ACCOUNTING, ToTarget, efficiency, speedup, to_target
from gnnddm.report.records import RunRecord, get_field, num_parts

NOT_REACHED = "not reached"
NA = "n/a"

TO_TARGET = {  # column -> accounting metric at the target step
    "rounds_to_target": "rounds",
    "epochs_to_target": "grad_evals",
    "wall_time_to_target": "wall_time",
    "model_time_to_target": "model_time",
}
SCALING = {  # column -> (kind, time metric)
    "speedup_model_time": ("speedup", "model_time"),
    "speedup_wall_time": ("speedup", "wall_time"),
    "efficiency_model_time": ("efficiency", "model_time"),
    "efficiency_wall_time": ("efficiency", "wall_time"),
}
IDENTITY = ("run_name", "run_id", "status", "algorithm", "p", "partitioner", "overlap", "model", "iterations")


def rmse_columns(records: Sequence[RunRecord]) -> list[str]:
    """``val_rmse/<var>`` columns for every variable any run reports."""
    return sorted({k for r in records for k in r.metrics if k.startswith("val_rmse/")})


def columns(records: Sequence[RunRecord]) -> list[str]:
    return [*IDENTITY, *TO_TARGET, *SCALING, "final_val_loss", *rmse_columns(records), "note"]


def iterations(record: RunRecord) -> int | None:
    """Outer iterations done: ``total/iterations``, else the last logged ``iteration`` or step."""
    for key in ("total/iterations", "iteration"):
        if key in record.metrics:
            return int(record.metrics[key])
    steps = [s for steps, _ in record.histories.values() for s in steps]
    return int(max(steps)) if steps else None


def run_to_target(record: RunRecord, target: float | None) -> ToTarget | None:
    """The run's :class:`ToTarget`, or None if there is no target or the run logged no val_loss."""
    if target is None or "val_loss" not in record.histories:
        return None
    return to_target(dict(record.histories), target)


def build_rows(records: Sequence[RunRecord], target: float | None, baseline: RunRecord | None) -> list[dict]:
    """One row per run (same order), values as numbers or the words ``not reached`` / ``n/a``."""
    base = run_to_target(baseline, target) if baseline is not None else None
    rmse = rmse_columns(records)
    rows = []
    for r in records:
        notes = []
        if baseline is not None and r.run_id == baseline.run_id:
            notes.append("baseline")
        if r.status != "finished":
            notes.append(f"{r.status}: {r.error}" if r.error else r.status)
        p = num_parts(r)
        row = {
            "run_name": r.name, "run_id": r.run_id, "status": r.status,
            "algorithm": get_field(r, "algorithm") or NA, "p": p if p is not None else NA,
            "partitioner": get_field(r, "partitioner") or NA, "overlap": _number(get_field(r, "overlap")),
            "model": get_field(r, "model") or NA, "iterations": _or_na(iterations(r)),
        }
        tt = run_to_target(r, target)
        if "val_loss" not in r.histories:
            notes.append("missing metric val_loss")
        for col, metric in TO_TARGET.items():
            if tt is None:
                row[col] = NA
            elif not tt.reached:
                row[col] = NOT_REACHED
            else:
                row[col] = _or_na(getattr(tt, metric))
        missing = [m for m in ACCOUNTING if tt is not None and tt.reached and getattr(tt, m) is None]
        if missing:
            notes.append("missing metric " + ", ".join(missing))
        for col, (kind, metric) in SCALING.items():
            if tt is not None and not tt.reached:
                row[col] = NOT_REACHED
                continue
            s = speedup(getattr(base, metric) if base else None, getattr(tt, metric) if tt else None)
            row[col] = _or_na(s if kind == "speedup" else efficiency(s, p))
        row["final_val_loss"] = _or_na(r.metrics.get("val_loss"))
        for col in rmse:
            row[col] = _or_na(r.metrics.get(col))
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def sort_records(records: Sequence[RunRecord], keys: Sequence[str]) -> list[RunRecord]:
    """Runs ordered by the group-by keys (numbers numerically, missing last), then by start time."""

    def key(r: RunRecord):
        parts = []
        for k in keys:
            v = get_field(r, k)
            num = _float(v)
            parts.append((v is None, num is None, num if num is not None else 0.0, v or ""))
        return (*parts, r.start_time)

    return sorted(records, key=key)


def group_rows(records: Sequence[RunRecord], rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """Per group of equal ``keys``: run counts and the mean of the numeric to-target and scaling cells."""
    groups: dict[tuple, list[tuple[RunRecord, dict]]] = {}
    for r, row in zip(records, rows, strict=True):
        groups.setdefault(tuple(get_field(r, k) or NA for k in keys), []).append((r, row))
    out = []
    for values, members in groups.items():
        g = dict(zip(keys, values, strict=True))
        g["runs"] = len(members)
        g["failed"] = sum(r.status == "failed" for r, _ in members)
        g["reached"] = sum(isinstance(row["rounds_to_target"], int | float) for _, row in members)
        for col in ("rounds_to_target", "model_time_to_target", "wall_time_to_target",
                    "speedup_model_time", "efficiency_model_time"):
            nums = [row[col] for _, row in members if isinstance(row[col], int | float)]
            g[f"mean_{col}"] = sum(nums) / len(nums) if nums else NA
        out.append(g)
    return out


# ------------------------------------------------------------------------------------------ writing
def write_csv(rows: Sequence[dict], cols: Sequence[str], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for row in rows:
            w.writerow([_csv_cell(row.get(c, NA)) for c in cols])
    return path


def markdown_table(rows: Sequence[dict], cols: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table; run ids shortened to 8 characters, numbers to 4 digits."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c, NA)
            if c == "run_id" and isinstance(v, str):
                v = f"`{v[:8]}`"
            cells.append(_md_cell(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
