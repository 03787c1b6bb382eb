"""End to end: a real (tiny) ``gnnddm train -m`` sweep, then ``gnnddm report`` on its MLflow store.

One sweep per module: global and sync on p = 2 METIS parts of the 5.625 deg synthetic grid with the
exact overlap (2 hops for the 2-layer model), seeds 0 and 1, 4 outer iterations evaluated at every one.
The report must show exactly these runs with the values training logged, pair each sync run with the
global run of its seed (same trajectory, so the same crossing iteration), and draw non-empty plots.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from mlflow.tracking import MlflowClient

from gnnddm.commands.report import main

pytestmark = pytest.mark.slow  # the sweep runs gnnddm train -m in a subprocess

ALGORITHMS = ("global", "sync")
SEEDS = (0, 1)
EXPERIMENT = "e2e"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gnnddm", "train", "-m", "+experiment=synthetic_forecast",
           f"ddm={','.join(ALGORITHMS)}", f"seed={','.join(map(str, SEEDS))}", "data.resolution=5.625",
           "data.steps=40", "model.hidden=8", "partition.num_parts=2", "partition.overlap=2",
           "trainer.max_iterations=4", "trainer.eval_every=1", "trainer.progress=false", f"tracking.uri={uri}",
           f"tracking.experiment={EXPERIMENT}", f"hydra.sweep.dir={root / 'sweep'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = root / "report"
    assert main(["--tracking-uri", uri, "--experiment", EXPERIMENT, "--output", str(out)]) == 0
    tables = {}
    for name in ("comparison", "groups", "skill"):
        with open(out / f"{name}.csv", newline="") as fh:
            tables[name] = list(csv.DictReader(fh))
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
            if r.data.tags.get("gnnddm.kind") != "sweep"}
    return {"client": client, "runs": runs, "out": out, "rows": tables["comparison"], **tables}


def test_every_run_of_the_sweep_finished_and_is_one_row_with_what_it_logged(sweep):
    rows, runs = sweep["rows"], sweep["runs"]
    assert len(runs) == len(rows) == len(ALGORITHMS) * len(SEEDS)
    assert {r["run_id"] for r in rows} == set(runs)
    assert sorted((r["algorithm"], r["seed"]) for r in rows) == sorted((a, str(s)) for a in ALGORITHMS for s in SEEDS)
    for row in rows:
        metrics = runs[row["run_id"]].data.metrics
        assert (row["status"], row["iterations"], row["backend"], row["ranks"]) == ("finished", "4", "none", "1")
        # the row's p is the partition the run trained on (global: the whole graph, p = 1)
        assert int(row["p"]) == (1 if row["algorithm"] == "global" else 2)
        assert float(row["final_val_loss"]) == pytest.approx(metrics["val/loss"], rel=1e-6)
        assert float(row["val/rmse/t2m"]) == pytest.approx(metrics["val/rmse/t2m"], rel=1e-6)
        assert float(row["comm_bytes"]) == pytest.approx(metrics["cost/comm_bytes"])


def test_each_sync_run_is_paired_with_the_global_run_of_its_seed(sweep):
    rows = {(r["algorithm"], r["seed"]): r for r in sweep["rows"]}
    for s in map(str, SEEDS):
        base, sync = rows["global", s], rows["sync", s]
        assert base["note"] == "baseline" and float(base["speedup_model_time"]) == 1.0
        assert sync["baseline_id"] == base["run_id"]
        # same trajectory as its own seed's global run: the same crossing iteration, one all-reduce per
        # iteration where global spends one epoch per iteration
        assert float(sync["final_val_loss"]) == pytest.approx(float(base["final_val_loss"]), rel=1e-4)
        assert float(sync["rounds_to_target"]) == float(base["epochs_to_target"])


def test_groups_summarise_the_seeds_and_skill_is_against_persistence(sweep):
    assert all(g["n"] == str(len(SEEDS)) for g in sweep["groups"])
    assert {g["algorithm"] for g in sweep["groups"]} == set(ALGORITHMS)
    t2m = [g for g in sweep["skill"] if g["variable"] == "t2m"]
    assert len(t2m) == len(ALGORITHMS)
    for g in t2m:
        assert float(g["val_skill_pct_min"]) <= float(g["val_skill_pct"]) <= float(g["val_skill_pct_max"])
    assert "persistence" in (sweep["out"] / "comparison.md").read_text()


def test_markdown_names_every_run_and_the_plots_are_drawn(sweep):
    out = sweep["out"]
    md = (out / "comparison.md").read_text()
    for row in sweep["rows"]:
        assert f"`{row['run_id'][:8]}`" in md
    for name in ("val_loss_vs_rounds", "val_loss_vs_grad_evals", "val_loss_vs_wall_time", "val_loss_vs_model_time",
                 "speedup", "efficiency", "comm_bytes"):
        assert f"]({name}.png)" in md and f"]({name}.pdf)" in md
        image = matplotlib.image.imread(out / f"{name}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0  # not a blank canvas
        assert (out / f"{name}.pdf").stat().st_size > 1000


def test_the_report_is_attached_to_the_sweep_parent(sweep):
    parents = {r.data.tags.get("mlflow.parentRunId") for r in sweep["runs"].values()}
    assert len(parents) == 1 and None not in parents
    attached = {a.path for a in sweep["client"].list_artifacts(parents.pop(), "report")}
    assert {"report/comparison.md", "report/comparison.csv", "report/val_loss_vs_rounds.pdf"} <= attached
