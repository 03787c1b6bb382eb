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

from gnnddm.testing.runs import TWO_ITERATIONS, run_cli


def test_console_script_is_installed():
    assert shutil.which("gnnddm"), "pip install -e . should put the gnnddm console script on PATH"


@pytest.mark.slow
def test_train_writes_summary_and_a_finished_mlflow_run(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000
    # the end of the run says its result and where to find it, on the terminal and in train.log
    for text in (out.stdout, (tmp_path / "run" / "train.log").read_text()):
        assert "gnnddm train: finished after 2 iterations" in text, text
        assert summary["mlflow_run_id"] in text and str(tmp_path / "run") in text
        assert "skill" in text and "persistence" in text and "samples: train" in text
        assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in text
    assert "iteration 2: val loss" in (tmp_path / "run" / "train.log").read_text()  # evaluations: file only
    assert "iteration 2: val loss" not in out.stdout
    assert run.data.tags["gnnddm.overrides"] == " ".join(TWO_ITERATIONS)  # the job's own (hydra.* are Hydra's)
    artifacts = {a.path for a in MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(
        run.info.run_id)}
    assert {"train.log", "hydra", "summary.json"} <= artifacts


@pytest.mark.slow
def test_output_dir_holds_every_file_of_the_run(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "output_dir=mine", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "mine"
    assert {"summary.json", "model.pt", "train.log", ".hydra"} <= {p.name for p in run_dir.iterdir()}
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_bad_value_exits_2_naming_the_key_without_traceback(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "trainer.max_iterations=abc", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "trainer.max_iterations" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_bad_flush_interval_exits_2_naming_the_key(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "tracking.flush_seconds=-1", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "tracking.flush_seconds" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run starts


@pytest.mark.slow
def test_time_selection_outside_the_file_exits_2_and_fails_the_run(tmp_path):
    out = run_cli("train", "data.time=[2019-01-01,2019-02-01]", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "data.time=[2019-01-01, 2019-02-01] selects no time step" in out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_missing_data_file_exits_2_naming_the_file(tmp_path):
    out = run_cli("train", "data=era5", "data.path=/nonexistent/era5.nc", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "/nonexistent/era5.nc" in out.stderr and "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("override,valid", [("model=transformer", "sage"), ("ddm=adam", "asm"),
                                            ("+experiment=nope", "quickstart")])
@pytest.mark.slow
def test_unknown_group_option_lists_the_valid_ones(tmp_path, override, valid):
    out = run_cli("train", override, cwd=tmp_path)
    assert out.returncode != 0
    assert valid in out.stderr
    assert not (tmp_path / "mlflow.db").exists() or "RUNNING" not in out.stderr


@pytest.mark.slow
def test_verbose_prints_the_traceback(tmp_path):
    out = run_cli("train", *TWO_ITERATIONS, "data.variables=[nope]", "verbose=true", "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" in out.stderr and "nope" in out.stderr


@pytest.mark.slow
def test_unknown_command_exits_2():
    out = run_cli("frobnicate", cwd=Path.cwd())
    assert out.returncode == 2 and "train" in out.stderr


@pytest.mark.slow
def test_multirun_sweep_groups_jobs_under_one_parent_and_keeps_failed_jobs(tmp_path):
    out = run_cli("train", "-m", *TWO_ITERATIONS, "ddm=global,sync", "partition.num_parts=2,100000",
                  "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600)
    # 100000 parts exceed the graph's nodes, which only the data tells: those jobs fail after their runs
    # started, the others finish, the sweep reports it
    assert out.returncode != 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("gnnddm").experiment_id])
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(jobs) == 4
    assert len({r.data.tags["mlflow.parentRunId"] for r in jobs}) == 1
    assert sorted(r.info.status for r in jobs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert all(r.info.status != "RUNNING" for r in runs)
    # the sweep ends saying how its jobs ended, its parent run and the report command, also in its folder
    parent = jobs[0].data.tags["mlflow.parentRunId"]
    note = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert note["parent_run_id"] == parent and note["jobs"] == {"failed": 2, "finished": 2}
    assert "4 jobs (2 failed, 2 finished)" in out.stdout
    assert f"gnnddm report --tracking-uri sqlite:///{tmp_path}/mlflow.db --parent {parent}" in out.stdout
    assert note["report"] in out.stdout


@pytest.mark.slow
def test_multirun_with_an_inspection_flag_is_one_error(tmp_path):
    out = run_cli("train", "-m", "ddm=global,sync", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--cfg" in out.stderr and "-m" in out.stderr


@pytest.mark.slow
def test_a_slurm_sweep_without_slurm_is_one_error(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PATH": str(tmp_path)}  # no srun, no sbatch
    out = subprocess.run([sys.executable, "-m", "gnnddm", "train", "-m", "hydra/launcher=slurm", *TWO_ITERATIONS,
                          "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert len(out.stderr.strip().splitlines()) == 1 and "srun" in out.stderr and "hydra/launcher=local" in out.stderr


@pytest.mark.parametrize("override,extra,key", [
    ("ddm=halo_sync", ["partition.overlap=0"], "partition.overlap"),  # its halo's inputs: overlap >= 1
    ("ddm=two_level", ["ddm.coarse=middle"], "ddm.coarse"),
    ("ddm=multilevel", ["ddm.levels=9"], "ddm.levels"),         # the 32 x 64 grid allows 5 levels
    ("ddm=multilevel", ["ddm.levels=3", "ddm.depth_coarsening=true"], "ddm.depth_coarsening"),  # residual=false
    ("ddm=multilevel", ["ddm.levels=3", "ddm.depth_coarsening=true", "model.residual=true", "model.layers=4"],
     "ddm.levels / ddm.schedule"),                               # 2 residual layers: one coarsening in depth
    ("ddm=multilevel", ["ddm.levels=5", "partition.num_parts=12"], "ddm.coarse_distribution"),  # 8 nodes on level 4
])
@pytest.mark.slow
def test_bad_decomposition_settings_exit_2_naming_the_key_and_fail_the_run(tmp_path, override, extra, key):
    out = run_cli("train", *TWO_ITERATIONS, override, *extra, "hydra.run.dir=run", cwd=tmp_path)
    assert out.returncode == 2
    assert key in out.stderr and "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and key in summary["error"]
    if override == "ddm=two_level":  # the schema refutes it before any run starts: no MLflow run at all
        assert summary["mlflow_run_id"] is None
        return
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("args", [["ddm=asm", "--cfg", "job"], ["--cfg", "job", "ddm=asm"], ["ddm=asm", "-c", "job"]])
@pytest.mark.slow
def test_hydra_flags_stand_anywhere_on_the_command_line(tmp_path, args):
    out = run_cli("train", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: asm" in out.stdout


def test_flags_go_before_the_overrides_with_their_values():
    from gnnddm.commands.hydra_app import split_hydra_args

    flags, overrides = split_hydra_args(["ddm=asm", "--cfg", "job", "-m", "seed=0,1", "--info", "-p", "ddm"])
    assert flags == ["--cfg", "job", "-m", "--info", "-p", "ddm"]
    assert overrides == ["ddm=asm", "seed=0,1"]
