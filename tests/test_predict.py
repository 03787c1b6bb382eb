"""Lead-time scores at the end of training and in ``gnnddm evaluate``; ``gnnddm predict``'s CF files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from mlflow.tracking import MlflowClient

from gnnddm.bundle import load_model
from gnnddm.cli import main
from gnnddm.commands.evaluate import rebuild
from gnnddm.config import compose
from gnnddm.tasks.rollout import Rollout
from gnnddm.testing.runs import cli_error, tiny_run
from gnnddm.training import train


def _train(root: Path, *extra: str) -> tuple[Path, dict]:
    """A tiny forecast run (synthetic 5.625 deg grid, 40 six-hourly steps, small SAGE, 4 iterations)."""
    out = root / "run"
    summary = train(compose(tiny_run(
        "model=sage", "partition.num_parts=1", "trainer.max_iterations=4", "trainer.eval_every=2",
        f"tracking.uri=sqlite:///{root}/mlflow.db", f"output_dir={out}", *extra,
    )))
    return out, summary


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("rollout"), "trainer.eval_leads=3")


def test_training_scores_the_test_split_per_lead_and_lead_one_is_the_test_rmse(run):
    out, summary = run
    assert summary["leads"]["leads"] == 3 and summary["leads"]["lead_hours"] == [6.0, 12.0, 18.0]
    leads = json.loads((out / "leads_test.json").read_text())
    one_step = summary["final"]["test_rmse"]
    for v, var in enumerate(leads["variables"]):
        assert leads["scores"]["model"]["rmse"][0][v] == pytest.approx(one_step[var], rel=1e-5)
    metrics = MlflowClient(tracking_uri=f"sqlite:///{out.parent}/mlflow.db").get_run(summary["mlflow_run_id"]).data.metrics
    assert metrics["eval/rmse/t2m/6h"] == pytest.approx(one_step["t2m"], rel=1e-5)
    assert {"eval/acc/u10/18h", "eval/persistence/rmse/msl/12h", "eval/climatology/bias/v10/6h"} <= set(metrics)


def test_evaluate_leads_max_rolls_out_as_far_as_the_split_allows(run, capsys):
    out, summary = run
    capsys.readouterr()
    assert main(["evaluate", f"output_dir={out}", "leads=max"]) == 0
    printed = capsys.readouterr().out
    assert "lead-time scores" in printed and "30h" in printed
    result = json.loads((out / "evaluate_test.json").read_text())
    leads = result["leads"]
    assert leads["leads"] == 5 and leads["per_lead_inits"] == [5, 4, 3, 2, 1]
    assert leads["scores"]["model"]["rmse"][0][0] == pytest.approx(result["variables"]["t2m"]["rmse"], rel=1e-5)
    # persistence at lead 1 is the one-step baseline of evaluate
    assert leads["scores"]["persistence"]["rmse"][0][0] == pytest.approx(
        result["variables"]["t2m"]["baseline_rmse"], rel=1e-5)


def test_predict_writes_a_cf_file_of_the_rollout_in_physical_units(run, tmp_path):
    out, summary = run
    bundle = load_model(out / "model.pt")
    r = rebuild(bundle.cfg, bundle)
    times = r.data.times
    inits = [str(times[30])[:16], str(times[33])[:16]]
    target = tmp_path / "fc.nc"
    assert main(["predict", f"output_dir={out}", f"init={','.join(inits)}", "leads=4", f"output={target}"]) == 0
    ds = xr.open_dataset(target)
    assert dict(ds.sizes) == {"init_time": 2, "lead_time": 4, "latitude": 32, "longitude": 64}
    assert list(ds.data_vars) == ["t2m", "msl", "u10", "v10"]
    assert ds["t2m"].attrs["units"] == "K" and ds["t2m"].attrs["standard_name"] == "air_temperature"
    assert ds["u10"].attrs["standard_name"] == "eastward_wind" and ds["u10"].attrs["long_name"]
    assert ds["lead_time"].values[0] == np.timedelta64(6, "h")
    assert ds["valid_time"].values[1, 3] == times[33] + np.timedelta64(24, "h")
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["gnnddm_run_id"] == summary["mlflow_run_id"]
    assert "gnnddm predict" in ds.attrs["history"]
    assert bool(np.all(np.diff(ds["longitude"].values) > 0)) and ds["latitude"].values[0] > 0
    # the values: the rollout, de-normalised, on the grid (latitude descending, longitudes ascending)
    pred = Rollout(r.task, r.model, r.graph).forecast(np.array([30, 33]), 4).double().numpy()
    phys = r.data.to_physical(pred)
    nlat, nlon = r.data.grid_shape
    lon_row = r.data.lon.reshape(nlat, nlon)[0]
    order = np.argsort(lon_row, kind="stable")
    grid = phys.reshape(2, 4, nlat, nlon, 4)[:, :, :, order]
    np.testing.assert_allclose(ds["msl"].values, grid[..., 1], rtol=1e-6)
    assert float(ds["t2m"].mean()) > 200  # kelvin, not normalised units
    ds.close()
    # read back by gnnddm's own grid loader, as a series of valid times
    assert main(["data", "info", str(target)]) == 0


def test_predict_writes_zarr_too(run, tmp_path):
    out, _ = run
    bundle = load_model(out / "model.pt")
    t0 = str(rebuild(bundle.cfg, bundle).data.times[35])[:16]
    assert main(["predict", f"output_dir={out}", f"init={t0}", f"output={tmp_path / 'fc.zarr'}"]) == 0
    ds = xr.open_zarr(tmp_path / "fc.zarr")
    assert ds.sizes["lead_time"] == 4  # steps 36..39 follow step 35
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_predict_requests_are_one_error_and_leave_no_file(run, tmp_path, capsys):
    out, _ = run
    target = tmp_path / "fc.nc"
    cli_error(capsys, ["predict", f"output_dir={out}", "init=1999-01-01", f"output={target}"], "init=1999-01-01",
              "not a time step")
    bundle = load_model(out / "model.pt")
    last = str(rebuild(bundle.cfg, bundle).data.times[37])[:16]
    cli_error(capsys, ["predict", f"output_dir={out}", f"init={last}", "leads=5", f"output={target}"], "leads=5",
              "at most 2")
    cli_error(capsys, ["predict", f"output_dir={tmp_path}", f"init={last}"], "model.pt")
    cli_error(capsys, ["predict", f"output_dir={out}", f"init={last}", "output=fc.txt"], "output=fc.txt", ".nc")
    cli_error(capsys, ["predict", f"output_dir={out}"], "init: required")
    assert not list(tmp_path.iterdir())


def test_the_latest_initial_time_bounds_the_leads(run, tmp_path, capsys):
    """Several initial times: the leads that every one of them has in the data (the latest's), named in the
    error when more are asked for; without leads=, that many."""
    out, _ = run
    bundle = load_model(out / "model.pt")
    times = rebuild(bundle.cfg, bundle).data.times
    early, late = str(times[30])[:16], str(times[37])[:16]
    cli_error(capsys, ["predict", f"output_dir={out}", f"init={early},{late}", "leads=3",
                       f"output={tmp_path / 'a.nc'}"], "leads=3", f"at most 2 lead(s) of 1 step(s) after init={late}")
    assert main(["predict", f"output_dir={out}", f"init={early},{late}", f"output={tmp_path / 'b.nc'}"]) == 0
    with xr.open_dataset(tmp_path / "b.nc") as ds:
        assert ds.sizes["init_time"] == 2 and ds.sizes["lead_time"] == 2


def test_eval_leads_is_checked_before_training(tmp_path, capsys):
    with pytest.raises(Exception, match=r"trainer.eval_leads=9: the test split \(6 steps\) allows 1 to 5"):
        _train(tmp_path, "trainer.eval_leads=9")
    with pytest.raises(Exception, match="trainer.eval_leads=2: lead-time scores need task=forecast"):
        _train(tmp_path, "trainer.eval_leads=2", "task=interpolate")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_rollout_on_a_model_of_interpolation_is_refused(tmp_path, capsys):
    out, _ = _train(tmp_path, "task=interpolate")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "leads=2"], "leads=2", "forecast")
    cli_error(capsys, ["predict", f"output_dir={out}", "init=2000-01-08"], "task=interpolate", "forecast")


def test_the_prediction_file_passes_the_cf_checker(run, tmp_path):
    """The IOOS compliance checker's CF 1.8 suite finds no high-priority (error) failure."""
    pytest.importorskip("compliance_checker")
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    out, _ = run
    bundle = load_model(out / "model.pt")
    t0 = str(rebuild(bundle.cfg, bundle).data.times[32])[:16]
    target = tmp_path / "fc.nc"
    assert main(["predict", f"output_dir={out}", f"init={t0}", "leads=2", f"output={target}"]) == 0
    CheckSuite.load_all_available_checkers()
    report = tmp_path / "cf.json"
    passed, had_errors = ComplianceChecker.run_checker(str(target), ["cf:1.8"], 0, "strict",
                                                       output_filename=str(report), output_format="json")
    result = json.loads(report.read_text())["cf:1.8"]
    high = [m for m in result["high_priorities"] if m["value"][0] < m["value"][1]]
    assert not had_errors and not high, high


def _cf_high_priority_failures(path: Path, tmp_path: Path) -> list:
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    report = tmp_path / "cf.json"
    _, had_errors = ComplianceChecker.run_checker(str(path), ["cf:1.8"], 0, "strict", output_filename=str(report),
                                                  output_format="json")
    result = json.loads(report.read_text())["cf:1.8"]
    return [m for m in result["high_priorities"] if m["value"][0] < m["value"][1]] + (["errors"] if had_errors else [])


@pytest.mark.parametrize("kind", ["stations", "mesh"])
def test_station_and_mesh_forecast_files_pass_the_cf_checker_and_name_the_stations(tmp_path, kind):
    """The same check for the ``values`` layout; a station file names each series by the station's code."""
    pytest.importorskip("compliance_checker")
    from gnnddm.data.forecast_file import forecast_dataset, write_forecast
    from gnnddm.testing.gallery import station_data, weather_data

    if kind == "stations":
        data = station_data(n=5).replace(node_ids=("3904", "518", "1034", "2922", "4935"))
    else:
        rng = np.random.default_rng(3)
        data = weather_data(rng.uniform(-60, 60, 20), rng.uniform(0, 350, 20), kind="mesh", area=np.ones(20))
    fields = np.ones((2, 3, data.num_nodes, data.num_vars), dtype=np.float32)
    inits = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]")
    path = write_forecast(forecast_dataset(data, fields, inits, [24.0, 48.0, 72.0], {"title": "t"}), tmp_path / "f.nc")
    assert not _cf_high_priority_failures(path, tmp_path)
    if kind == "stations":
        with xr.open_dataset(path) as ds:
            assert [str(c) for c in ds["station"].values] == ["3904", "518", "1034", "2922", "4935"]


def test_evaluate_plots_draw_scores_against_lead_and_maps(run):
    out, _ = run
    assert main(["evaluate", f"output_dir={out}", "leads=3", "plots=true"]) == 0
    result = json.loads((out / "evaluate_test.json").read_text())
    names = sorted(Path(p).name for p in result["plots"])
    assert names == sorted([f"{kind}_test_{v}.png" for kind in ("leads", "map") for v in ("t2m", "msl", "u10", "v10")])
    for p in result["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_maps_show_the_chosen_variable_lead_and_initial_time(run, capsys):
    out, _ = run
    bundle = load_model(out / "model.pt")
    times = rebuild(bundle.cfg, bundle).data.times
    init = str(times[35])[:16]  # the test split is steps 34..39: lead 2 from step 35 stays inside it
    assert main(["evaluate", f"output_dir={out}", "leads=3", "plots=true", "map_var=msl", "map_lead=2",
                 f"map_init={init}"]) == 0
    result = json.loads((out / "evaluate_test.json").read_text())
    names = sorted(Path(p).name for p in result["plots"])
    assert names == sorted(["map_test_msl.png", *(f"leads_test_{v}.png" for v in ("t2m", "msl", "u10", "v10"))])
    cli_error(capsys, ["evaluate", f"output_dir={out}", "leads=3", "plots=true", "map_var=sst"], "map_var=sst",
              "t2m, msl, u10, v10")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "leads=3", "plots=true", "map_lead=5"], "map_lead=5", "1 .. 3")
    late = str(times[38])[:16]  # one step before the split's end
    cli_error(capsys, ["evaluate", f"output_dir={out}", "leads=3", "plots=true", "map_lead=2", f"map_init={late}"],
              f"map_init={late}", "reaches lead 2")
    cli_error(capsys, ["evaluate", f"output_dir={out}", "leads=3", "map_var=msl"], "map_var", "plots=true")


def test_report_draws_scores_against_lead_time(run, tmp_path):
    from gnnddm.report.build import build_report

    out, _ = run
    res = build_report(f"sqlite:///{out.parent}/mlflow.db", experiment="gnnddm", output=tmp_path / "report",
                       log=False)
    md = (tmp_path / "report" / "comparison.md").read_text()
    for stem in ("rmse_vs_lead", "acc_vs_lead"):
        assert (tmp_path / "report" / f"{stem}.png").stat().st_size > 1000 and f"{stem}.png" in md
    assert res["files"]


@pytest.mark.parametrize("kind", ["stations", "mesh"])
def test_a_forecast_file_on_stations_or_a_mesh_reads_back_as_a_series_of_valid_times(tmp_path, kind):
    """Two initial times a day apart with leads of 1 and 2 days: valid times d1, d2 (shortest lead kept), d3;
    the values as written, at the written positions."""
    from gnnddm.data.forecast_file import forecast_dataset, write_forecast
    from gnnddm.data.info import load
    from gnnddm.testing.gallery import station_data, weather_data

    if kind == "stations":
        data = station_data(n=9)
    else:
        rng = np.random.default_rng(3)
        data = weather_data(rng.uniform(-60, 60, 20), rng.uniform(0, 350, 20), kind="mesh", area=np.ones(20))
    fields = np.arange(2 * 2 * data.num_nodes * data.num_vars, dtype=np.float32).reshape(2, 2, data.num_nodes,
                                                                                          data.num_vars)
    inits = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]")
    path = write_forecast(forecast_dataset(data, fields, inits, [24.0, 48.0], {"title": "t"}), tmp_path / "fc.nc")
    with pytest.warns(UserWarning, match="repeat a valid time"):
        back = load(path)
    assert list(back.times) == list(np.array(["2020-01-02", "2020-01-03", "2020-01-04"], dtype="datetime64[ns]"))
    assert back.variables == tuple(data.variables) and back.num_nodes == data.num_nodes
    np.testing.assert_allclose(back.lat, data.lat, atol=1e-6)
    np.testing.assert_allclose(back.X[0], fields[0, 0])  # init 1, lead 1 d
    np.testing.assert_allclose(back.X[1], fields[1, 0])  # init 2, lead 1 d, shorter than init 1's 2 d
    np.testing.assert_allclose(back.X[2], fields[1, 1])
