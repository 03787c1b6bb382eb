"""The console script end to end: exit status, messages, outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

TINY = ["data=synthetic", "data.resolution=5.625", "data.steps=40", "model.hidden=8", "model.layers=2",
        "partition.num_parts=2", "trainer.max_iterations=2", "trainer.eval_every=1", "trainer.progress=false"]


def gnnddm(*args, cwd: Path, timeout=300):
    exe = shutil.which("gnnddm")
    cmd = [exe] if exe else [sys.executable, "-m", "gnnddm"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_console_script_is_installed():
    assert shutil.which("gnnddm"), "pip install -e . should put the gnnddm console script on PATH"


def test_train_writes_summary_and_a_finished_mlflow_run(tmp_path):
    out = gnnddm("train", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000


def test_bad_value_exits_2_naming_the_key_without_traceback(tmp_path):
    out = gnnddm("train", *TINY, "trainer.max_iterations=abc", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "trainer.max_iterations" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_flush_interval_exits_2_naming_the_key(tmp_path):
    out = gnnddm("train", *TINY, "tracking.flush_seconds=-1", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "tracking.flush_seconds" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run starts


def test_time_selection_outside_the_file_exits_2_and_fails_the_run(tmp_path):
    out = gnnddm("train", "data.time=[2019-01-01,2019-02-01]", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "data.time=[2019-01-01, 2019-02-01] selects no time step" in out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


def test_missing_data_file_exits_2_naming_the_file(tmp_path):
    out = gnnddm("train", "data=era5", "data.path=/nonexistent/era5.nc", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "/nonexistent/era5.nc" in out.stderr and "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("override,valid", [("model=transformer", "sage"), ("ddm=adam", "asm"),
                                            ("+experiment=nope", "quickstart")])
def test_unknown_group_option_lists_the_valid_ones(tmp_path, override, valid):
    out = gnnddm("train", override, cwd=tmp_path)
    assert out.returncode != 0
    assert valid in out.stderr
    assert not (tmp_path / "mlflow.db").exists() or "RUNNING" not in out.stderr


def test_verbose_prints_the_traceback(tmp_path):
    out = gnnddm("train", *TINY, "data.variables=[nope]", "verbose=true", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" in out.stderr and "nope" in out.stderr


def test_unknown_command_exits_2():
    out = gnnddm("frobnicate", cwd=Path.cwd())
    assert out.returncode == 2 and "train" in out.stderr


def test_multirun_sweep_groups_jobs_under_one_parent_and_keeps_failed_jobs(tmp_path):
    out = gnnddm("train", "-m", *TINY, "ddm=global,sync", "model.hidden=8,-1", "hydra.sweep.dir=sweep",
                 cwd=tmp_path, timeout=600)
    # model.hidden=-1 cannot build a model: those jobs fail, the others finish, the sweep reports it
    assert out.returncode != 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("gnnddm").experiment_id])
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(jobs) == 4
    assert len({r.data.tags["mlflow.parentRunId"] for r in jobs}) == 1
    assert sorted(r.info.status for r in jobs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert all(r.info.status != "RUNNING" for r in runs)


@pytest.mark.parametrize("override,key", [
    ("ddm=halo_sync", "partition.overlap"),   # its halo's inputs come from the subdomain rows: overlap >= 1
    ("ddm=two_level", "ddm.coarse"),
    ("ddm=multilevel", "ddm.levels"),         # the 32 x 64 grid allows 5 levels
])
def test_bad_decomposition_settings_exit_2_naming_the_key_and_fail_the_run(tmp_path, override, key):
    extra = {"ddm=halo_sync": ["partition.overlap=0"], "ddm=two_level": ["ddm.coarse=middle"],
             "ddm=multilevel": ["ddm.levels=9"]}[override]
    out = gnnddm("train", *TINY, override, *extra, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert key in out.stderr and "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("args", [["ddm=asm", "--cfg", "job"], ["--cfg", "job", "ddm=asm"], ["ddm=asm", "-c", "job"]])
def test_hydra_flags_stand_anywhere_on_the_command_line(tmp_path, args):
    out = gnnddm("train", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: asm" in out.stdout


def test_flags_go_before_the_overrides_with_their_values():
    from gnnddm.commands import split_hydra_args

    flags, overrides = split_hydra_args(["ddm=asm", "--cfg", "job", "-m", "seed=0,1", "--info", "-p", "ddm"])
    assert flags == ["--cfg", "job", "-m", "--info", "-p", "ddm"]
    assert overrides == ["ddm=asm", "seed=0,1"]
