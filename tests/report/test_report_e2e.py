"""End to end: a real (tiny) ``gnnddm train -m`` sweep, then ``gnnddm report`` on its MLflow store.

One sweep per module: global, sync and asm on p = 2 METIS parts of the 5.625 deg synthetic grid with
the exact overlap (2 hops for the 2-layer model), 4 outer iterations evaluated at every one. The report
must show exactly these runs, with the values training logged, and draw non-empty plots.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import matplotlib.image
import pytest
from mlflow.tracking import MlflowClient

from gnnddm.report import main

ALGORITHMS = ("global", "sync", "asm")
EXPERIMENT = "e2e"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gnnddm", "train", "-m", "+experiment=synthetic_forecast",
           f"ddm={','.join(ALGORITHMS)}", "data.resolution=5.625", "data.steps=40", "model.hidden=8",
           "partition.num_parts=2", "partition.overlap=2", "trainer.max_iterations=4", "trainer.eval_every=1",
           "trainer.progress=false", f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}",
           f"hydra.sweep.dir={root / 'sweep'}"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads((root / "sweep" / str(i) / "summary.json").read_text()) for i in range(3)]
    out = root / "report"
    assert main(["--tracking-uri", uri, "--experiment", EXPERIMENT, "--output", str(out)]) == 0
    with open(out / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"uri": uri, "summaries": summaries, "out": out, "rows": rows}


def test_every_run_of_the_sweep_finished_and_is_one_row(sweep):
    by_algo = {s["labels"]["algorithm"]: s for s in sweep["summaries"]}
    assert set(by_algo) == set(ALGORITHMS)
    assert all(s["status"] == "finished" for s in sweep["summaries"])
    assert len(sweep["rows"]) == len(ALGORITHMS)
    assert {r["run_id"] for r in sweep["rows"]} == {s["mlflow_run_id"] for s in sweep["summaries"]}
    for row in sweep["rows"]:
        s = by_algo[row["algorithm"]]
        assert row["run_id"] == s["mlflow_run_id"]
        assert (row["status"], row["iterations"]) == ("finished", "4")
        # the row's p is the partition the run trained on (global: the whole graph, p = 1)
        assert int(row["p"]) == s["partition"]["num_parts"] == (1 if row["algorithm"] == "global" else 2)
        assert int(row["overlap"]) == s["partition"]["overlap"] == (0 if row["algorithm"] == "global" else 2)
        assert float(row["final_val_loss"]) == pytest.approx(s["final"]["val_loss"], rel=1e-6)
        assert float(row["val_rmse/t2m"]) == pytest.approx(s["final"]["val_rmse"]["t2m"], rel=1e-6)


def test_global_is_the_baseline_and_sync_follows_its_trajectory(sweep):
    rows = {r["algorithm"]: r for r in sweep["rows"]}
    assert "baseline" in rows["global"]["note"]
    assert float(rows["global"]["speedup_model_time"]) == pytest.approx(1.0)
    # default target: the baseline's final val_loss x 1.02, which sync (same iterates) reaches too
    assert float(rows["sync"]["final_val_loss"]) == pytest.approx(float(rows["global"]["final_val_loss"]),
                                                                  rel=1e-4)
    # same crossing iteration: global spends one epoch per iteration, sync one all-reduce per iteration
    assert float(rows["sync"]["rounds_to_target"]) == float(rows["global"]["epochs_to_target"])


def test_markdown_names_every_run_and_the_plots_are_drawn(sweep):
    out = sweep["out"]
    md = (out / "comparison.md").read_text()
    for row in sweep["rows"]:
        assert f"`{row['run_id'][:8]}`" in md
    for name in ("val_loss_vs_rounds.png", "val_loss_vs_grad_evals.png", "val_loss_vs_wall_time.png",
                 "val_loss_vs_model_time.png", "speedup.png", "efficiency.png"):
        assert f"]({name})" in md
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0  # not a blank canvas


def test_the_report_is_attached_to_the_sweep_parent(sweep):
    client = MlflowClient(tracking_uri=sweep["uri"])
    parents = {client.get_run(s["mlflow_run_id"]).data.tags.get("mlflow.parentRunId") for s in sweep["summaries"]}
    assert len(parents) == 1 and None not in parents
    attached = {a.path for a in client.list_artifacts(parents.pop(), "report")}
    assert {"report/comparison.md", "report/comparison.csv", "report/val_loss_vs_rounds.png"} <= attached
