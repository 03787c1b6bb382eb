"""Groups of seeds: mean, range and count per column, skill per variable, and how they are written."""

from __future__ import annotations

import csv

import pytest

from gnnddm.report.groups import group_rows, reference, skill_rows
from gnnddm.report.metrics import Spread
from gnnddm.report.records import RunRecord
from gnnddm.report.tables import NA, NOT_REACHED, markdown_table, write_csv


def _run(run_id, algo, seed, status="finished", metrics=None, params=None):
    return RunRecord(run_id, run_id, status, tags={"gnnddm.algorithm": algo, "gnnddm.seed": str(seed)},
                     metrics=metrics or {}, params=params or {})


def _row(run_id, rounds, speedup, loss):
    return {"run_id": run_id, "rounds_to_target": rounds, "speedup_model_time": speedup, "final_val_loss": loss}


def test_groups_hold_mean_min_max_and_n_of_the_runs_with_a_number():
    runs = [_run("a0", "asm", 0), _run("a1", "asm", 1), _run("a2", "asm", 2, status="failed"),
            _run("s0", "sync", 0)]
    rows = [_row("a0", 10.0, 2.0, 0.1), _row("a1", 20.0, 3.0, 0.3), _row("a2", NOT_REACHED, NOT_REACHED, 0.8),
            _row("s0", 4.0, 1.5, 0.2)]
    rows = [{**{c: NA for c in ("epochs_to_target", "wall_time_to_target", "model_time_to_target",
                                "comm_bytes_to_target", "speedup_wall_time", "efficiency_model_time",
                                "efficiency_wall_time", "comm_bytes")}, **r} for r in rows]
    asm, sync = group_rows(runs, rows, ["algorithm"])
    assert (asm["algorithm"], asm["n"], asm["failed"], asm["reached"]) == ("asm", 3, 1, 2)
    assert asm["rounds_to_target"] == Spread(15.0, 10.0, 20.0, 2)
    assert asm["speedup_model_time"] == Spread(2.5, 2.0, 3.0, 2)
    assert asm["final_val_loss"].mean == pytest.approx(0.4) and asm["final_val_loss"].n == 3
    assert asm["wall_time_to_target"] == NA
    assert sync["rounds_to_target"] == Spread(4.0, 4.0, 4.0, 1)
    md = markdown_table([asm, sync], ["algorithm", "n", "rounds_to_target", "final_val_loss"], n_col="n")
    assert "| asm | 3 | 15 [10, 20] (n=2) | 0.4 [0.1, 0.8] |" in md
    assert "| sync | 1 | 4 | 0.2 |" in md
    equal = markdown_table([{"algorithm": "asm", "n": 3, "x": Spread(1.0, 1.0, 1.0, 3)}], ["algorithm", "n", "x"], "n")
    assert equal.endswith("| asm | 3 | 1 |")  # equal values: the mean alone


def test_spread_cells_become_mean_min_max_n_columns_in_csv(tmp_path):
    rows = [{"algorithm": "asm", "x": Spread(2.0, 1.0, 3.0, 2)}, {"algorithm": "sync", "x": NA}]
    with open(write_csv(rows, ["algorithm", "x"], tmp_path / "g.csv"), newline="") as fh:
        got = list(csv.reader(fh))
    assert got == [["algorithm", "x", "x_min", "x_max", "x_n"], ["asm", "2", "1", "3", "2"],
                   ["sync", "n/a", "n/a", "n/a", "0"]]


def test_skill_per_group_and_variable_on_val_and_test():
    forecast = {"task.lead": "1"}
    runs = [
        _run("a", "asm", 0, params=forecast, metrics={"val/rmse/t2m": 1.0, "val/baseline_rmse/t2m": 2.0,
                                                      "val/skill/t2m": 50.0, "test/rmse/t2m": 1.5,
                                                      "test/baseline_rmse/t2m": 2.0, "test/skill/t2m": 25.0}),
        # no skill logged: computed from the RMSE and the baseline RMSE
        _run("b", "asm", 1, params=forecast, metrics={"val/rmse/t2m": 1.5, "val/baseline_rmse/t2m": 2.0,
                                                      "val/rmse/msl": 300.0}),
    ]
    t2m, msl = sorted(skill_rows(runs, ["algorithm"]), key=lambda g: g["variable"] != "t2m")
    assert (t2m["algorithm"], t2m["variable"], t2m["n"]) == ("asm", "t2m", 2)
    assert t2m["val_skill_pct"] == Spread(37.5, 25.0, 50.0, 2)
    assert t2m["val_rmse"] == Spread(1.25, 1.0, 1.5, 2) and t2m["val_baseline_rmse"] == Spread(2.0, 2.0, 2.0, 2)
    assert t2m["test_skill_pct"] == Spread(25.0, 25.0, 25.0, 1) and t2m["test_rmse"].n == 1
    assert msl["val_rmse"] == Spread(300.0, 300.0, 300.0, 1) and msl["val_skill_pct"] == NA
    assert reference(runs) == "persistence"
    assert reference([_run("c", "asm", 0, params={"task.hide_fraction": "0.3"})]) == "inverse distance"
