"""GRIB files as the CDS delivers them (members, pressure levels, forecast steps), written here with eccodes."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from gnnddm.data.grid import load_grid

eccodes = pytest.importorskip("eccodes")
pytest.importorskip("cfgrib")

GRID = dict(Ni=8, Nj=4, latitudeOfFirstGridPointInDegrees=67.5, longitudeOfFirstGridPointInDegrees=0,
            latitudeOfLastGridPointInDegrees=-67.5, longitudeOfLastGridPointInDegrees=315,
            iDirectionIncrementInDegrees=45, jDirectionIncrementInDegrees=45)


def value(member: int, hour: int, step: int, level: int) -> float:
    """The value every grid point of one message holds: each of its keys is recoverable from it."""
    return 1000.0 * member + 10.0 * hour + step + level / 1000.0


def write_grib(path, members=(0, 1), hours=(0, 12), steps=(0, 6), levels=(500, 850)) -> None:
    """Temperature on pressure levels, one message per (member, reference time, step, level), from the
    eccodes ``regular_ll_pl_grib2`` sample on a 4 x 8 grid (lat 67.5 .. -67.5, lon 0 .. 315)."""
    with open(path, "wb") as f:
        for member in members:
            for hour in hours:
                for step in steps:
                    for level in levels:
                        h = eccodes.codes_grib_new_from_samples("regular_ll_pl_grib2")
                        for key, v in GRID.items():
                            eccodes.codes_set(h, key, v)
                        eccodes.codes_set(h, "shortName", "t")
                        eccodes.codes_set(h, "level", level)
                        eccodes.codes_set(h, "dataDate", 20240101)
                        eccodes.codes_set(h, "dataTime", hour * 100)
                        eccodes.codes_set(h, "stepRange", str(step))
                        if len(members) > 1:  # an ensemble product: member number in the message
                            eccodes.codes_set(h, "productDefinitionTemplateNumber", 1)
                            eccodes.codes_set(h, "perturbationNumber", member)
                            eccodes.codes_set(h, "numberOfForecastsInEnsemble", len(members))
                        eccodes.codes_set_values(h, np.full(32, value(member, hour, step, level)))
                        eccodes.codes_write(h, f)
                        eccodes.codes_release(h)


def _load(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_grid(path, **kw)
    return data, [str(w.message) for w in caught]


def test_cds_ensemble_on_levels_with_steps_reads_with_valid_time_as_time_axis(tmp_path):
    path = tmp_path / "cds.grib2"
    write_grib(path)
    before = sorted(os.listdir(tmp_path))
    data, messages = _load(path, member=1)
    assert sorted(os.listdir(tmp_path)) == before  # no cfgrib .idx beside the data
    hours = (data.times - np.datetime64("2024-01-01T00:00")) / np.timedelta64(1, "h")
    assert hours.tolist() == [0, 6, 12, 18]  # (reference time, step) pairs -> valid times, sorted
    assert sorted(data.variables) == ["t_500", "t_850"]
    j = data.variables.index("t_850")
    expected = [value(1, 0, 0, 850), value(1, 0, 6, 850), value(1, 12, 0, 850), value(1, 12, 6, 850)]
    np.testing.assert_allclose(data.X[:, 0, j], expected, rtol=1e-6)
    assert data.grid_shape == (4, 8) and data.layout == "grib"
    assert not any("ensemble members" in m for m in messages)  # the member was chosen


def test_default_member_is_the_first_with_a_note(tmp_path):
    path = tmp_path / "ens.grib"
    write_grib(path, hours=(0,), steps=(0,))
    data, messages = _load(path)
    assert data.num_times == 1
    np.testing.assert_allclose(data.X[0, 0, data.variables.index("t_500")], value(0, 0, 0, 500), rtol=1e-6)
    assert any("2 ensemble members" in m and "data.member" in m for m in messages)


def test_overlapping_forecasts_keep_the_shortest_step(tmp_path):
    path = tmp_path / "overlap.grib2"
    write_grib(path, members=(0,), steps=(0, 6, 12), levels=(500,))
    data, messages = _load(path)
    hours = (data.times - np.datetime64("2024-01-01T00:00")) / np.timedelta64(1, "h")
    assert hours.tolist() == [0, 6, 12, 18, 24]
    # 12 UTC is reached by the 00 UTC run at step 12 and the 12 UTC run at step 0: the analysis wins
    np.testing.assert_allclose(data.X[2, 0, 0], value(0, 12, 0, 500), rtol=1e-6)
    assert any("repeat a valid time" in m for m in messages)


@pytest.mark.slow
def test_data_info_describes_a_cds_grib_file(tmp_path):
    path = tmp_path / "cds.grib2"
    write_grib(path)
    out = subprocess.run([sys.executable, "-m", "gnnddm", "data", "info", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "layout:     grib" in out.stdout and "4 steps" in out.stdout and "t_850" in out.stdout
    assert sorted(os.listdir(tmp_path)) == ["cds.grib2"]


IMPORT_ORDER = """
import sys
from pathlib import Path
tmp = Path(sys.argv[1])
def read_grib():
    sys.path.insert(0, {tests!r})
    from test_grib import write_grib
    from gnnddm.data.grid import load_grid
    write_grib(tmp / "x.grib2", members=(0,), hours=(0,), steps=(0, 6), levels=(500,))
    assert load_grid(tmp / "x.grib2").num_times == 2
def log_run():
    from gnnddm.training.tracking import Tracker, TrackingConfig
    t = Tracker(TrackingConfig(uri=f"sqlite:///{{tmp}}/mlflow.db"))
    t.start()
    t.log_metrics({{"loss": 1.0}}, step=1)
    t.end("FINISHED")
steps = [read_grib, log_run] if sys.argv[2] == "grib-first" else [log_run, read_grib]
for step in steps:
    step()
print("ok")
"""


@pytest.mark.parametrize("order", ["grib-first", "store-first"])
@pytest.mark.slow
def test_grib_reading_and_the_sqlite_store_work_in_one_process_in_either_order(tmp_path, order):
    script = IMPORT_ORDER.format(tests=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), order], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


ECCODES_FIRST = """
import sys
import eccodes  # noqa: F401 - first, before anything else loads SQLite
import sqlite3
print(sqlite3.sqlite_version, flush=True)  # the SQLite this process got, eccodes' copy or Python's
from gnnddm.training.tracking import Tracker, TrackingConfig
t = Tracker(TrackingConfig(uri=f"sqlite:///{sys.argv[1]}/mlflow.db", experiment="order", required=True))
t.start()
t.log_metrics({"loss": 1.0}, step=1)
t.end("FINISHED")
"""


@pytest.mark.slow
def test_eccodes_loaded_before_gnnddm_gives_a_tracked_run_or_one_error_naming_tracking_uri(tmp_path):
    """Whichever SQLite the installed eccodes bundles: where the process ends up with one older than MLflow's
    minimum, starting the run is the clear error; where it is current, the run is tracked as usual. (The
    error itself is tested with any build by tests/test_tracking.py, with the version monkeypatched.)"""
    from mlflow.tracking import MlflowClient

    from gnnddm.training.tracking import MIN_SQLITE

    out = subprocess.run([sys.executable, "-c", ECCODES_FIRST, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    version = out.stdout.split()[0]
    if tuple(int(x) for x in version.split(".")[:3]) < MIN_SQLITE:
        assert out.returncode != 0
        assert f"ConfigError: tracking.uri=sqlite:///{tmp_path}/mlflow.db: this process loaded SQLite {version}" \
            in out.stderr, out.stderr[-3000:]
        assert "import gnnddm before eccodes" in out.stderr
    else:
        assert out.returncode == 0, out.stderr[-3000:]
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("order").experiment_id])
        assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 1.0}
