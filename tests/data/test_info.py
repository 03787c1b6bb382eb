"""``gnnddm data info`` and ``gnnddm data synth``."""

import numpy as np
import xarray as xr

from gnnddm.commands.data import main
from gnnddm.data.info import detect_kind


def test_info_on_real_sample(capsys):
    assert main(["info", "sample:era5_sample_1deg.nc"]) == 0
    out = capsys.readouterr().out
    assert "kind:       grid" in out and "layout:     cds-legacy" in out
    assert "65160 (grid 181 x 360" in out
    assert "24 steps, 2026-03-25T00:00:00 .. 2026-03-31T23:00:00" in out and "irregular" in out
    t2m = next(line for line in out.splitlines() if line.strip().startswith("t2m"))
    assert "K" in t2m and "2m_temperature" in t2m and "0.00%" in t2m
    assert "mean_sea_level_pressure" in out


def test_info_verbose_prints_statistics(capsys):
    assert main(["info", "sample:era5_sample_1deg.nc", "--verbose"]) == 0
    t2m = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("t2m"))
    assert "min" in t2m and "max" in t2m


def test_info_missing_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope.nc"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gnnddm: error:") and "nope.nc" in err and "Traceback" not in err
    assert main(["info", str(missing), "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_synth_then_info(tmp_path, capsys):
    out_file = tmp_path / "synth.nc"
    assert main(["synth", "--resolution", "11.25", "--steps", "3", "--seed", "2", "--dt-hours", "3",
                 "--output", str(out_file)]) == 0
    assert "16 x 32" in capsys.readouterr().out and out_file.exists()
    assert main(["info", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "512 (grid 16 x 32" in out and "3 steps" in out and "every 3 h" in out
    assert "layout:     synthetic" in out
    assert main(["synth", "--resolution", "0.7", "--steps", "3", "--output", str(tmp_path / "bad.nc")]) == 2
    assert "must divide 180" in capsys.readouterr().err


def test_detect_kind(tmp_path):
    (tmp_path / "st.csv").write_text("station,lat,lon\nA,53,-6\n")
    assert detect_kind(tmp_path / "st.csv") == "stations"
    mesh = xr.Dataset({"S": (("time", "ncells"), np.zeros((1, 5)))},
                      coords={"clat": ("ncells", np.zeros(5)), "clon": ("ncells", np.zeros(5))})
    mesh.to_netcdf(tmp_path / "mesh.nc")
    assert detect_kind(tmp_path / "mesh.nc") == "mesh"
    ts = xr.Dataset({"ws": (("station", "time"), np.zeros((2, 3)))},
                    coords={"lat": ("station", [1.0, 2.0]), "lon": ("station", [1.0, 2.0])},
                    attrs={"featureType": "timeSeries"})
    ts.to_netcdf(tmp_path / "ts.nc")
    assert detect_kind(tmp_path / "ts.nc") == "stations"
    grid = xr.Dataset({"t2m": (("lat", "lon"), np.zeros((2, 3)))}, coords={"lat": [1.0, 0.0], "lon": [0, 1, 2]})
    grid.to_netcdf(tmp_path / "grid.nc")
    assert detect_kind(tmp_path / "grid.nc") == "grid"
