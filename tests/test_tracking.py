"""MLflow tracking: runs carry params, metrics, tags and artifacts, and always end (never RUNNING)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from gnnddm.tracking import Tracker, flatten


def _client(tmp_path):
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_flatten_nests_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_run_records_params_metrics_tags_artifacts_and_finishes(tmp_path):
    tr = Tracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t", run_name="r1")
    run_id = tr.start(tags={"gnnddm.git_commit": "abc"})
    tr.log_params({"model": {"hidden": 32}, "seed": 0})
    tr.log_metrics({"train_loss": 1.5, "val_rmse/t2m": 2.0, "bad": float("nan")}, step=1)
    tr.log_metrics({"train_loss": 1.0}, step=2)
    tr.log_text("seed: 0\n", "config.yaml")
    tr.end("FINISHED")
    run = _client(tmp_path).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden"] == "32"
    assert run.data.metrics["train_loss"] == 1.0
    assert "bad" not in run.data.metrics
    assert run.data.tags["gnnddm.git_commit"] == "abc"
    hist = _client(tmp_path).get_metric_history(run_id, "train_loss")
    assert [m.step for m in hist] == [1, 2]
    assert [a.path for a in _client(tmp_path).list_artifacts(run_id)] == ["config.yaml"]


def test_unreachable_server_falls_back_to_local_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = Tracker(uri="http://127.0.0.1:9", experiment="t", timeout=0.5)
    with pytest.warns(UserWarning, match="did not answer"):
        run_id = tr.start()
    tr.end("FAILED")
    assert (tmp_path / "mlflow.db").exists()
    assert _client(tmp_path).get_run(run_id).info.status == "FAILED"


@pytest.mark.slow
def test_sweep_jobs_share_one_terminated_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = []
    for _ in range(2):
        tr = Tracker(uri=uri, experiment="sweep")
        ids.append(tr.start(sweep_dir="/x/multirun/1"))
        tr.end("FINISHED")
    c = _client(tmp_path)
    parents = {c.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    assert c.get_run(parents.pop()).info.status == "FINISHED"


def test_disabled_tracker_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = Tracker(enabled=False)
    assert tr.start() is None
    tr.log_metrics({"a": 1.0}, step=1)
    tr.end()
    assert not (tmp_path / "mlflow.db").exists()


def test_metrics_are_buffered_until_flush_seconds_or_flush(tmp_path, monkeypatch):
    import gnnddm.tracking as tracking

    clock = [100.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    tr = Tracker(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t", flush_seconds=5)
    run_id = tr.start()
    tr.log_metrics({"loss": 3.0}, step=1)
    tr.log_metrics({"loss": 2.0}, step=2)
    assert len(tr._buffer) == 2 and not tr._pending  # nothing handed to the store yet
    clock[0] += 5.0
    tr.log_metrics({"loss": 1.0}, step=3)  # the interval has passed: all three go, in one call
    assert not tr._buffer and len(tr._pending) == 1
    tr.log_metrics({"loss": 0.5}, step=4)
    tr.flush()  # what a checkpoint calls: everything logged so far is stored
    assert [m.step for m in _client(tmp_path).get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    tr.end("FINISHED")
