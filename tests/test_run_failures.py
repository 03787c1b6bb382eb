"""Runs that fail or are killed: one line naming the cause, no MLflow run left RUNNING, no stray temporary
file, and a resume after ``kill -9`` that continues (or links to and ends) the killed run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gnnddm.config import compose
from gnnddm.errors import OutputError
from gnnddm.outputs import save_torch, write_json
from gnnddm.testing.runs import tiny_run
from gnnddm.training import train
from gnnddm.training.launcher import ENV_FAULT


def _tiny(tmp_path: Path, *extra: str) -> list[str]:
    return tiny_run("trainer.eval_every=1", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                    f"output_dir={tmp_path / 'out'}", *extra)


def _runs(tmp_path: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _full_disk(path: Path) -> None:
    """Make the next atomic write of ``path`` by this process meet a full disk: its temporary file is a
    link to /dev/full, where every write fails with ENOSPC."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / f".{path.name}.{os.getpid()}.tmp").symlink_to("/dev/full")


# ------------------------------------------------------------------------------ writes on a full disk
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("write", [lambda p: write_json(p, {"a": 1}), lambda p: save_torch({"a": 1}, p)])
def test_a_write_on_a_full_disk_names_the_file_and_the_cause_and_leaves_no_temporary_file(tmp_path, write):
    path = tmp_path / "summary.json"
    path.write_text("old")
    _full_disk(path)
    with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device \(errno 28\)"):
        write(path)
    assert path.read_text() == "old"  # the previous file stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def _disk_stays_full(monkeypatch, path: Path) -> None:
    """Every write of ``path`` fails as on a full disk (ENOSPC), however often it is tried."""
    real = os.replace

    def replace(src, dst):
        if Path(dst) == path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("name", ["model.pt", "summary.json"])
def test_a_run_that_meets_a_full_disk_ends_its_mlflow_run_failed(tmp_path, monkeypatch, name):
    """The model or the summary cannot be written at the end of the run: one error naming the file, and
    the MLflow run is ended (FAILED) before anything else is written, not left RUNNING."""
    out = tmp_path / "out"
    _disk_stays_full(monkeypatch, out / name)
    with pytest.raises(OutputError, match=rf"cannot write {out / name}: No space left on device"):
        train(compose(_tiny(tmp_path, "trainer.max_iterations=2")))
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["gnnddm.error"]
    assert not [p for p in out.rglob("*.tmp")]
    if name == "model.pt":  # the summary itself could be written
        assert json.loads((out / "summary.json").read_text())["status"] == "failed"


# ------------------------------------------------------------------------------ resume after kill -9
def _killed_run(tmp_path: Path, at: int) -> None:
    """``gnnddm train`` in a process killed with SIGKILL during iteration ``at`` (checkpoints every 3)."""
    env = {**os.environ, ENV_FAULT: f"kill:rank=0:iteration={at}", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "gnnddm", "train", *_tiny(tmp_path, "trainer.max_iterations=12",
                                                                          "trainer.checkpoint_every=3")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (tmp_path / "out" / "summary.json").exists()  # nothing could be written: the run id is in
    (killed,) = _runs(tmp_path)  # the checkpoint alone
    assert killed.info.status == "RUNNING"


@pytest.mark.slow
def test_resume_after_kill_continues_the_same_mlflow_run(tmp_path):
    _killed_run(tmp_path, at=8)  # checkpoint of iteration 6
    summary = train(compose(_tiny(tmp_path, "trainer.max_iterations=12", "trainer.checkpoint_every=3",
                                  "resume=true")))
    assert summary["status"] == "finished" and summary["resumed_from"] == 6
    (run,) = _runs(tmp_path)
    assert run.info.run_id == summary["mlflow_run_id"] and run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/wall_time"))
    assert steps == list(range(1, 13))  # every iteration once


@pytest.mark.slow
def test_resume_after_kill_that_cannot_continue_the_run_links_it_and_ends_it_killed(tmp_path):
    _killed_run(tmp_path, at=8)
    (killed,) = _runs(tmp_path)
    # the newest checkpoint is lost: the killed run logged beyond the one left, so continuing it would
    # repeat iterations 4-6; the resumed training opens a new run
    newest = tmp_path / "out" / "checkpoints" / "it0000006.rank0.pt"
    newest.unlink()
    summary = train(compose(_tiny(tmp_path, "trainer.max_iterations=12", "trainer.checkpoint_every=3",
                                  "resume=true")))
    assert summary["resumed_from"] == 3 and summary["mlflow_run_id"] != killed.info.run_id
    runs = {r.info.run_id: r for r in _runs(tmp_path)}
    assert runs[killed.info.run_id].info.status == "KILLED"
    assert runs[summary["mlflow_run_id"]].info.status == "FINISHED"
    assert runs[summary["mlflow_run_id"]].data.tags["gnnddm.resumed_run_id"] == killed.info.run_id
