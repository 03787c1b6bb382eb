"""MLflow tracking: runs carry params, metrics, tags and artifacts, and always end (never RUNNING); runs
started at once share a new store; an unusable store is one line and an untracked run (or, required, an
error)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys

import mlflow.tracking
import pytest
from mlflow.tracking import MlflowClient

from gnnddm.errors import ConfigError
from gnnddm.testing.runs import TWO_ITERATIONS
from gnnddm.training.tracking import Tracker, TrackingConfig, _check_sqlite, _retry, flatten


def _client(tmp_path):
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_flatten_nests_keys_with_dots():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}


def test_run_records_params_metrics_tags_artifacts_and_finishes(tmp_path):
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t", run_name="r1"))
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
    tr = Tracker(TrackingConfig(uri="http://127.0.0.1:9", experiment="t", timeout=0.5))
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
        tr = Tracker(TrackingConfig(uri=uri, experiment="sweep"))
        ids.append(tr.start(sweep_dir="/x/multirun/1"))
        tr.end("FINISHED")
    c = _client(tmp_path)
    parents = {c.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    assert c.get_run(parents.pop()).info.status == "FINISHED"


def test_disabled_tracker_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = Tracker(TrackingConfig(enabled=False))
    assert tr.start() is None
    tr.log_metrics({"a": 1.0}, step=1)
    tr.end()
    assert not (tmp_path / "mlflow.db").exists()


def test_metrics_are_buffered_until_flush_seconds_or_flush(tmp_path, monkeypatch):
    import gnnddm.training.tracking as tracking

    clock = [100.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t", flush_seconds=5))
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


# ------------------------------------------------------------------------------ concurrency: the store's lock
def _lock_held(db) -> bool:
    """Whether someone holds the lock beside ``db`` (flock conflicts between open files, also in one process)."""
    with open(f"{db}.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_a_new_store_is_created_holding_the_lock_beside_it(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    seen = []

    class Client(MlflowClient):  # MLflow creates the schema of a new store here
        def __init__(self, *args, **kwargs):
            seen.append(("client", _lock_held(db)))
            super().__init__(*args, **kwargs)

        def create_experiment(self, *args, **kwargs):
            seen.append(("experiment", _lock_held(db)))
            return super().create_experiment(*args, **kwargs)

        def create_run(self, *args, **kwargs):
            seen.append(("parent" if "gnnddm.sweep_dir_parent" in kwargs.get("tags", {}) else "run", _lock_held(db)))
            return super().create_run(*args, **kwargs)

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Client)
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{db}", experiment="t"))
    run_id = tr.start(sweep_dir="/x/multirun/1")
    tr.end("FINISHED")
    # the schema, the experiment and a sweep's parent are made under the lock; the run itself needs none
    assert seen == [("client", True), ("experiment", True), ("parent", True), ("run", False)]
    assert not _lock_held(db)  # released
    assert _client(tmp_path).get_run(run_id).info.status == "FINISHED"


def _gnnddm(*args, cwd):
    exe = shutil.which("gnnddm")
    cmd = [exe] if exe else [sys.executable, "-m", "gnnddm"]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*cmd, "train", *TWO_ITERATIONS, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_a_write_that_finds_the_database_locked_is_tried_again(monkeypatch):
    import gnnddm.training.tracking as tracking

    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    calls = []

    def write(fails, error="database is locked"):
        calls.append(1)
        if len(calls) <= fails:
            raise sqlite3.OperationalError(error)
        return "written"

    assert _retry(write, 3) == "written" and len(calls) == 4
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # bounded: 4 tries
        _retry(write, 4)
    assert len(calls) == 4
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # other errors at once
        _retry(write, 1, error="disk I/O error")
    assert len(calls) == 1


@pytest.mark.slow
def test_four_runs_started_at_once_on_a_new_store_are_all_recorded(tmp_path):
    procs = [_gnnddm(f"hydra.run.dir=run{i}", f"seed={i}", cwd=tmp_path) for i in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "untracked" not in out + err, out + err  # each run found the store usable
    ids = {json.loads((tmp_path / f"run{i}" / "summary.json").read_text())["mlflow_run_id"] for i in range(4)}
    assert None not in ids and len(ids) == 4
    client = _client(tmp_path)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.run_id: r.info.status for r in runs} == dict.fromkeys(ids, "FINISHED")


# ------------------------------------------------------------------------------ an unusable store
def _not_a_database(db):
    db.write_text("not a database, just text " * 20)
    return "file is not a database"


def _truncated(db):
    con = sqlite3.connect(db)
    for i in range(8):
        con.execute(f"CREATE TABLE t{i} (x INTEGER)")
    con.commit()
    con.close()
    db.write_bytes(db.read_bytes()[:4096 + 100])
    return "database disk image is malformed"


def _a_folder(db):
    db.mkdir()
    return "unable to open database file"


@pytest.mark.parametrize("damage", [_not_a_database, _truncated, _a_folder])
def test_an_unusable_store_is_one_line_and_a_tracker_that_does_nothing(tmp_path, damage, caplog):
    db = tmp_path / "mlflow.db"
    error = damage(db)
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{db}", experiment="t"))
    with caplog.at_level(logging.WARNING, logger="gnnddm.training.tracking"):
        assert tr.start(tags={"a": "b"}) is None
    line = f"tracking.uri=sqlite:///{db}: {error}; the run continues untracked (set tracking.required=true"
    assert [r.getMessage()[: len(line)] for r in caplog.records] == [line]
    assert not tr.enabled and tr.error.startswith(line)
    (tmp_path / "f.txt").write_text("x")
    # every call of the run does nothing (no client behind it), as for a disabled tracker
    tr.log_params({"a": 1})
    tr.log_metrics({"loss": 1.0}, step=1)
    tr.send()
    tr.flush()
    tr.set_tags({"a": 1})
    tr.log_artifact(tmp_path / "f.txt")
    tr.log_artifacts(tmp_path)
    tr.log_text("x", "x.txt")
    assert tr.parent_run_id is None and not tr.has_run("0" * 32)
    tr.end("FINISHED")
    assert Tracker(TrackingConfig(uri=f"sqlite:///{db}")).reopen("0" * 32) is False
    with pytest.raises(ConfigError, match=f"^tracking.uri=sqlite:///{db}: {error}; tracking.required=true"):
        Tracker(TrackingConfig(uri=f"sqlite:///{db}", required=True)).start()


def test_a_sqlite_file_of_another_program_is_one_line_with_sqlites_error(tmp_path, caplog, capfd):
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE experiments (x INTEGER)")  # a database, but not MLflow's: MLflow's query fails
    con.commit()
    con.close()
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{db}"))
    with caplog.at_level(logging.WARNING):
        assert tr.start() is None
    assert tr.error == (f"tracking.uri=sqlite:///{db}: no such column: experiments.experiment_id; the run "
                        "continues untracked (set tracking.required=true to fail instead)")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [tr.error]
    assert "Traceback" not in capfd.readouterr().err  # MLflow's own log of the failed query is left out


def test_an_unusable_store_never_reached_mlflow(tmp_path, monkeypatch):
    """The damaged file is refused before MLflow opens it (MLflow retries an unopenable file for ~100 s)."""
    def client(*args, **kwargs):
        raise AssertionError("MLflow was asked to open a damaged store")

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", client)
    db = tmp_path / "mlflow.db"
    _a_folder(db)
    tr = Tracker(TrackingConfig(uri=f"sqlite:///{db}"))
    assert tr.start() is None and "unable to open database file" in tr.error


@pytest.mark.slow
def test_a_damaged_store_leaves_the_run_untracked_or_when_required_fails_it(tmp_path):
    db = tmp_path / "mlflow.db"
    _not_a_database(db)
    line = f"tracking.uri=sqlite:///{db}: file is not a database"
    p = _gnnddm("hydra.run.dir=run", cwd=tmp_path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert [x for x in (out + err).splitlines() if "file is not a database" in x] == [
        f"{line}; the run continues untracked (set tracking.required=true to fail instead)"]
    assert "Error" not in out + err  # no traceback, no AttributeError of a missing client
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["mlflow_run_id"] is None
    assert (tmp_path / "run" / "model.pt").exists()

    p = _gnnddm("hydra.run.dir=required", "tracking.required=true", cwd=tmp_path)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 2, err[-3000:]
    assert err.strip().splitlines()[-1] == f"gnnddm: error: {line}; tracking.required=true stops the run " \
                                           "(false: it continues untracked)"
    summary = json.loads((tmp_path / "required" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith(line)
    assert db.read_text().startswith("not a database")  # the file is left as it was


# ------------------------------------------------------------------------------ SQLite too old for MLflow
def test_an_sqlite_older_than_mlflows_minimum_is_an_error_naming_tracking_uri(tmp_path, monkeypatch, caplog):
    """What a process gets when eccodes' bundled SQLite 3.26 was loaded first, whatever build is installed."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 26, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.26.0")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ConfigError, match="older than the 3.31") as err:
        _check_sqlite(uri)
    assert str(err.value).startswith(f"tracking.uri={uri}: this process loaded SQLite 3.26.0")
    assert "import gnnddm before eccodes" in str(err.value)
    with pytest.raises(ConfigError, match=f"^tracking.uri={uri}: this process loaded SQLite 3.26.0"):
        Tracker(TrackingConfig(uri=uri, required=True)).start()
    tr = Tracker(TrackingConfig(uri=uri))
    with caplog.at_level(logging.WARNING, logger="gnnddm.training.tracking"):
        assert tr.start() is None
    assert "SQLite 3.26.0" in tr.error and "the run continues untracked" in tr.error
    assert not (tmp_path / "mlflow.db").exists()


def test_a_current_sqlite_passes_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 0))
    _check_sqlite(f"sqlite:///{tmp_path / 'mlflow.db'}")
