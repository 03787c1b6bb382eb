"""Time-to-target, speedup and efficiency arithmetic, and the table rows built from it (no MLflow)."""

from __future__ import annotations

import math

import pytest

from gnnddm.errors import GnnddmError
from gnnddm.report.metrics import (
    ToTarget,
    efficiency,
    first_crossing,
    speedup,
    spread,
    to_target,
    value_at_step,
)
from gnnddm.report.records import Baselines, RunRecord, get_field, matches, num_parts, parse_spec
from gnnddm.report.tables import NA, NOT_REACHED, build_rows, sort_records
from gnnddm.training.scores import skill
from gnnddm.training.tracking import metric_name


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


def test_to_target_takes_the_cost_counters_at_the_crossing_step():
    loss = ([2, 4, 6], [0.6, 0.28, 0.1])
    costs = {
        "rounds": ([1, 2, 3, 4, 5, 6], [3, 6, 9, 12, 15, 18]),
        "model_time": ([2, 6], [1.0, 3.0]),  # step 4 not logged: interpolated to 2.0
        "comm_bytes": ([4], [800.0]),
    }
    assert to_target(loss, costs, 0.3) == ToTarget(step=4, rounds=12.0, grad_evals=None, wall_time=None,
                                                    model_time=2.0, comm_bytes=800.0)
    assert not to_target(loss, costs, 0.05).reached


def test_speedup_efficiency_and_skill():
    assert speedup(6.0, 2.0) == 3.0
    assert efficiency(3.0, 4) == 0.75
    assert efficiency(3.0, 4, baseline_parts=2) == 1.5  # against a p=2 baseline, ideal speedup is p/2
    assert speedup(None, 2.0) is None and speedup(6.0, None) is None and speedup(6.0, 0.0) is None
    assert efficiency(None, 4) is None and efficiency(2.0, None) is None and efficiency(2.0, 0) is None
    assert skill(1.5, 2.0) == 25.0 and skill(3.0, 2.0) == -50.0
    assert skill(None, 2.0) is None and skill(1.0, 0.0) is None


def test_spread_is_mean_min_max_and_count_of_the_numbers():
    s = spread([2.0, None, 4.0, 9.0, math.nan])
    assert (s.mean, s.low, s.high, s.n) == (5.0, 2.0, 9.0, 3)
    assert spread([None, math.nan]) is None


def test_specs_and_fields_read_tags_then_params():
    assert parse_spec("algorithm=global, p=1") == {"algorithm": "global", "p": "1"}
    assert parse_spec(" abc123 ") == "abc123"
    with pytest.raises(GnnddmError, match="key=value"):
        parse_spec("=global")
    r = RunRecord("id1", "r", "finished", tags={"gnnddm.algorithm": "asm"},
                  params={"partition.num_parts": "4", "seed": "3", "distributed.backend": "gloo",
                          "distributed.nproc_per_node": "4"})
    assert get_field(r, "algorithm") == "asm" and num_parts(r) == 4
    assert (get_field(r, "seed"), get_field(r, "backend"), get_field(r, "ranks")) == ("3", "gloo", "4")
    assert matches(r, {"algorithm": "asm", "p": "4.0"}) and not matches(r, {"algorithm": "global"})
    one = RunRecord("id2", "r", "finished", params={"distributed.backend": "none", "distributed.nproc_per_node": "4"})
    assert get_field(one, "ranks") == "1"  # no backend: one process whatever nproc_per_node says
    tagged = RunRecord("id3", "r", "finished", tags={"gnnddm.ranks": "2", "gnnddm.seed": "7"}, params={"seed": "0"})
    assert (get_field(tagged, "ranks"), get_field(tagged, "seed")) == ("2", "7")


VAL = metric_name("val_loss")
ALL = {"rounds": 1.0, "grad_evals": 1.0, "wall_time": 1.0, "model_time": 1.0, "comm_bytes": 0.0}


def _rec(run_id, algo, p, val, per_step, status="finished", start=0, seed=None, **tags):
    """A run evaluated at steps 2, 4, ... with cost counter m = per_step[m] * step."""
    steps = list(range(1, 2 * len(val) + 1))
    hist = {VAL: (steps[1::2], list(val))}
    hist.update({metric_name(m): (steps, [k * s for s in steps]) for m, k in per_step.items()})
    if seed is not None:
        tags["gnnddm.seed"] = str(seed)
    return RunRecord(run_id, f"{algo}-p{p}", status, start,
                     tags={"gnnddm.algorithm": algo, "gnnddm.num_parts": str(p), **tags},
                     metrics={VAL: val[-1], "val/rmse/t2m": 1.5}, histories=hist)


def test_rows_give_time_to_target_speedup_and_efficiency_against_the_baseline():
    base = _rec("g", "global", 1, [1.0, 0.5, 0.3, 0.2], ALL)
    asm = _rec("a", "asm", 4, [0.6, 0.28, 0.1], {"rounds": 3.0, "grad_evals": 1.25, "wall_time": 0.75,
                                                 "model_time": 0.5, "comm_bytes": 100.0})
    slow = _rec("s", "local_avg", 2, [0.9, 0.8], ALL)
    failed = _rec("f", "sync", 2, [0.9], ALL, status="failed", **{"gnnddm.error": "diverged at 3"})
    rows = {r["run_id"]: r for r in build_rows([base, asm, slow, failed], 0.3, Baselines(base, {None: base}))}
    a = rows["a"]
    assert (a["rounds_to_target"], a["epochs_to_target"], a["wall_time_to_target"], a["model_time_to_target"],
            a["comm_bytes_to_target"]) == (12.0, 5.0, 3.0, 2.0, 400.0)
    assert (a["speedup_model_time"], a["speedup_wall_time"]) == (3.0, 2.0)
    assert (a["efficiency_model_time"], a["efficiency_wall_time"]) == (0.75, 0.5)
    assert a["baseline_id"] == "g" and a["note"] == ""
    assert rows["g"]["speedup_model_time"] == 1.0 and rows["g"]["note"] == "baseline"
    assert rows["s"]["rounds_to_target"] == NOT_REACHED and rows["s"]["speedup_model_time"] == NOT_REACHED
    assert rows["f"]["status"] == "failed" and "diverged at 3" in rows["f"]["note"]
    # without a target nothing is "reached" or "not reached": it does not apply
    assert build_rows([asm], None, None)[0]["model_time_to_target"] == NA


def test_each_seed_is_compared_with_the_baseline_of_the_same_seed():
    # seed 1's global run is 2.25x slower than seed 0's: paired with seed 0's baseline a seed-1 sync run
    # would show efficiency 2.25 / 2; paired with its own it shows exactly what it gained
    g0 = _rec("g0", "global", 1, [1.0, 0.5, 0.2], ALL, seed=0, start=1)
    g1 = _rec("g1", "global", 1, [1.0, 0.5, 0.2], {**ALL, "model_time": 2.25}, seed=1, start=2)
    s0 = _rec("s0", "sync", 2, [1.0, 0.5, 0.2], {**ALL, "model_time": 0.5}, seed=0, start=3)
    s1 = _rec("s1", "sync", 2, [1.0, 0.5, 0.2], {**ALL, "model_time": 1.0}, seed=1, start=4)
    s2 = _rec("s2", "sync", 2, [1.0, 0.5, 0.2], {**ALL, "model_time": 0.5}, seed=2, start=5)
    baselines = Baselines(g0, {"0": g0, "1": g1})
    rows = {r["run_id"]: r for r in build_rows([g0, g1, s0, s1, s2], 0.3, baselines)}
    assert rows["g0"]["speedup_model_time"] == 1.0 and rows["g1"]["speedup_model_time"] == 1.0
    assert rows["g1"]["note"] == "baseline" and rows["g1"]["baseline_id"] == "g1"
    assert rows["s1"]["baseline_id"] == "g1"
    assert (rows["s1"]["speedup_model_time"], rows["s1"]["efficiency_model_time"]) == (2.25, 1.125)
    assert (rows["s0"]["speedup_model_time"], rows["s0"]["efficiency_model_time"]) == (2.0, 1.0)
    # seed 2 has no baseline of its own: the overall one, said in the note
    assert rows["s2"]["baseline_id"] == "g0" and rows["s2"]["speedup_model_time"] == 2.0
    assert "no baseline of seed 2: compared with global-p1 (seed 0)" in rows["s2"]["note"]
    assert [r["seed"] for r in build_rows([g0, g1], 0.3, baselines)] == [0, 1]


def test_rows_name_missing_metrics():
    no_eval = RunRecord("m", "msm-p2", "finished", tags={"gnnddm.algorithm": "msm", "gnnddm.num_parts": "2"},
                        histories={metric_name("rounds"): ([1, 2], [1.0, 2.0])})
    no_time = _rec("w", "asm", 2, [0.2], {"rounds": 1.0})
    rows = build_rows([no_eval, no_time], 0.3, None)
    assert rows[0]["rounds_to_target"] == NA and "missing metric val/loss" in rows[0]["note"]
    assert rows[1]["rounds_to_target"] == 2.0
    assert "missing metric cost/grad_evals, cost/wall_time, cost/model_time, cost/comm_bytes" in rows[1]["note"]


def test_runs_sort_by_group_keys_numerically_then_by_seed():
    recs = [_rec("a", "asm", 16, [1.0], ALL), _rec("b", "asm", 4, [1.0], ALL, seed=10),
            _rec("c", "global", 1, [1.0], ALL), _rec("d", "asm", 4, [1.0], ALL, seed=2)]
    assert [r.run_id for r in sort_records(recs, ["algorithm", "p"])] == ["d", "b", "a", "c"]
