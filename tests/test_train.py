"""The training loop: summaries, MLflow records, failures, resume; every experiment composes and runs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from gnnddm.config import compose, config_dir
from gnnddm.errors import ConfigError, GnnddmError, TrainingDivergedError
from gnnddm.testing.runs import tiny_run_in
from gnnddm.training import train

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


def run_of(tmp_path, summary):
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])


@pytest.mark.slow
def test_summary_json_holds_the_contract_keys(tmp_path):
    summary = train(compose(tiny_run_in(tmp_path)))
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "finished"
    for key in ("train_loss", "val_loss", "val_rmse"):
        assert key in on_disk["final"]
    assert set(on_disk["final"]["val_rmse"]) == {"t2m", "msl", "u10", "v10"}
    for key in ("iterations", "rounds", "comm_bytes", "grad_evals", "wall_time", "model_time",
                "seconds_per_iteration"):
        assert key in on_disk["accounting"], key
    for key in ("num_parts", "overlap", "edge_cut_fraction", "imbalance", "halo_ratio"):
        assert key in on_disk["partition"], key
    assert on_disk["graph"]["num_nodes"] == 32 * 64
    assert on_disk["accounting"]["iterations"] == 4
    assert (tmp_path / "out" / "model.pt").exists()


@pytest.mark.slow
def test_mlflow_run_carries_params_metrics_tags_and_artifacts(tmp_path):
    summary = train(compose(tiny_run_in(tmp_path, "ddm=sync")))
    run = run_of(tmp_path, summary)
    assert run.info.status == "FINISHED"
    assert run.data.params["partition.num_parts"] == "2"
    assert run.data.params["model.hidden"] == "8"
    for key in ("train/loss", "train/batch_loss", "val/loss", "val/rmse/t2m", "val/skill/t2m",
                "val/baseline_rmse/t2m", "test/loss", "test/rmse/t2m", "test/skill/t2m", "test/baseline_rmse/t2m",
                "cost/rounds", "cost/comm_bytes", "cost/grad_evals", "cost/wall_time", "cost/model_time",
                "cost/iterations", "cost/seconds_per_iteration", "data/samples/val", "data/samples/test",
                "partition/edge_cut_fraction"):
        assert key in run.data.metrics, key
    # one bucket per concern, no duplicates of the cumulative counters, no step counter as a metric
    assert not [k for k in run.data.metrics if k.startswith("total/") or "/" not in k], run.data.metrics
    assert run.data.metrics["val/skill/t2m"] == pytest.approx(
        100 * (1 - run.data.metrics["val/rmse/t2m"] / run.data.metrics["val/baseline_rmse/t2m"]))
    assert summary["final"]["test_rmse"]["t2m"] == run.data.metrics["test/rmse/t2m"]
    # the experiment's params only: no Hydra instantiation keys, no tracking settings
    assert not [k for k in run.data.params if k.endswith(("_target_", "_partial_")) or k.startswith("tracking.")]
    assert run.data.tags["gnnddm.algorithm"] == "sync"
    assert run.data.tags["gnnddm.git_commit"]
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["gnnddm.git_commit"].removesuffix("-dirty")
    assert run.data.tags["gnnddm.seed"] == "0" and run.data.tags["gnnddm.ranks"] == "1"
    assert "version.torch" in run.data.tags
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "model.pt", "loss_curve.png", "partition_map.png"} <= names
    hist = client.get_metric_history(run.info.run_id, "val/loss")
    assert [m.step for m in hist] == [2, 4]


def test_a_key_only_the_data_refutes_fails_the_run_with_a_named_error_and_no_running_run(tmp_path):
    # valid for the schema, not for the data
    cfg = compose(tiny_run_in(tmp_path, "task.var_weights={t2m:1.0,nope:2.0}"))
    with pytest.raises(GnnddmError, match="nope"):
        train(cfg)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and "nope" in summary["error"]
    assert run_of(tmp_path, summary).info.status == "FAILED"


def test_wrongly_typed_override_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="trainer.max_iterations"):
        train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=abc")))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and "trainer.max_iterations" in summary["error"]
    assert not (tmp_path / "mlflow.db").exists()  # no run was started, so none is left RUNNING


@pytest.mark.slow
def test_exploding_loss_stops_with_the_iteration_and_a_failed_run(tmp_path):
    cfg = compose(tiny_run_in(tmp_path, "optimizer=sgd", "optimizer.lr=1.0e6", "trainer.max_loss=1.0e3"))
    with pytest.raises(TrainingDivergedError, match="iteration"):
        train(cfg)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert run_of(tmp_path, summary).info.status == "FAILED"


def test_tracking_disabled_writes_no_store(tmp_path):
    summary = train(compose(tiny_run_in(tmp_path, "tracking.enabled=false")))
    assert summary["mlflow_run_id"] is None
    assert not (tmp_path / "mlflow.db").exists()


def test_target_val_loss_stops_early(tmp_path):
    summary = train(compose(tiny_run_in(tmp_path, "trainer.target_val_loss=1.0e3", "trainer.max_iterations=10")))
    assert summary["status"] == "target_reached"
    assert summary["accounting"]["iterations"] == 2


@pytest.mark.slow
def test_a_cosine_schedule_sets_the_global_rate_of_every_iteration(tmp_path):
    import math

    summary = train(compose(tiny_run_in(tmp_path, "trainer.lr_schedule=cosine", "optimizer.lr=0.02")))
    history = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(
        summary["mlflow_run_id"], "train/lr")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [(t, 0.02 * (1 + math.cos(math.pi * (t - 1) / 4)) / 2) for t in range(1, 5)])
    constant = train(compose(tiny_run_in(tmp_path, "optimizer.lr=0.02", "tracking.enabled=false", out="constant")))
    assert constant["final"]["train_loss"] != summary["final"]["train_loss"]
    with pytest.raises(ConfigError, match="trainer.lr_schedule"):
        compose(tiny_run_in(tmp_path, "trainer.lr_schedule=linear"))
        train(compose(tiny_run_in(tmp_path, "trainer.lr_schedule=linear")))


@pytest.mark.parametrize("ddm,exact", [("sync", False), ("halo_sync", True), ("multilevel", True)])
@pytest.mark.slow
def test_a_one_hop_overlap_is_exact_only_for_algorithms_that_exchange_halos_per_layer(tmp_path, ddm, exact):
    extra = ["ddm.levels=2", "ddm.post_smooth=[1,2]"] if ddm == "multilevel" else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(compose(tiny_run_in(tmp_path, f"ddm={ddm}", "partition.overlap=1", "trainer.max_iterations=1",
                                            "tracking.enabled=false", *extra)))
    assert summary["partition"]["exact"] is exact
    assert any("message-passing hops" in str(w.message) for w in caught) is not exact


def _params(out: Path):
    return torch.load(out / "model.pt", weights_only=False)["model"]


@pytest.mark.parametrize("ddm", ["global", "asm"])
@pytest.mark.slow
def test_resume_reaches_the_same_parameters_bit_for_bit(tmp_path, ddm):
    full = tiny_run_in(tmp_path, f"ddm={ddm}", "trainer.max_iterations=6", "tracking.enabled=false", out="full")
    train(compose(full))
    part = tiny_run_in(tmp_path, f"ddm={ddm}", "trainer.max_iterations=3", "tracking.enabled=false", out="part")
    train(compose(part))
    resumed = tiny_run_in(tmp_path, f"ddm={ddm}", "trainer.max_iterations=6", "tracking.enabled=false", "resume=true",
                          out="part")
    summary = train(compose(resumed))
    assert summary["resumed_from"] == 3
    a, b = _params(tmp_path / "full"), _params(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run_with_one_history(tmp_path):
    first = train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=3", "trainer.checkpoint_every=2")))
    resumed = train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=6", "trainer.checkpoint_every=2",
                                        "resume=true")))
    assert resumed["mlflow_run_id"] == first["mlflow_run_id"] and resumed["resumed_from"] == 3
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["gnnddm.resumed_from"] == "3"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/rounds")) == [1, 2, 3, 4, 5, 6]
    assert len(client.search_runs([run.info.experiment_id])) == 1
    # the checkpoint carries the history: the loss curve covers the run from iteration 1
    state = torch.load(tmp_path / "out" / "checkpoints" / "it0000006.rank0.pt", weights_only=False)
    assert [h["iteration"] for h in state["history"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_resuming_after_a_failure_past_the_checkpoint_opens_a_linked_run_with_one_history(tmp_path, monkeypatch):
    from gnnddm.ddm.global_ import Global

    step = Global._step

    def failing(self, losses):
        if self.iteration == 3:  # the fourth iteration: the third was logged after the checkpoint of the second
            raise RuntimeError("injected failure")
        return step(self, losses)

    monkeypatch.setattr(Global, "_step", failing)
    with pytest.raises(RuntimeError, match="injected"):
        train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=5", "trainer.checkpoint_every=2")))
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())
    monkeypatch.setattr(Global, "_step", step)
    resumed = train(compose(tiny_run_in(tmp_path, "trainer.max_iterations=5", "trainer.checkpoint_every=2",
                                        "resume=true")))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    old, new = client.get_run(failed["mlflow_run_id"]), client.get_run(resumed["mlflow_run_id"])
    assert old.info.status == "FAILED" and new.info.status == "FINISHED"
    assert new.data.tags["gnnddm.resumed_run_id"] == old.info.run_id
    # the failed run keeps what it logged (iteration 3 included); the new one holds iterations 1-5 once each
    assert sorted(m.step for m in client.get_metric_history(old.info.run_id, "cost/rounds")) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(new.info.run_id, "cost/rounds")) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_job_stopped_in_its_set_up_and_requeued_continues_its_mlflow_run(tmp_path, monkeypatch):
    """A stop signal right after the MLflow run was created (before its params): summary.json names the
    run, and the requeued job, which starts again without a checkpoint, continues that run (params, the
    start's metrics at step 0 and each iteration once) instead of leaving it behind."""
    from gnnddm.training.signals import Terminated
    from gnnddm.training.tracking import Tracker

    log_params = Tracker.log_params

    def stopped(self, params):
        raise Terminated("SIGUSR2")

    monkeypatch.setattr(Tracker, "log_params", stopped)
    with pytest.raises(Terminated):
        train(compose(tiny_run_in(tmp_path, "trainer.checkpoint_every=2")))
    first = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert first["status"] == "terminated" and first["mlflow_run_id"]
    monkeypatch.setattr(Tracker, "log_params", log_params)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    again = train(compose(tiny_run_in(tmp_path, "trainer.checkpoint_every=2")))
    assert again["mlflow_run_id"] == first["mlflow_run_id"] and "resumed_from" not in again
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["model.hidden"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "data/samples/train")] == [0]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/rounds")) == [1, 2, 3, 4]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_restart_without_checkpoint_after_logged_iterations_opens_a_linked_run(tmp_path, monkeypatch):
    """Started again without a checkpoint, a run that had logged iterations is not continued (they would
    repeat): the new run names it."""
    from gnnddm.ddm.global_ import Global

    step = Global._step

    def failing(self, losses):
        if self.iteration == 2:
            raise RuntimeError("injected failure")
        return step(self, losses)

    monkeypatch.setattr(Global, "_step", failing)
    with pytest.raises(RuntimeError, match="injected"):
        train(compose(tiny_run_in(tmp_path, "trainer.checkpoint_every=0")))
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())
    monkeypatch.setattr(Global, "_step", step)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    again = train(compose(tiny_run_in(tmp_path, "trainer.checkpoint_every=0")))
    assert again["mlflow_run_id"] != failed["mlflow_run_id"] and again["resumed_run_id"] == failed["mlflow_run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert sorted(m.step for m in client.get_metric_history(again["mlflow_run_id"], "cost/rounds")) == [1, 2, 3, 4]


def test_a_stop_signal_during_the_final_evaluation_lets_the_run_finish(tmp_path, monkeypatch):
    """From the first iteration on a stop signal is deferred: one that arrives while the test split is
    scored (after the last iteration) does not throw away the finished run."""
    import os
    import signal

    from gnnddm.training.validate import Evaluator

    evaluate = Evaluator.__call__

    def signalled(self, model, splits=("train", "val")):
        if splits == ("test",):
            os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(self, model, splits)

    monkeypatch.setattr(Evaluator, "__call__", signalled)
    summary = train(compose(tiny_run_in(tmp_path, "trainer.checkpoint_every=2")))
    assert summary["status"] == "finished" and summary["accounting"]["iterations"] == 4
    assert run_of(tmp_path, summary).info.status == "FINISHED"


def test_resume_without_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint"):
        train(compose(tiny_run_in(tmp_path, "resume=true", "tracking.enabled=false")))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.slow
def test_every_experiment_composes_and_runs_one_iteration(tmp_path, experiment):
    # one small iteration: the point is that the composition runs, not the model size
    overrides = [f"+experiment={experiment}", "trainer.max_iterations=1", "trainer.progress=false",
                 "model.hidden=8", "trainer.batch_size=1", "trainer.eval_train_samples=1",
                 "tracking.enabled=false", f"output_dir={tmp_path}"]
    if compose(overrides).data._target_.endswith("load_synthetic"):
        overrides += ["data.resolution=5.625", "data.steps=40"]
        if compose(overrides).trainer.eval_leads:  # the 40 steps' test split holds fewer leads
            overrides.append("trainer.eval_leads=max")
    summary = train(compose(overrides))
    assert summary["status"] in ("finished", "target_reached")
    assert summary["accounting"]["iterations"] == 1
