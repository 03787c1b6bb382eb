"""What no loader may pass silently: time stamps repeated or out of order, coordinates off the sphere, a
chunk missing from a zarr store. Each is one DataError naming the file, the variable and the time or
position, for every reader (gridded netCDF and zarr read eagerly and lazily, station CSV and netCDF,
meshes); ``data.on_missing_chunk=gap`` turns missing chunks into gaps with one warning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings

import netCDF4
import numpy as np
import pytest
import xarray as xr

from gnnddm.data.grid import load_grid
from gnnddm.data.mesh import load_mesh
from gnnddm.data.stations import load_stations
from gnnddm.data.synthetic import write
from gnnddm.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("own_cache")  # synthetic files of each test's own

TIMES = np.arange("2020-01-01T00", "2020-01-02T12", np.timedelta64(6, "h"), dtype="datetime64[ns]")  # 6 steps


# ------------------------------------------------------------------------------------------ gridded
def _grid(times=TIMES, lat=(67.5, 22.5, -22.5, -67.5), lon=tuple(range(0, 360, 45))) -> xr.Dataset:
    """A 4 x 8 grid of t2m and msl (no missing value) over ``times``."""
    rng = np.random.default_rng(0)
    shape = (len(times), len(lat), len(lon))
    return xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), (280 + rng.standard_normal(shape)).astype("f4"), {"units": "K"}),
         "msl": (("time", "latitude", "longitude"), (1e5 + rng.standard_normal(shape)).astype("f4"),
                 {"units": "Pa"})},
        coords={"time": np.asarray(times), "latitude": np.asarray(lat, float), "longitude": np.asarray(lon, float)})


def _store(ds: xr.Dataset, path, zarr_format=2):
    """``ds`` as a netCDF file or a zarr store (chunks of one time step) at ``path``."""
    if path.suffix == ".nc":
        ds.to_netcdf(path)
    else:
        ds.to_zarr(path, zarr_format=zarr_format, consolidated=zarr_format == 2,
                   encoding={v: {"chunks": (1, *ds[v].shape[1:])} for v in ds.data_vars})
    return path


READERS = [("nc", False), ("nc", True), ("zarr", False), ("zarr", True)]  # (file kind, lazy)


@pytest.mark.parametrize("kind, lazy", READERS)
def test_a_repeated_time_stamp_of_a_grid_is_an_error_naming_file_variable_and_time(tmp_path, kind, lazy):
    times = TIMES.copy()
    times[3] = times[2]
    path = _store(_grid(times), tmp_path / f"dup.{kind}")
    with pytest.raises(DataError, match=rf"dup.{kind}: time variable 'time' is not strictly increasing: "
                                        r"2020-01-01T12:00:00 repeated \(steps 2 and 3\)"):
        load_grid(path, lazy=lazy)


@pytest.mark.parametrize("kind, lazy", READERS)
def test_a_grid_time_axis_going_back_is_an_error(tmp_path, kind, lazy):
    times = TIMES[[0, 1, 3, 2, 4, 5]]
    path = _store(_grid(times).rename(time="valid_time"), tmp_path / f"back.{kind}")
    with pytest.raises(DataError, match=r"time variable 'valid_time' is not strictly increasing: 2020-01-01T12:00:00 "
                                        r"\(step 3\) after 2020-01-01T18:00:00 \(step 2\)"):
        load_grid(path, lazy=lazy)


@pytest.mark.parametrize("kind, lazy", READERS)
@pytest.mark.parametrize("coordinate, values, shown", [
    ("latitude", (123.0, 22.5, -22.5, -67.5), "'lat' outside \\[-90, 90\\] degrees: 123 at index 0"),
    ("longitude", (0, 45, 90, 135, 180, 225, 270, 400), "'lon' outside \\[-180, 360\\] degrees: 400 at index 7"),
])
def test_a_grid_coordinate_off_the_sphere_is_an_error_naming_it(tmp_path, kind, lazy, coordinate, values, shown):
    ds = _grid(**{coordinate[:3]: values}).rename(latitude="lat", longitude="lon")
    path = _store(ds, tmp_path / f"off.{kind}")
    with pytest.raises(DataError, match=rf"off.{kind}: coordinate {shown}"):
        load_grid(path, lazy=lazy)


def test_valid_grids_still_load_with_both_readers(tmp_path):
    for kind in ("nc", "zarr"):
        path = _store(_grid(lon=tuple(range(-180, 180, 45))), tmp_path / f"ok.{kind}")
        for lazy in (False, True):
            data = load_grid(path, lazy=lazy)
            assert data.num_times == 6 and data.mask[:].all() and data.warnings == ()


# ----------------------------------------------------------------------------------- zarr chunks
def _drop_chunk(store, variable, step):
    """Delete the chunk file of ``variable`` at time step ``step`` (chunks of one step, whole grid)."""
    import zarr

    array = zarr.open_group(str(store), mode="r")[variable]
    key = array.metadata.encode_chunk_key((step,) + (0,) * (array.ndim - 1))
    (store / variable / key).unlink()


@pytest.fixture(params=[2, 3], ids=["zarr v2", "zarr v3"])
def store(request, tmp_path):
    """A store missing the chunk of msl at step 3 (2020-01-01T18) and of t2m at steps 4 and 5."""
    path = _store(_grid(), tmp_path / "s.zarr", zarr_format=request.param)
    _drop_chunk(path, "msl", 3)
    _drop_chunk(path, "t2m", 4)
    _drop_chunk(path, "t2m", 5)
    return path


@pytest.mark.parametrize("lazy", [False, True])
def test_a_missing_chunk_is_an_error_naming_store_variable_and_time(store, lazy):
    with pytest.raises(DataError, match=r"s.zarr: variable 'msl' at time 2020-01-01T18:00 cannot be read \(chunk "
                                        r"'msl/(c/)?3[./]0[./]0' is missing from the store; 3 missing in all "
                                        r"\(msl: 1, t2m: 2\)\).*data.on_missing_chunk=gap"):
        load_grid(store, lazy=lazy)


@pytest.mark.parametrize("lazy", [False, True])
def test_on_missing_chunk_gap_reads_gaps_with_one_warning_counting_them(store, lazy):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_grid(store, lazy=lazy, on_missing_chunk="gap")
    said = [str(w.message) for w in caught if "chunk" in str(w.message)]
    assert said == [f"{store}: 3 chunks missing from the store (msl: 1, t2m: 2), read as gaps "
                    "(data.on_missing_chunk=gap)"]
    assert data.warnings == tuple(said)
    mask = data.mask[:]
    t2m, msl = data.variables.index("t2m"), data.variables.index("msl")
    assert not mask[3, :, msl].any() and mask[[0, 1, 2, 4, 5], :, msl].all()
    assert not mask[4:, :, t2m].any() and mask[:4, :, t2m].all()


def test_only_the_chunks_of_the_steps_and_variables_read_are_required(store):
    assert load_grid(store, time=["2020-01-01T00", "2020-01-01T12"]).mask.all()  # steps 0-2
    with pytest.raises(DataError, match=r"variable 't2m' at time 2020-01-02T00:00 .* 2 missing in all \(t2m: 2\)"):
        load_grid(store, variables=["t2m"])


def test_a_missing_chunk_of_a_constant_field_is_an_error_without_a_time(tmp_path):
    ds = _grid()
    ds["lsm"] = (("latitude", "longitude"), np.ones((4, 8), "f4"))
    path = _store(ds, tmp_path / "c.zarr")
    (path / "lsm" / "0.0").unlink()
    with pytest.raises(DataError, match=r"c.zarr: variable 'lsm' cannot be read \(chunk 'lsm/0.0' is missing"):
        load_grid(path)


def test_a_missing_chunk_of_a_store_written_by_gnnddm_data_synth_is_an_error(tmp_path):
    path = write(tmp_path / "x.zarr", resolution=22.5, steps=4, seed=1)
    chunk = sorted((path / "u10").glob("2.*"))[0]  # one latitude band of step 2
    chunk.unlink()
    for lazy in (False, True):
        with pytest.raises(DataError, match=r"x.zarr: variable 'u10' at time 2000-01-01T12:00 cannot be read "
                                            r"\(chunk 'u10/2\.0\.0' is missing"):
            load_grid(path, lazy=lazy)


@pytest.mark.parametrize("lazy", [False, True])
def test_an_unreadable_chunk_is_an_error_naming_store_variable_and_time(tmp_path, lazy):
    path = _store(_grid(), tmp_path / "bad.zarr")
    (path / "msl" / "4.0.0").write_bytes(b"\xff" * 64)
    with pytest.raises(DataError, match=r"bad.zarr: variable 'msl' at time 2020-01-02T00:00 cannot be read \(.*\); "
                                        r"the file is damaged"):
        data = load_grid(path, lazy=lazy)
        data.X[4]  # a lazy read meets it when the step is read


def test_on_missing_chunk_accepts_only_error_or_gap(tmp_path):
    path = _store(_grid(), tmp_path / "s.zarr")
    with pytest.raises(ConfigError, match=r"data.on_missing_chunk: unknown choice 'skip'; valid: error, gap"):
        load_grid(path, on_missing_chunk="skip")


# ---------------------------------------------------------------------------------------- stations
def test_a_station_time_stamp_that_comes_twice_is_an_error_naming_column_station_and_lines(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text("station,time,lat,lon,t2m\nA,2001-01-01,50,5,280\nB,2001-01-01,51,5,281\nA,2001-01-02,50,5,282\n"
                 "A,2001-01-01,50,5,283\n")
    with pytest.raises(DataError, match=r"obs.csv: time column 'time' of station 'A' is not strictly increasing: "
                                        r"2001-01-01T00:00:00 repeated \(lines 2 and 5\)"):
        load_stations(f)
    f.write_text("station,time,lat,lon,t2m\nA,2001-01-02,50,5,280\nA,2001-01-01,50,5,281\n")
    assert load_stations(f).num_times == 2  # rows in any order are fine


def test_a_wide_table_repeating_a_date_is_an_error(tmp_path):
    (tmp_path / "stations.csv").write_text("code,latitude,longitude\nX1,53.0,-8.0\n")
    f = tmp_path / "w.csv"
    f.write_text("date,X1\n2001-01-02,4.0\n2001-01-01,5.0\n2001-01-02,6.0\n")
    with pytest.raises(DataError, match=r"w.csv: time column 'date' is not strictly increasing: 2001-01-02T00:00:00 "
                                        r"repeated \(lines 2 and 4\)"):
        load_stations(f, units="m s-1")


def test_a_station_at_latitude_123_is_an_error_naming_file_column_and_station(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text("station,time,lat,lon,t2m\nA,2001-01-01,50,5,280\nB,2001-01-01,123,5,281\n")
    with pytest.raises(DataError, match=r"obs.csv: coordinate 'lat' outside \[-90, 90\] degrees: 123 at station 'B'"):
        load_stations(f)


def test_a_station_table_position_off_the_sphere_names_the_station_table(tmp_path):
    (tmp_path / "stations.csv").write_text("code,latitude,longitude\nX1,53.0,-8.0\nX2,53.0,-190\n")
    f = tmp_path / "w.csv"
    f.write_text("date,X1,X2\n2001-01-01,4.0,5.0\n")
    with pytest.raises(DataError, match=r"stations.csv: coordinate 'longitude' outside \[-180, 360\] degrees: -190 "
                                        r"at station 'X2'"):
        load_stations(f, units="m s-1")


def _cf_stations(path, lon=(0.0, 1.0, 400.0), hours=(0, 6, 12)):
    with netCDF4.Dataset(path, "w") as ds:
        ds.featureType = "timeSeries"
        ds.createDimension("station", 3)
        ds.createDimension("time", 3)
        sid = ds.createVariable("station_id", str, ("station",))
        sid.cf_role = "timeseries_id"
        for i, code in enumerate(["AAA", "BBB", "CCC"]):
            sid[i] = code
        for name, vals in (("lat", [50.0, 51.0, 52.0]), ("lon", list(lon))):
            ds.createVariable(name, "f8", ("station",))[:] = vals
        tv = ds.createVariable("obs_time", "f8", ("time",))
        tv.units = "hours since 2020-01-01 00:00"
        tv.standard_name = "time"
        tv[:] = list(hours)
        ds.createVariable("t2m", "f4", ("station", "time"))[:] = np.full((3, 3), 280.0)


def test_a_cf_station_file_with_a_station_off_the_sphere_or_time_going_back_is_an_error(tmp_path):
    f = tmp_path / "obs.nc"
    _cf_stations(f)
    with pytest.raises(DataError, match=r"obs.nc: coordinate 'lon' outside \[-180, 360\] degrees: 400 at station "
                                        r"'CCC'"):
        load_stations(f)
    f.unlink()
    _cf_stations(f, lon=(0.0, 1.0, 2.0), hours=(0, 12, 6))
    with pytest.raises(DataError, match=r"obs.nc: time variable 'obs_time' is not strictly increasing: "
                                        r"2020-01-01T06:00:00 \(step 2\) after 2020-01-01T12:00:00 \(step 1\)"):
        load_stations(f)


# -------------------------------------------------------------------------------------------- meshes
def _mesh(path, clat=(10.0, 20.0, 30.0, 40.0), hours=(0, 6, 12)):
    """Four cells (degrees) with salinity S over three times."""
    ds = xr.Dataset({"S": (("time", "ncells"), np.full((len(hours), 4), 35.0))},
                    coords={"clat": ("ncells", np.asarray(clat), {"units": "degrees_north"}),
                            "clon": ("ncells", np.array([0.0, 10.0, 20.0, 30.0]), {"units": "degrees_east"}),
                            "time": ("time", np.asarray(hours, float), {"units": "hours since 2000-01-01"})})
    ds.to_netcdf(path)
    return path


def test_a_mesh_with_a_repeated_time_or_a_cell_off_the_sphere_is_an_error(tmp_path):
    assert load_mesh(_mesh(tmp_path / "ok.nc")).num_times == 3
    with pytest.raises(DataError, match=r"dup.nc: time variable 'time' is not strictly increasing: "
                                        r"2000-01-01T06:00:00 repeated \(steps 1 and 2\)"):
        load_mesh(_mesh(tmp_path / "dup.nc", hours=(0, 6, 6)))
    with pytest.raises(DataError, match=r"off.nc: coordinate 'clat' outside \[-90, 90\] degrees: 123 at cell 2"):
        load_mesh(_mesh(tmp_path / "off.nc", clat=(10.0, 20.0, 123.0, 40.0)))


# -------------------------------------------------------------------------------------- end to end
def _train_args(path, tmp_path, *extra):
    return ["data=era5", f"data.path={path}", "data.variables=[t2m,msl]", "model=sage", "model.hidden=8",
            "model.layers=2", "partition.num_parts=2", "trainer.max_iterations=2", "trainer.eval_every=1",
            "trainer.batch_size=2", "trainer.progress=false", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"output_dir={tmp_path / 'run'}", *extra]


@pytest.mark.slow
def test_training_on_a_store_missing_a_chunk_fails_naming_it(tmp_path):
    from gnnddm.config import compose
    from gnnddm.training import train

    store = _store(_grid(), tmp_path / "s.zarr")
    _drop_chunk(store, "msl", 3)
    with pytest.raises(DataError, match=r"s.zarr: variable 'msl' at time 2020-01-01T18:00 cannot be read"):
        train(compose(_train_args(store, tmp_path, "data.lazy=true")))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "'msl'" in summary["error"]


@pytest.mark.slow
def test_gnnddm_train_on_repeated_time_stamps_exits_2_with_one_line(tmp_path):
    times = TIMES.copy()
    times[3] = times[2]
    path = _store(_grid(times), tmp_path / "dup.nc")
    out = subprocess.run([shutil.which("gnnddm"), "train", *_train_args(path, tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "dup.nc: time variable 'time' is not strictly increasing: 2020-01-01T12:00:00 repeated" in out.stderr
