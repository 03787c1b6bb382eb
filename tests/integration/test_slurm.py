"""Sweeps submitted through the Hydra launchers in conf/hydra/launcher/.

The ``slurm`` tests need a running SLURM whose node is up; on a single machine start one with
``scripts/slurm/start_local_slurm.sh`` (root, Debian/Ubuntu). Without it they are skipped. They check
what users of ``gnnddm train -m hydra/launcher=slurm hydra.launcher.tasks_per_node=N`` rely on: every
task of a job runs with the rank variables a torch.distributed world is built from, in the submitting
Python, a sweep of multi-task jobs ends with one finished MLflow run per job, and a job that reaches its
time limit is requeued and resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test launches jobs

REPO = Path(__file__).resolve().parents[2]
LAUNCHERS = REPO / "conf" / "hydra" / "launcher"
START_SCRIPT = "scripts/slurm/start_local_slurm.sh"

# A Hydra app that records, per SLURM task, the variables a distributed world is built from.
PROBE_APP = """
import json, os, sys
import hydra

@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def app(cfg):
    env = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "SUBMITIT_", "MASTER_"))}
    env["python"] = sys.executable
    rank = os.environ.get("SLURM_PROCID", os.environ.get("SUBMITIT_LOCAL_GLOBALID"))
    with open(f"{cfg.out}/task_{cfg.tag}_{rank}.json", "w") as f:
        json.dump(env, f)
    return rank

app()
"""


def _slurm_state() -> str | None:
    """Why SLURM cannot take jobs here, or None when its node is up."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"SLURM not installed (no sinfo/sbatch); run {START_SCRIPT} as root"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer in 15 s; is slurmctld running? ({START_SCRIPT})"
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        return f"sinfo failed ({out.stderr.strip() or 'no nodes'}); run {START_SCRIPT}"
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states):
        return f"no SLURM node is up (sinfo states: {', '.join(states)}); run {START_SCRIPT}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _slurm_state()
    if reason:
        pytest.skip(reason)


def _env() -> dict[str, str]:
    """The test's environment with the repository importable (jobs inherit it through sbatch)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run_sweep(cmd: list[str], cwd: Path, timeout: int, slurm_name: str | None) -> subprocess.CompletedProcess:
    """Run a sweep command; then cancel the SLURM jobs named ``slurm_name`` that it left (a timed-out sweep)."""
    try:
        return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    finally:
        if slurm_name:
            subprocess.run(["scancel", "--name", slurm_name], capture_output=True, timeout=30)


def _probe(tmp_path: Path, launcher_args: list[str], timeout: int) -> dict[str, dict[str, dict[str, str]]]:
    """Run PROBE_APP as a 2-job sweep (tag=a,b); return {tag: {rank: recorded variables}}."""
    conf = tmp_path / "conf"
    shutil.copytree(LAUNCHERS, conf / "hydra" / "launcher")
    out = tmp_path / "tasks"
    out.mkdir()
    (conf / "config.yaml").write_text(f"tag: a\nout: {out}\n")
    (tmp_path / "app.py").write_text(PROBE_APP)
    name = f"gnnddm-probe-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable,
        "app.py",
        "-m",
        *launcher_args,
        f"hydra.launcher.name={name}",
        "tag=a,b",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    on_slurm = "hydra/launcher=slurm" in launcher_args
    proc = _run_sweep(cmd, tmp_path, timeout, name if on_slurm else None)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tasks: dict[str, dict[str, dict[str, str]]] = {}
    for path in sorted(out.glob("task_*.json")):
        _, tag, rank = path.stem.split("_")
        tasks.setdefault(tag, {})[rank] = json.loads(path.read_text())
    return tasks


@pytest.mark.slurm
def test_slurm_launcher_gives_each_task_its_rank(slurm, tmp_path):
    """Each of the 2 tasks of each job sees its rank; the tasks of a job make one world, the jobs two."""
    from gnnddm.distributed import world_from_env

    tasks = _probe(tmp_path, ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2"], timeout=180)
    assert sorted(tasks) == ["a", "b"]
    rendezvous = {}
    for tag, job in tasks.items():
        assert sorted(job) == ["0", "1"]
        worlds = {rank: world_from_env(env) for rank, env in job.items()}
        for rank, world in worlds.items():
            assert (world.source, world.rank, world.local_rank, world.world_size) == ("slurm", int(rank), int(rank), 2)
            assert job[rank]["python"] == sys.executable
        # One rendezvous address and port per job, and the address resolves (gloo connects to it).
        assert worlds["0"].master_addr == worlds["1"].master_addr
        assert worlds["0"].master_port == worlds["1"].master_port
        socket.getaddrinfo(worlds["0"].master_addr, worlds["0"].master_port)
        rendezvous[tag] = (worlds["0"].master_addr, worlds["0"].master_port)
    # Jobs of a sweep may share a node: their process groups must not meet at the same port.
    assert rendezvous["a"] != rendezvous["b"]


def test_local_launcher_runs_each_job_in_the_same_python(tmp_path):
    """hydra/launcher=local runs every sweep job as a subprocess of the submitting interpreter."""
    tasks = _probe(tmp_path, ["hydra/launcher=local"], timeout=120)
    assert sorted(tasks) == ["a", "b"]
    for job in tasks.values():
        assert list(job) == ["0"]
        assert job["0"]["python"] == sys.executable
        assert job["0"]["SUBMITIT_LOCAL_NTASKS"] == "1"


@pytest.mark.slurm
def test_train_sweep_on_slurm_finishes_two_distributed_runs(slurm, tmp_path):
    """`gnnddm train -m hydra/launcher=slurm` with 2 gloo tasks per job: both sweep jobs finish in MLflow."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tmp_path / "multirun"
    name = f"gnnddm-test-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable,
        "-m",
        "gnnddm",
        "train",
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.timeout_min=10",
        f"hydra.launcher.name={name}",
        "+experiment=synthetic_forecast",
        "data.resolution=5.625",
        "data.steps=40",
        "model.hidden=8",
        "distributed.backend=gloo",
        "partition.num_parts=2",
        "ddm=sync,asm",
        "trainer.max_iterations=3",
        "trainer.eval_every=1",
        "trainer.progress=false",
        f"tracking.uri={uri}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = _run_sweep(cmd, tmp_path, timeout=600, slurm_name=name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Every task of both jobs (2 x 2) ran to the end without an error.
    logs = sorted((sweep / ".submitit").glob("*/*_log.err"))
    assert len(logs) == 4, logs
    for log in logs:
        text = log.read_text()
        assert "gnnddm: error" not in text and "Traceback" not in text, f"{log}:\n{text[-3000:]}"
    for result in (sweep / ".submitit").glob("*/*_result.pkl"):
        with open(result, "rb") as f:
            assert pickle.load(f)[0] == "success", result

    # One finished MLflow run per job with validation metrics, named in its summary.json; besides them only
    # the sweep's parent run: rank 1 of a job logs nothing of its own.
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(2)]
    assert [s["status"] for s in summaries] == ["finished", "finished"], summaries
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_id: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    job_ids = [s["mlflow_run_id"] for s in summaries]
    for run_id in job_ids:
        assert runs[run_id].info.status == "FINISHED"
        assert "val/loss" in runs[run_id].data.metrics
    others = [r for run_id, r in runs.items() if run_id not in job_ids]
    assert [r.data.tags.get("gnnddm.kind") for r in others] == ["sweep"], [r.data.tags for r in others]


# A run of about a minute on one core (about 16 iterations per second here): longer than what a job of
# `timeout_min=1` can do before submitit's signal, so that the first attempt is always interrupted.
REQUEUE_RUN = ["data=synthetic", "data.resolution=5.625", "data.steps=80", "model.hidden=64", "model.layers=3",
               "trainer.batch_size=16", "trainer.max_iterations=1000", "trainer.eval_every=100",
               "trainer.checkpoint_every=100", "trainer.progress=false", "trainer.threads=1"]


@pytest.mark.slurm
def test_a_timed_out_job_is_requeued_and_ends_as_an_uninterrupted_run(slurm, tmp_path):
    """A job of a 1-minute limit gets submitit's SIGUSR2 (signal_delay_s before the limit) and stops after
    its iteration with a checkpoint; submitit requeues it, it resumes (SLURM_RESTART_COUNT > 0), and it
    ends FINISHED with the final losses of the same run without interruption. Each attempt is its own
    MLflow run: the stopped ones KILLED, each later one naming the one it continues."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tmp_path / "multirun"
    name = f"gnnddm-requeue-{uuid.uuid4().hex[:8]}"
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    job = [sys.executable, "-m", "gnnddm", "train", "-m", "hydra/launcher=slurm", "hydra.launcher.timeout_min=1",
           "hydra.launcher.signal_delay_s=5", "hydra.launcher.max_num_timeout=4", f"hydra.launcher.name={name}",
           *REQUEUE_RUN, f"tracking.uri={uri}", f"hydra.sweep.dir={sweep}"]
    reference = [sys.executable, "-m", "gnnddm", "train", *REQUEUE_RUN, "tracking.enabled=false",
                 f"hydra.run.dir={tmp_path / 'reference'}"]
    sweep_proc = subprocess.Popen(job, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
    try:
        # the uninterrupted run, on the other core while the job runs and waits in the queue
        ref = subprocess.run(reference, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert ref.returncode == 0, ref.stderr[-3000:]
        out, _ = sweep_proc.communicate(timeout=600)
    finally:
        if sweep_proc.poll() is None:
            sweep_proc.kill()
        subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30)
    assert sweep_proc.returncode == 0, out[-3000:]

    (folder,) = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    log = "\n".join(p.read_text() for p in sorted(folder.glob("*_log.*")))
    assert "Requeued job" in log, log[-3000:]
    assert "run terminated by SIGUSR2 after iteration" in log and "Traceback" not in log, log[-3000:]
    with open(next(folder.glob("*_result.pkl")), "rb") as f:
        assert pickle.load(f)[0] == "success"

    summary = json.loads((sweep / "0" / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_from"] > 0, summary
    assert summary["accounting"]["iterations"] == expected["accounting"]["iterations"] == 1000
    assert summary["final"] == expected["final"]

    # The requeued attempts continue one MLflow run: FINISHED, one history without a repeated step.
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_id: r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    run = runs[summary["mlflow_run_id"]]
    assert run.info.status == "FINISHED" and int(run.data.tags["gnnddm.resumed_from"]) > 0
    assert run.data.metrics["val/loss"] == expected["final"]["val_loss"]
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/rounds"))
    assert steps == list(range(1, 1001))
    others = [r for r in runs.values() if r.info.run_id != run.info.run_id]
    assert [r.data.tags.get("gnnddm.kind") for r in others] == ["sweep"]
    assert all(r.info.status != "RUNNING" for r in runs.values())
