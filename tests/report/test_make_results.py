"""``scripts/make_results.py`` without its sweeps: the commands it prints and the columns it reads."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_results.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_commands_name_the_experiment_store_and_report_options(script, tmp_path):
    study = script.STUDIES["partition"]
    cmd = script.train_command(study, tmp_path / "mlflow.db", tmp_path / "sweep", ["trainer.max_iterations=2"])
    assert cmd[:4] == ["gnnddm", "train", "-m", "+experiment=study_partition"]
    assert "partition.overlap=0,2" in cmd and "trainer.max_iterations=2" in cmd
    assert f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}" in cmd
    report = script.report_command(study, tmp_path)
    assert report[report.index("--group-by") + 1] == "partitioner,overlap"
    assert report[report.index("--baseline") + 1] == "partitioner=metis,overlap=2"


def test_the_hand_written_discussion_is_kept(script, tmp_path):
    page = tmp_path / "results.md"
    assert script.read_discussion(page) == ""
    page.write_text(f"# Results\n\n{script.BEGIN}\nsync wins.\n{script.END}\n")
    assert script.read_discussion(page) == "sync wins."


def test_extra_columns_read_the_namespaced_metrics(script, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    exp = c.create_experiment("x", artifact_location=(tmp_path / "art").as_uri())
    run_id = c.create_run(exp, tags={"gnnddm.edge_weights": "correlation"}).info.run_id
    ts = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric("partition/halo_ratio", 0.25, ts, 0), Metric("cost/model_time", 1.0, ts, 1),
                                 Metric("cost/model_time", 3.5, ts, 2), Metric("ddm/accepted", 1.0, ts, 1),
                                 Metric("ddm/accepted", 0.0, ts, 2)])
    rows = [{"run_id": run_id}]
    script._extra_columns(uri, rows)
    assert rows[0] == {"run_id": run_id, "edge_weights": "correlation", "edge_cut_fraction": "n/a",
                       "halo_ratio": 0.25, "imbalance": "n/a", "model_time_total": 3.5, "accept_rate": 0.5}
