"""SIGTERM and SIGUSR1 (what SLURM and `timeout` send) end a run like Ctrl-C: checkpoint, summary, KILLED;
in a submitit job its preemption signal too, which then goes on to submitit's handler (the requeue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gnnddm.testing.runs import tiny_run
from gnnddm.training.signals import STOP_SIGNALS, StopSignals, Terminated, preemption_signal, requeue_if_preempted


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    run = tiny_run("partition.num_parts=2", "trainer.eval_every=5")
    cmd = [sys.executable, "-m", "gnnddm", "train", *run, "hydra.run.dir=run", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"})


def _wait_for(path_glob, folder: Path, timeout=240.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if list(folder.glob(path_glob)):
            return
        time.sleep(0.2)
    raise AssertionError(f"{path_glob} did not appear in {folder}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
@pytest.mark.slow
def test_stop_signal_checkpoints_kills_the_run_and_says_how_to_resume(tmp_path, sig):
    proc = _start(tmp_path, "trainer.max_iterations=100000", "trainer.checkpoint_every=1")
    _wait_for("run/checkpoints/it*.pt", tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + int(sig), err[-3000:]
    assert "Traceback" not in err
    assert f"run terminated by {sig.name} after iteration" in err and "resume=true" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "terminated" and summary["reason"] == sig.name
    assert summary["checkpoint_iteration"] == summary["iteration"]
    assert (tmp_path / "run" / "checkpoints" / f"it{summary['iteration']:07d}.rank0.pt").exists()
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_a_terminated_run_resumes_from_its_checkpoint_and_finishes(tmp_path):
    proc = _start(tmp_path, "trainer.max_iterations=100000", "trainer.checkpoint_every=1")
    _wait_for("run/checkpoints/it*.pt", tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=240)
    stopped = json.loads((tmp_path / "run" / "summary.json").read_text())["iteration"]
    last = stopped + 2
    resumed = _start(tmp_path, f"trainer.max_iterations={last}", "trainer.checkpoint_every=1", "resume=true")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_from"] == stopped
    assert summary["accounting"]["iterations"] == last
    # one MLflow run from the first iteration to the last, each step once; the log and Hydra's files with it
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("gnnddm").experiment_id])
    assert run.info.run_id == summary["mlflow_run_id"] and run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/rounds"))
    assert steps == list(range(1, last + 1))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"train.log", "hydra", "summary.json", "model.pt"} <= artifacts
    text = (tmp_path / "run" / "train.log").read_text()
    assert "terminated: SIGTERM" in text and "gnnddm train: finished" in text


@pytest.mark.slow
def test_without_checkpoints_the_message_says_so(tmp_path):
    proc = _start(tmp_path, "trainer.max_iterations=100000", "trainer.eval_every=1")
    _wait_for("mlflow.db", tmp_path)
    time.sleep(1.0)  # inside the loop or still setting up: either ends the same way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143 and "Traceback" not in err
    assert "no checkpoint of this run" in err and "trainer.checkpoint_every" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "terminated"


@pytest.mark.slow
def test_ctrl_c_prints_two_lines_not_a_traceback(tmp_path):
    proc = _start(tmp_path, "trainer.max_iterations=100000", "trainer.checkpoint_every=1")
    _wait_for("run/checkpoints/it*.pt", tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130
    assert "Traceback" not in err and "run terminated by SIGINT" in err and "resume=true" in err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "terminated"


def test_signal_inside_a_deferred_block_waits_for_its_end():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stops:
        with stops.deferred():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)  # delivered here, recorded only
        assert stops.received == "SIGUSR1"
        with pytest.raises(Terminated, match="SIGUSR1") as info:  # outside: raised, with the first reason
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        assert info.value.exit_code == 128 + int(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_the_preemption_signal_is_a_stop_signal_only_in_submitit_jobs(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert preemption_signal() is None and StopSignals().signals == STOP_SIGNALS
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert preemption_signal() == signal.SIGUSR2 and StopSignals().signals == (*STOP_SIGNALS, signal.SIGUSR2)
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")  # submitit's own setting: no duplicate
    assert preemption_signal() == signal.SIGUSR1 and StopSignals().signals == STOP_SIGNALS


def test_submitit_gets_its_preemption_signal_only_after_the_run_stopped(monkeypatch):
    """SIGUSR2 in a deferred block is recorded like SIGTERM; afterwards submitit's handler (here a stand-in)
    receives it, also when SIGTERM came first (a preempted job may get both)."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    to_submitit = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: to_submitit.append(signum))
    try:
        for first in (signal.SIGUSR2, signal.SIGTERM):
            with StopSignals() as stops:
                with stops.deferred():
                    os.kill(os.getpid(), first)
                    os.kill(os.getpid(), signal.SIGUSR2)
                    time.sleep(0.05)
                assert stops.received == first.name and stops.preempted and not to_submitit
            requeue_if_preempted(Terminated(stops.received, preempted=stops.preempted))
            assert to_submitit == [signal.SIGUSR2]
            to_submitit.clear()
        requeue_if_preempted(Terminated("SIGTERM"))  # an ordinary stop: no requeue
        assert not to_submitit
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_rank_stopped_by_a_signal_exits_with_its_status_and_no_traceback(monkeypatch):
    """The agent stops the other ranks with SIGTERM once one rank died: each then exits 143, which a
    spawned process reports without a traceback (any other exception would print one)."""
    from omegaconf import OmegaConf

    import gnnddm.training.trainer as train_module
    from gnnddm.config import compose

    def stopped(cfg, settings):
        raise Terminated("SIGTERM", "run terminated by SIGTERM during set-up")

    monkeypatch.setattr(train_module, "_train_process", stopped)
    cfg = compose(["trainer.progress=false"])
    with pytest.raises(SystemExit) as info:
        train_module._rank_worker(OmegaConf.to_container(cfg, resolve=True))
    assert info.value.code == 128 + signal.SIGTERM

