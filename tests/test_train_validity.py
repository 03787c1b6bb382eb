"""The validity gate: no run trains, evaluates or reports over zero valid targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from mlflow.tracking import MlflowClient

from gnnddm.config import compose
from gnnddm.data.synthetic import grid_coords
from gnnddm.errors import ConfigError, DataError
from gnnddm.tasks import rmse_from_sums
from gnnddm.training import train

STEPS = 20


def write_grid(path: Path, nan_in=None) -> Path:
    """A 4 x 8 grid of 20 steps with t2m and msl; ``nan_in = (variable, slice of steps)`` blanks a block."""
    lat, lon = np.array([67.5, 22.5, -22.5, -67.5]), np.arange(8) * 45.0
    rng = np.random.default_rng(0)
    fields = {"t2m": 280.0 + rng.normal(size=(STEPS, 4, 8)), "msl": 101000.0 + 100 * rng.normal(size=(STEPS, 4, 8))}
    if nan_in is not None:
        name, steps = nan_in
        fields[name][steps] = np.nan
    units = {"t2m": "K", "msl": "Pa"}
    ds = xr.Dataset({k: (("time", "latitude", "longitude"), v.astype(np.float32), {"units": units[k]})
                     for k, v in fields.items()},
                    coords={"time": pd.date_range("2020-01-01", periods=STEPS, freq="6h"),
                            "latitude": lat, "longitude": lon})
    ds.to_netcdf(path)
    return path


def cfg_for(tmp_path: Path, path: Path, *extra: str):
    return compose(["data=era5", f"data.path={path}", "model.hidden=8", "model.layers=2", "partition.num_parts=1",
                    "trainer.max_iterations=2", "trainer.eval_every=1", "trainer.progress=false",
                    "trainer.batch_size=2", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                    f"output_dir={tmp_path / 'out'}", *extra])


def _run_status(tmp_path) -> str:
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"]).info.status


@pytest.mark.parametrize("extra", [(), ("trainer.target_val_loss=0.01",)])
def test_an_all_nan_variable_is_an_error_naming_it_and_the_file(tmp_path, extra):
    path = write_grid(tmp_path / "blank.nc", nan_in=("msl", slice(None)))
    with pytest.raises(DataError, match=r"blank\.nc: no valid value of msl in the train split"):
        train(cfg_for(tmp_path, path, *extra))
    assert _run_status(tmp_path) == "FAILED"


def test_a_variable_missing_in_the_validation_split_only_is_named_with_the_split(tmp_path):
    path = write_grid(tmp_path / "late.nc", nan_in=("t2m", slice(14, None)))  # steps 14.. = val and test
    with pytest.raises(DataError, match=r"no valid value of t2m in the val split"):
        train(cfg_for(tmp_path, path))


@pytest.mark.slow
def test_valid_target_counts_per_split_and_variable_in_summary_and_mlflow(tmp_path):
    path = write_grid(tmp_path / "part.nc", nan_in=("msl", slice(0, 3)))
    summary = train(cfg_for(tmp_path, path))
    counts = summary["valid_targets"]
    # forecast targets: pairs (t, t+1) valid at both ends; train = steps 0..13 (13 pairs), msl blank at 0..2
    assert counts["train"] == {"t2m": 13 * 32, "msl": 10 * 32}
    assert counts["val"] == {"t2m": 2 * 32, "msl": 2 * 32}
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.data.metrics["data/valid_targets/train/msl"] == 10 * 32
    assert all(v > 0 for v in summary["final"]["val_rmse"].values())


def test_rmse_over_no_valid_entry_is_nan_not_zero():
    class D:
        std, variables = np.ones(2), ("a", "b")

    sums = torch.tensor([[4.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    rmse = rmse_from_sums(sums, D())
    assert rmse["a"] == pytest.approx(1.0) and np.isnan(rmse["b"])


def test_single_snapshot_forecast_advises_interpolation(tmp_path):
    lat, lon = grid_coords(45.0)
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), np.full((1, lat.size, lon.size), 280.0, np.float32))},
                    coords={"time": pd.date_range("2020-01-01", periods=1), "latitude": lat, "longitude": lon})
    ds.to_netcdf(tmp_path / "one.nc")
    with pytest.raises(ConfigError, match=r"single time step.*task=interpolate"):
        train(cfg_for(tmp_path, tmp_path / "one.nc"))


def test_single_snapshot_grid_trains_by_node_split(tmp_path):
    lat, lon = grid_coords(22.5)
    values = 280.0 + np.cos(np.deg2rad(lat))[:, None] * 20 + np.zeros(lon.size)
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), values[None].astype(np.float32))},
                    coords={"time": pd.date_range("2020-01-01", periods=1), "latitude": lat, "longitude": lon})
    ds.to_netcdf(tmp_path / "one.nc")
    summary = train(cfg_for(tmp_path, tmp_path / "one.nc", "task=interpolate"))
    assert summary["status"] == "finished"
    n = lat.size * lon.size
    assert summary["valid_targets"]["val"]["t2m"] == round(0.15 * n)
    assert summary["valid_targets"]["train"]["t2m"] == n - 2 * round(0.15 * n)
    assert np.isfinite(summary["final"]["val_loss"]) and summary["final"]["val_loss"] > 0


@pytest.mark.slow
def test_shipped_icon_mesh_snapshot_trains_two_iterations_by_node_split(tmp_path):
    cfg = compose(["data=icon_mesh", "graph=mesh", "task=interpolate", "model.hidden=8", "model.layers=2",
                   "partition.num_parts=2", "trainer.max_iterations=2", "trainer.eval_every=1",
                   "trainer.progress=false", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                   f"output_dir={tmp_path / 'out'}"])
    summary = train(cfg)
    assert summary["status"] == "finished" and summary["accounting"]["iterations"] == 2
    assert summary["graph"]["num_nodes"] == 20480
    val = summary["valid_targets"]["val"]
    assert set(val) == {"S_10", "S_30", "S_50"} and min(val.values()) > 1000
    assert all(np.isfinite(v) and v > 0 for v in summary["final"]["val_rmse"].values())
    assert _run_status(tmp_path) == "FINISHED"
