"""``gnnddm evaluate``: the model bundle, the numbers of the training run's own evaluator, the MLflow run,
and one clear error (exit 2) for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from gnnddm.bundle import graph_fingerprint, load_model
from gnnddm.cli import main
from gnnddm.config import build_component, compose
from gnnddm.data.pipeline import build_problem
from gnnddm.models.graph import prepare_graph
from gnnddm.testing.runs import cli_error, tiny_run
from gnnddm.training import train
from gnnddm.training.validate import Evaluator

VARIABLES = ("t2m", "msl", "u10", "v10")


def _train(root: Path, *extra: str) -> tuple[Path, dict]:
    """A tiny run (synthetic 5.625 deg grid, 40 steps, small SAGE, 4 iterations) logged to ``root``'s store."""
    out = root / "run"
    summary = train(compose(tiny_run(
        "model=sage", "partition.num_parts=1", "trainer.max_iterations=4", "trainer.eval_every=2",
        f"tracking.uri=sqlite:///{root}/mlflow.db", f"output_dir={out}", *extra,
    )))
    return out, summary


@pytest.fixture(scope="module")
def forecast(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("forecast"))


@pytest.fixture(scope="module")
def interpolate(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("interpolate"), "task=interpolate")


def _evaluate(out: Path, *args: str, split="test") -> dict:
    assert main(["evaluate", f"output_dir={out}", *args] + ([f"split={split}"] if split != "test" else [])) == 0
    return json.loads((out / f"evaluate_{split}.json").read_text())


@pytest.mark.slow
def test_the_bundle_holds_what_using_the_model_needs(forecast):
    out, summary = forecast
    bundle = load_model(out / "model.pt")
    problem = build_problem(bundle.cfg)
    data = problem.data
    assert bundle.variables == VARIABLES and bundle.units == tuple(data.units)
    np.testing.assert_array_equal(bundle.mean, data.mean)
    np.testing.assert_array_equal(bundle.std, data.std)
    assert bundle.graph["fingerprint"] == graph_fingerprint(data.edge_index, data.num_nodes)
    assert {k: bundle.graph[k] for k in ("kind", "num_nodes", "num_edges", "edge_dim")} == {
        "kind": "grid", "num_nodes": 2048, "num_edges": data.num_edges, "edge_dim": data.edge_attr.shape[1]}
    assert bundle.graph["config"]["_target_"] == "gnnddm.graph.build.grid_graph"
    assert {k: bundle.task[k] for k in ("name", "lead", "history", "out_channels")} == {
        "name": "forecast", "lead": 1, "history": 1, "out_channels": 4}
    assert bundle.architecture["class"] == "gnnddm.models.sage.GraphSAGE"
    assert bundle.architecture["hyperparameters"]["hidden"] == 8
    assert set(bundle.versions) >= {"gnnddm", "torch", "torch_geometric", "python", "git_commit"}
    assert bundle.run_id == summary["mlflow_run_id"] and bundle.iteration == 4
    assert bundle.differences(data) == []


@pytest.mark.slow
def test_test_scores_are_those_of_the_training_runs_evaluator(interpolate):
    """Interpolation draws its masks at random: the test split alone gets the masks it gets beside train and
    val in the training loop's evaluator."""
    out, summary = interpolate
    result = _evaluate(out)
    # the numbers the training run printed and logged at its end
    assert result["loss"] == pytest.approx(summary["final"]["test_loss"], rel=1e-12)
    for var in VARIABLES:
        assert result["variables"][var]["rmse"] == pytest.approx(summary["final"]["test_rmse"][var], rel=1e-12)
    bundle = load_model(out / "model.pt")
    cfg = bundle.cfg
    problem = build_problem(cfg)
    task = build_component(cfg.task, "task", problem.data)
    anchors = task.split_anchors(problem.split)
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, bundle.graph["edge_dim"])
    model.load_state_dict(bundle.state_dict)
    data = problem.data
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    sets = {"train": anchors["train"][:8], "val": anchors["val"], "test": anchors["test"]}
    direct = Evaluator(task, graph, sets, batch_size=int(cfg.trainer.batch_size), seed=int(cfg.seed)).scores(model)
    assert result["status"] == "finished" and result["baseline"] == "inverse_distance"
    assert result["loss"] == direct["test_loss"]
    assert result["samples"] == len(anchors["test"]) == direct["data/samples/test"]
    for var in VARIABLES:
        got = result["variables"][var]
        assert got["rmse"] == direct[f"test_rmse/{var}"]
        assert got["baseline_rmse"] == direct[f"test_baseline_rmse/{var}"]
        assert got["skill"] == pytest.approx(100 * (1 - got["rmse"] / got["baseline_rmse"]))


@pytest.mark.slow
def test_evaluate_is_deterministic_and_prints_the_table(forecast, capsys):
    out, _ = forecast
    first = _evaluate(out)
    table = capsys.readouterr().out
    second = _evaluate(out)
    assert first["variables"] == second["variables"] and first["loss"] == second["loss"]
    assert first["mlflow_run_id"] != second["mlflow_run_id"]  # one MLflow run per evaluation
    assert "persistence rmse" in table and "skill %" in table
    for var in VARIABLES:
        assert var in table


@pytest.mark.slow
def test_the_mlflow_run_is_a_finished_child_of_the_training_run(forecast):
    out, summary = forecast
    result = _evaluate(out, split="val")
    assert result["samples"] > 0 and set(result["variables"]) == set(VARIABLES)
    client = MlflowClient(tracking_uri=f"sqlite:///{out.parent}/mlflow.db")
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["gnnddm.command"] == "evaluate"
    assert tags["mlflow.parentRunId"] == tags["gnnddm.evaluated_run_id"] == summary["mlflow_run_id"]
    metrics = run.data.metrics
    assert metrics["val/loss"] == pytest.approx(result["loss"])
    assert metrics["data/samples/val"] == result["samples"]
    for var in VARIABLES:
        for kind in ("rmse", "skill", "baseline_rmse"):
            assert metrics[f"val/{kind}/{var}"] == pytest.approx(result["variables"][var][kind]), (kind, var)
    assert client.get_metric_history(run.info.run_id, "val/loss")[0].step == 4  # the model's iteration
    assert "evaluate_val.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_a_data_override_that_changes_the_normalisation_fails_naming_it(forecast, capsys):
    out, _ = forecast
    cli_error(capsys, ["evaluate", f"output_dir={out}", "data.split.train=0.5", "data.split.val=0.25",
                       "data.split.test=0.25"], "model.pt", "normalisation", "std of t2m: 18.71")
    failed = json.loads((out / "evaluate_test.json").read_text())
    assert failed["status"] == "failed"
    run = MlflowClient(tracking_uri=f"sqlite:///{out.parent}/mlflow.db").get_run(failed["mlflow_run_id"])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_bad_command_lines_are_one_error_naming_the_key_or_file(forecast, tmp_path, capsys):
    out, _ = forecast
    cli_error(capsys, ["evaluate", f"output_dir={tmp_path / 'nowhere'}"], "output_dir=", "nowhere", "no such folder")
    cli_error(capsys, ["evaluate", f"output_dir={tmp_path}"], f"{tmp_path / 'model.pt'}: no such file")
    cli_error(capsys, ["evaluate"], "output_dir: required")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "split=train"], "split=train", "test, val")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "model.hidden=16"], "model.hidden", "not an option")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "data.no_such_key=1"], "data.no_such_key", "resolution")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "data.steps=[1"], "data.steps=[1", "not a valid override")


def test_old_and_corrupt_model_files_are_named(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    cli_error(capsys, ["evaluate", f"output_dir={tmp_path}"], "model.pt: not a readable gnnddm model file")
    torch.save({"model": {"w": torch.zeros(2)}, "iteration": 3, "config": {"seed": 0}}, tmp_path / "model.pt")
    cli_error(capsys, ["evaluate", f"output_dir={tmp_path}"], "model.pt: written by an older gnnddm", "normalisation",
              "retrain")


def test_an_assimilation_run_is_scored_as_it_reported_against_oi(tmp_path):
    """The joint graph is rebuilt (the task appends the observation nodes) and matches the model file's."""
    out, summary = _train(tmp_path, "task=assimilate", "task.obs.count=100", "task.obs.neighbours=3")
    result = _evaluate(out)
    assert result["baseline"] == "optimal_interpolation"
    assert result["loss"] == pytest.approx(summary["final"]["test_loss"], rel=1e-12)
    for var in VARIABLES:
        assert result["variables"][var]["rmse"] == pytest.approx(summary["final"]["test_rmse"][var], rel=1e-12)
        assert result["variables"][var]["baseline_rmse"] == pytest.approx(
            summary["baseline"]["test_rmse"][var], rel=1e-9)
