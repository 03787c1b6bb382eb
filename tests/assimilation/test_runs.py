"""task=assimilate in training runs: the decomposition follows global, and the run records OI's statistics."""

from __future__ import annotations

import pytest

from gnnddm.config import compose
from gnnddm.errors import ConfigError
from gnnddm.training import train

SAGE = ("model=sage", "model.hidden=8", "model.layers=2")


def _run(tmp_path, name, *extra, model=SAGE):
    return train(compose([
        "data=synthetic", "data.resolution=5.625", "data.steps=12", "task=assimilate", "task.obs.count=200",
        "task.obs.neighbours=2",
        *model, "optimizer=adam", "optimizer.lr=0.01",
        "trainer.max_iterations=3", "trainer.eval_every=3", "trainer.progress=false", "tracking.enabled=false",
        f"output_dir={tmp_path / name}", *extra]))


def test_sync_and_halo_sync_follow_global_on_the_joint_graph(tmp_path):
    reference = _run(tmp_path, "global", "ddm=global")
    sync = _run(tmp_path, "sync", "ddm=sync", "partition.num_parts=3", "partition.overlap=2")
    halo = _run(tmp_path, "halo", "ddm=halo_sync", "partition.num_parts=3", "partition.overlap=1")
    assert sync["partition"]["exact"] and halo["partition"]["exact"]
    for run in (sync, halo):
        assert run["final"]["val_loss"] == pytest.approx(reference["final"]["val_loss"], rel=1e-4)
        for v, rmse in reference["final"]["test_rmse"].items():
            assert run["final"]["test_rmse"][v] == pytest.approx(rmse, rel=1e-4)
    assert reference["baseline"]["name"] == "optimal_interpolation"
    task = reference["task"]
    assert task["observations"] == 200 and set(task["oi"]) == {"t2m", "msl", "u10", "v10"}
    assert reference["graph"]["num_nodes"] == 2048 + 200


def test_algorithms_with_coarse_graphs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="ddm=multilevel builds coarse graphs"):
        _run(tmp_path, "ml", "ddm=multilevel", "partition.num_parts=1")


def _forecast_run(tmp_path, resolution="5.625", task="forecast"):
    out = tmp_path / f"{task}-{resolution}"
    train(compose(["data=synthetic", f"data.resolution={resolution}", "data.steps=12", f"task={task}", "model=sage",
                   "model.hidden=8", "model.layers=2", "trainer.max_iterations=2", "trainer.eval_every=2",
                   "trainer.progress=false", "tracking.enabled=false", f"output_dir={out}"]))
    return out


def test_a_forecast_model_trained_on_the_data_is_the_background(tmp_path):
    import numpy as np
    import torch

    from gnnddm.assimilation.task import AssimilateTask
    from gnnddm.bundle import load_model
    from gnnddm.commands.evaluate import rebuild

    run = _forecast_run(tmp_path)
    bundle = load_model(run / "model.pt")
    r = rebuild(bundle.cfg, bundle)  # the forecast run as `gnnddm evaluate` rebuilds it
    task = AssimilateTask(r.data, obs={"count": 50, "error": {"t2m": 1.0, "msl": 100.0, "u10": 1.5, "v10": 1.5}},
                          background={"kind": "model", "model": str(run)})
    with torch.no_grad():
        batch = r.task.batch(np.array([5]))
        forecast = (batch.base + r.model(batch.x, r.graph))[0]
    torch.testing.assert_close(task._xb[5 + r.task.lead], forecast)
    assert not task._xb_valid[0].any()  # no forecast reaches the first step
    summary = _run(tmp_path, "model-bg", "task.background.kind=model", f"task.background.model={run}")
    assert summary["task"]["background"] == "model"


def test_a_background_model_of_another_grid_or_task_is_refused(tmp_path):
    run = _forecast_run(tmp_path, resolution="11.25")
    with pytest.raises(ConfigError, match=r"task.background.model=.*trained on other data: .*graph num_nodes: 512"):
        _run(tmp_path, "other-grid", "task.background.kind=model", f"task.background.model={run}")
    run = _forecast_run(tmp_path, task="interpolate")
    with pytest.raises(ConfigError, match="a model trained by task=interpolate; the background needs a forecast"):
        _run(tmp_path, "other-task", "task.background.kind=model", f"task.background.model={run}")
    with pytest.raises(ConfigError, match="task.background.model: required"):
        _run(tmp_path, "none", "task.background.kind=model")


def test_observation_nodes_encode_into_the_mesh_and_sync_follows_global_on_it(tmp_path):
    model = ("model=encode_process_decode", "model.hidden=8", "model.processor_layers=2")
    mesh = ["graph=icosahedral", "graph.refinement=2", "partition=mesh"]
    reference = _run(tmp_path, "mesh-global", *mesh, "ddm=global", model=model)
    sync = _run(tmp_path, "mesh-sync", *mesh, "ddm=sync", "partition.num_parts=3", "partition.overlap=4", model=model)
    assert sync["partition"]["exact"]
    assert sync["final"]["val_loss"] == pytest.approx(reference["final"]["val_loss"], rel=1e-4)
    assert reference["graph"]["num_nodes"] == 2048 + 162 + 200
