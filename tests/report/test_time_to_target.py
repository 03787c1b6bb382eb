"""Time-to-target, speedup and efficiency arithmetic, and the table rows built from it (no MLflow)."""

from __future__ import annotations

import math

import pytest

from gnnddm.errors import GnnddmError
from gnnddm.report.metrics import ToTarget, efficiency, first_crossing, speedup, to_target, value_at_step
from gnnddm.report.records import RunRecord, get_field, matches, num_parts, parse_spec
from gnnddm.report.tables import NA, NOT_REACHED, build_rows, group_rows, sort_records


def test_first_crossing_is_the_first_evaluation_at_or_below_target():
    assert first_crossing([2, 4, 6, 8], [1.0, 0.5, 0.3, 0.2], 0.3) == 6  # equality counts
    assert first_crossing([8, 2, 6, 4], [0.2, 1.0, 0.3, 0.5], 0.4) == 6  # order of logging does not matter
    assert first_crossing([2, 4], [math.nan, 0.1], 0.5) == 4
    assert first_crossing([2, 4], [0.9, 0.8], 0.5) is None
    assert first_crossing([], [], 0.5) is None


def test_value_at_step_reads_exact_steps_and_interpolates_between_them_only():
    steps, values = [1, 2, 4], [10.0, 20.0, 40.0]
    assert value_at_step(steps, values, 4) == 40.0
    assert value_at_step(steps, values, 3) == 30.0
    assert value_at_step(steps, values, 0) is None
    assert value_at_step(steps, values, 5) is None
    assert value_at_step([1, 2, 2], [1.0, 2.0, 5.0], 2) == 5.0  # logged twice: the later value
    with pytest.raises(ValueError, match="length"):
        value_at_step([1, 2], [1.0], 1)


def test_to_target_takes_accounting_at_the_crossing_step():
    h = {
        "val_loss": ([2, 4, 6], [0.6, 0.28, 0.1]),
        "rounds": ([1, 2, 3, 4, 5, 6], [3, 6, 9, 12, 15, 18]),
        "model_time": ([2, 6], [1.0, 3.0]),  # step 4 not logged: interpolated to 2.0
    }
    assert to_target(h, 0.3) == ToTarget(step=4, rounds=12.0, grad_evals=None, wall_time=None, model_time=2.0)
    assert not to_target(h, 0.05).reached


def test_speedup_and_efficiency():
    assert speedup(6.0, 2.0) == 3.0
    assert efficiency(3.0, 4) == 0.75
    assert speedup(None, 2.0) is None and speedup(6.0, None) is None and speedup(6.0, 0.0) is None
    assert efficiency(None, 4) is None and efficiency(2.0, None) is None and efficiency(2.0, 0) is None


def test_specs_and_fields_read_tags_then_params():
    assert parse_spec("algorithm=global, p=1") == {"algorithm": "global", "p": "1"}
    assert parse_spec(" abc123 ") == "abc123"
    with pytest.raises(GnnddmError, match="key=value"):
        parse_spec("=global")
    r = RunRecord("id1", "r", "finished", tags={"gnnddm.algorithm": "asm"},
                  params={"partition.num_parts": "4", "model._target_": "gnnddm.models.sage.SAGE"})
    assert get_field(r, "algorithm") == "asm" and get_field(r, "model") == "SAGE"
    assert num_parts(r) == 4
    assert matches(r, {"algorithm": "asm", "p": "4.0"}) and not matches(r, {"algorithm": "global"})


def _rec(run_id, algo, p, val, per_step, status="finished", start=0, **tags):
    """A run evaluated at steps 2, 4, ... with accounting metric m = per_step[m] * step."""
    steps = list(range(1, 2 * len(val) + 1))
    hist = {"val_loss": (steps[1::2], list(val))}
    hist.update({m: (steps, [k * s for s in steps]) for m, k in per_step.items()})
    return RunRecord(run_id, f"{algo}-p{p}", status, start,
                     tags={"gnnddm.algorithm": algo, "gnnddm.num_parts": str(p), **tags},
                     metrics={"val_loss": val[-1], "val_rmse/t2m": 1.5}, histories=hist)


ALL = {"rounds": 1.0, "grad_evals": 1.0, "wall_time": 1.0, "model_time": 1.0}


def test_rows_give_time_to_target_speedup_and_efficiency_against_the_baseline():
    base = _rec("g", "global", 1, [1.0, 0.5, 0.3, 0.2], ALL)
    asm = _rec("a", "asm", 4, [0.6, 0.28, 0.1], {"rounds": 3.0, "grad_evals": 1.25, "wall_time": 0.75,
                                                 "model_time": 0.5})
    slow = _rec("s", "local_avg", 2, [0.9, 0.8], ALL)
    failed = _rec("f", "sync", 2, [0.9], ALL, status="failed", **{"gnnddm.error": "diverged at 3"})
    rows = {r["run_id"]: r for r in build_rows([base, asm, slow, failed], 0.3, base)}
    a = rows["a"]
    assert (a["rounds_to_target"], a["epochs_to_target"], a["wall_time_to_target"], a["model_time_to_target"]) \
        == (12.0, 5.0, 3.0, 2.0)
    assert (a["speedup_model_time"], a["speedup_wall_time"]) == (3.0, 2.0)
    assert (a["efficiency_model_time"], a["efficiency_wall_time"]) == (0.75, 0.5)
    assert rows["g"]["speedup_model_time"] == 1.0 and rows["g"]["note"] == "baseline"
    assert rows["s"]["rounds_to_target"] == NOT_REACHED and rows["s"]["speedup_model_time"] == NOT_REACHED
    assert rows["f"]["status"] == "failed" and "diverged at 3" in rows["f"]["note"]
    # without a target nothing is "reached" or "not reached": it does not apply
    assert build_rows([asm], None, None)[0]["model_time_to_target"] == NA


def test_rows_name_missing_metrics_and_groups_average_reached_runs():
    no_eval = RunRecord("m", "msm-p2", "finished", tags={"gnnddm.algorithm": "msm", "gnnddm.num_parts": "2"},
                        histories={"rounds": ([1, 2], [1.0, 2.0])})
    no_time = _rec("w", "asm", 2, [0.2], {"rounds": 1.0})
    rows = build_rows([no_eval, no_time], 0.3, None)
    assert rows[0]["rounds_to_target"] == NA and "missing metric val_loss" in rows[0]["note"]
    assert rows[1]["rounds_to_target"] == 2.0 and "missing metric grad_evals, wall_time, model_time" in rows[1]["note"]
    twins = [_rec("x", "asm", 4, [0.2], ALL), _rec("y", "asm", 4, [0.5, 0.2], ALL), _rec("z", "asm", 4, [0.5], ALL)]
    (g,) = group_rows(twins, build_rows(twins, 0.3, None), ["algorithm", "p"])
    assert (g["runs"], g["reached"], g["mean_rounds_to_target"]) == (3, 2, 3.0)


def test_runs_sort_by_group_keys_numerically():
    recs = [_rec("a", "asm", 16, [1.0], ALL), _rec("b", "asm", 4, [1.0], ALL), _rec("c", "global", 1, [1.0], ALL)]
    assert [r.run_id for r in sort_records(recs, ["algorithm", "p"])] == ["b", "a", "c"]
