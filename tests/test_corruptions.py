"""Property: whatever corruption a small netCDF or CSV file suffers, `gnnddm data info` and a 2-iteration
`train` end in one clear input error (exit 2 on the command line) or a finite run: never an unexpected
exception (a traceback), never a loss of 0 from empty data, never an MLflow run left RUNNING."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from gnnddm.commands.data import main as data_main
from gnnddm.config import compose
from gnnddm.errors import GnnddmError
from gnnddm.training import train

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=5, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STEPS = 16


def netcdf_bytes(path: Path) -> bytes:
    import pandas as pd
    import xarray as xr

    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), (280 + rng.normal(size=(STEPS, 4, 8))).astype(np.float32),
                 {"units": "K"}),
         "msl": (("time", "latitude", "longitude"), (1.01e5 + 100 * rng.normal(size=(STEPS, 4, 8))).astype(np.float32),
                 {"units": "Pa"})},
        coords={"time": pd.date_range("2020-01-01", periods=STEPS, freq="6h"),
                "latitude": [67.5, 22.5, -22.5, -67.5], "longitude": np.arange(8) * 45.0})
    ds.to_netcdf(path, format="NETCDF3_64BIT")
    return path.read_bytes()


def csv_lines() -> list[str]:
    rng = np.random.default_rng(0)
    rows = ["station,time,lat,lon,t2m [K],wind_speed [m s-1]"]
    for t in range(STEPS):
        for s in range(8):
            rows.append(f"S{s},2020-01-{1 + t:02d},{50 + s:.1f},{-10 + 2 * s:.1f},{280 + rng.normal():.2f},"
                        f"{abs(5 + rng.normal()):.2f}")
    return rows


# ------------------------------------------------------------------------------ corruptions
byte_edits = st.lists(st.tuples(st.sampled_from(["truncate", "flip", "zero"]), st.floats(0.0, 1.0),
                                st.integers(1, 64)), min_size=1, max_size=3)


def corrupt_bytes(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, where, size in edits:
        i = int(where * max(len(b) - 1, 0))
        if kind == "truncate":
            b = b[:i]
        elif kind == "flip":
            for j in range(i, min(i + size, len(b))):
                b[j] ^= 0xFF
        else:
            b[i:i + size] = bytes(len(b[i:i + size]))
    return bytes(b)


cell_values = st.sampled_from(["", "abc", "12,5", "n/a", "1e400", "-9999", "nan", "inf", ";", '"'])
csv_edits = st.lists(st.tuples(st.sampled_from(["cell", "drop", "move", "separator", "truncate", "blank_column"]),
                               st.floats(0.0, 1.0), st.integers(0, 5), cell_values), min_size=1, max_size=4)


def corrupt_csv(lines: list[str], edits) -> str:
    lines = list(lines)
    for kind, where, col, value in edits:
        i = 1 + int(where * (len(lines) - 2)) if len(lines) > 1 else 0
        if kind == "cell" and i < len(lines):
            cells = lines[i].split(",")
            cells[col % len(cells)] = value
            lines[i] = ",".join(cells)
        elif kind == "drop" and i < len(lines):
            del lines[i]
        elif kind == "move" and i < len(lines):  # the station of this row is somewhere else
            cells = lines[i].split(",")
            if len(cells) > 3:
                cells[2] = "10.0"
            lines[i] = ",".join(cells)
        elif kind == "separator":
            lines = [line.replace(",", ";") for line in lines]
        elif kind == "truncate":
            lines = lines[:i]
        elif kind == "blank_column":
            lines = [",".join(c if k != 4 + col % 2 or j == 0 else "" for k, c in enumerate(line.split(",")))
                     for j, line in enumerate(lines)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the property
def _no_run_running(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exps = [e.experiment_id for e in client.search_experiments()]
    assert not [r for r in client.search_runs(exps) if r.info.status == "RUNNING"]


def _check(path: Path, tmp_path: Path, train_overrides: list[str], capsys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = data_main(["info", str(path)])  # exceptions other than GnnddmError propagate: the test fails
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gnnddm")]
    assert code in (0, 2)
    if code == 2:  # one line, naming the file
        assert len(ours) == 1 and ours[0].startswith("gnnddm: error: ") and str(path.name) in ours[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = train(compose([*train_overrides, f"data.path={path}", "model.hidden=4", "model.layers=1",
                                     "trainer.max_iterations=2", "trainer.eval_every=1", "trainer.batch_size=2",
                                     "trainer.progress=false", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                                     f"output_dir={tmp_path / 'out'}"]))
    except GnnddmError as exc:  # the command line prints it as one line and exits 2
        assert "\n" not in str(exc).strip()
    else:
        final = summary["final"]
        assert math.isfinite(final["train_loss"]) and final["train_loss"] > 0
        assert math.isfinite(final["val_loss"]) and final["val_loss"] > 0
        assert all(math.isfinite(v) and v > 0 for v in final["val_rmse"].values())
    _no_run_running(tmp_path)


@pytest.mark.slow
@SETTINGS
@given(edits=byte_edits)
def test_corrupted_netcdf_is_an_error_or_a_finite_run(tmp_path_factory, capsys, edits):
    tmp = tmp_path_factory.mktemp("nc")
    clean = netcdf_bytes(tmp / "clean.nc")
    path = tmp / "grid.nc"
    path.write_bytes(corrupt_bytes(clean, edits))
    _check(path, tmp, ["data=era5", "partition.num_parts=1"], capsys)


@pytest.mark.slow
@SETTINGS
@given(edits=csv_edits)
def test_corrupted_csv_is_an_error_or_a_finite_run(tmp_path_factory, capsys, edits):
    tmp = tmp_path_factory.mktemp("csv")
    path = tmp / "obs.csv"
    path.write_text(corrupt_csv(csv_lines(), edits))
    _check(path, tmp, ["+experiment=stations_wind", "data.stations_path=null", "data.variables=null",
                       "data.units=null", "graph.k=3", "trainer.eval_leads=0"], capsys)
