"""Groups of runs that differ only by seed: their mean, range and count, and their skill per variable.

A group is the runs with equal values of the group-by keys (by default every identity label that
differs among the runs, :func:`~gnnddm.report.records.default_group_keys`). Each numeric column of the
per-run table becomes a :class:`~gnnddm.report.metrics.Spread` over the group's runs that have a number
there: a group of three seeds of which two reached the target has ``n = 3`` and ``rounds_to_target``
over two runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from gnnddm.report.metrics import spread
from gnnddm.report.records import SPLITS, RunRecord, get_field, split_metric
from gnnddm.report.tables import FINAL, NA, SCALING, TO_TARGET
from gnnddm.training.scores import skill

#: per-run table columns summarised in the groups table
SUMMARISED = (*TO_TARGET, *SCALING, *FINAL)
#: skill table columns per split: baseline RMSE, model RMSE, skill in percent
SKILL_KINDS = {"baseline_rmse": "baseline_rmse", "rmse": "rmse", "skill_pct": "skill"}


def group_of(records: Sequence[RunRecord], keys: Sequence[str]) -> dict[tuple, list[int]]:
    """Group values -> indices of the runs (in order of first appearance), missing values read ``n/a``."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(tuple(get_field(r, k) or NA for k in keys), []).append(i)
    return groups


def group_rows(records: Sequence[RunRecord], rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """Per group: the keys, ``n`` (runs), ``failed``, ``reached`` (the target) and a Spread (or ``n/a``)
    of every column in :data:`SUMMARISED`."""
    out = []
    for values, members in group_of(records, keys).items():
        g = dict(zip(keys, values, strict=True))
        g["n"] = len(members)
        g["failed"] = sum(records[i].status == "failed" for i in members)
        g["reached"] = sum(_is_number(rows[i]["rounds_to_target"]) for i in members)
        for col in SUMMARISED:
            s = spread([rows[i][col] for i in members if _is_number(rows[i][col])])
            g[col] = s if s is not None else NA
        out.append(g)
    return out


def group_columns(keys: Sequence[str]) -> list[str]:
    return [*keys, "n", "failed", "reached", *SUMMARISED]


def variables(records: Sequence[RunRecord]) -> list[str]:
    """Every variable some run logged an RMSE of, on any split."""
    prefixes = [split_metric("rmse", split) for split in SPLITS]
    return sorted({k[len(p):] for r in records for k in r.metrics for p in prefixes if k.startswith(p)})


def reference(records: Sequence[RunRecord]) -> str:
    """The reference method skill is measured against: persistence for forecasts, inverse-distance
    weighting for interpolation (read from the task's params)."""
    kinds = set()
    for r in records:
        if "task.lead" in r.params:
            kinds.add("persistence")
        elif "task.hide_fraction" in r.params:
            kinds.add("inverse distance")
    return " / ".join(sorted(kinds)) or "the task's baseline"


def run_skill(record: RunRecord, split: str, var: str) -> float | None:
    """``<split>/skill/<var>`` as logged, else computed from the run's RMSE and baseline RMSE."""
    logged = record.metrics.get(split_metric("skill", split, var))
    if logged is not None:
        return logged
    return skill(record.metrics.get(split_metric("rmse", split, var)),
                 record.metrics.get(split_metric("baseline_rmse", split, var)))


def skill_rows(records: Sequence[RunRecord], keys: Sequence[str]) -> list[dict]:
    """Per group and variable: ``n`` and Spreads of the baseline RMSE, the RMSE and the skill (%) on
    the validation and, where logged, the test split (the values at the end of each run)."""
    out = []
    for values, members in group_of(records, keys).items():
        runs = [records[i] for i in members]
        for var in variables(runs):
            g = {**dict(zip(keys, values, strict=True)), "variable": var, "n": len(runs)}
            for split in SPLITS:
                for col, kind in SKILL_KINDS.items():
                    if kind == "skill":
                        s = spread([run_skill(r, split, var) for r in runs])
                    else:
                        s = spread([r.metrics.get(split_metric(kind, split, var)) for r in runs])
                    g[f"{split}_{col}"] = s if s is not None else NA
            out.append(g)
    return out


def skill_columns(keys: Sequence[str]) -> list[str]:
    return [*keys, "variable", "n", *(f"{split}_{col}" for split in SPLITS for col in SKILL_KINDS)]


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
