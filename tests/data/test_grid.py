"""Gridded loader: every ERA5 / WeatherBench2 spelling reads into the same WeatherGraphData."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gnnddm.data.coarsen import cell_areas
from gnnddm.data.grid import load_grid
from gnnddm.data.weather_graph import wrap_lon
from gnnddm.errors import ConfigError, DataError

LAT_DESC = np.array([67.5, 22.5, -22.5, -67.5])  # a 4 x 8 grid without poles
LON_360 = np.arange(8) * 45.0
TIMES = pd.date_range("2020-01-01", periods=3, freq="6h").values


def _values(*shape, offset=0.0):
    """Distinct values: the entry's flat index plus ``offset``."""
    return (np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + offset).astype(np.float32)


def _cds_new(members=2):
    """The 2024+ CDS netCDF: valid_time, pressure_level, number, expver (a coordinate along time)."""
    coords = {"valid_time": TIMES, "pressure_level": ("pressure_level", [500.0, 850.0], {"units": "hPa"}),
              "latitude": LAT_DESC, "longitude": LON_360, "number": np.arange(members),
              "expver": ("valid_time", ["0001", "0001", "0005"])}
    dims_pl = ("number", "valid_time", "pressure_level", "latitude", "longitude")
    dims_sfc = ("number", "valid_time", "latitude", "longitude")
    return xr.Dataset({
        "t2m": (dims_sfc, _values(members, 3, 4, 8, offset=280.0), {"units": "K"}),
        "t": (dims_pl, _values(members, 3, 2, 4, 8, offset=200.0), {"units": "K"}),
    }, coords=coords)


def test_cds_layout_members_levels_and_node_order(tmp_path):
    path = tmp_path / "cds.nc"
    ds = _cds_new()
    ds.to_netcdf(path)
    with pytest.warns(UserWarning, match="ensemble members"):
        data = load_grid(path)
    assert data.layout == "cds"
    assert data.variables == ("t2m", "t_500", "t_850")
    assert data.grid_shape == (4, 8) and data.num_nodes == 32 and data.num_times == 3
    assert any("member 0" in w for w in data.warnings)
    # node id = i_lat * nlon + i_lon, values of member 0
    expect = ds["t"].isel(number=0).sel(pressure_level=850.0).values.reshape(3, 32)
    np.testing.assert_array_equal(data.X[:, :, 2], expect)
    assert data.units == ("K", "K", "K")
    # member 1 by request, one level by request (long name with level)
    one = load_grid(path, variables=["temperature_850"], member=1)
    expect = ds["t"].isel(number=1).sel(pressure_level=850.0).values.reshape(3, 32)
    np.testing.assert_array_equal(one.X[:, :, 0], expect)
    assert one.warnings == ()
    with pytest.raises(DataError, match=r"members: \[0, 1\]"):
        load_grid(path, member=7)
    with pytest.raises(DataError, match=r"available: \[500.0, 850.0\]"):
        load_grid(path, levels=[300])


def test_legacy_layout_merges_expver(tmp_path):
    """Old CDS files: time/level names and an expver dimension (ERA5 final vs ERA5T)."""
    final = _values(3, 4, 8, offset=250.0)
    final[2] = np.nan  # the last step only exists in the preliminary release
    prelim = final.copy()
    prelim[:2] = np.nan
    prelim[2] = 123.0
    ds = xr.Dataset({"msl": (("time", "expver", "latitude", "longitude"), np.stack([final, prelim], axis=1),
                             {"units": "Pa"})},
                    coords={"time": TIMES, "expver": [1, 5], "latitude": LAT_DESC, "longitude": LON_360})
    ds.to_netcdf(tmp_path / "legacy.nc")
    data = load_grid(tmp_path / "legacy.nc")
    assert data.layout == "cds-legacy"
    assert data.mask.all()
    np.testing.assert_array_equal(data.X[2, :, 0], 123.0)
    np.testing.assert_array_equal(data.X[:2, :, 0], final[:2].reshape(2, 32))


def _wb2(level_values, level_units, lat_name="latitude", lon_name="longitude"):
    """WeatherBench2 style: long names, time/level, latitude ascending, longitude -180..180."""
    lat = LAT_DESC[::-1]
    lon = LON_360 - 180.0
    return xr.Dataset({
        "2m_temperature": (("time", lat_name, lon_name), _values(3, 4, 8, offset=270.0), {"units": "K"}),
        "temperature": (("time", "level", lat_name, lon_name), _values(3, len(level_values), 4, 8, offset=200.0),
                        {"units": "K"}),
        "geopotential_at_surface": ((lat_name, lon_name), np.full((4, 8), 9806.65), {"units": "m**2 s**-2"}),
    }, coords={"time": TIMES, "level": ("level", level_values, {"units": level_units} if level_units else {}),
               lat_name: lat, lon_name: lon})


@pytest.mark.parametrize("levels,units", [([500.0, 850.0], "hPa"), ([50000.0, 85000.0], "Pa"),
                                          ([50000.0, 85000.0], None)])
@pytest.mark.parametrize("lat_name,lon_name", [("latitude", "longitude"), ("lat", "lon")])
def test_weatherbench2_layout_ascending_lat_and_pa_levels(tmp_path, levels, units, lat_name, lon_name):
    ds = _wb2(levels, units, lat_name, lon_name)
    ds.to_netcdf(tmp_path / "wb2.nc")
    data = load_grid(tmp_path / "wb2.nc", variables=["t2m", "t"], levels=[850])
    assert data.layout == "weatherbench2"
    assert data.variables == ("t2m", "t_850")
    # stored north first whatever the file's order
    assert data.lat[0] == 67.5 and data.lat[-1] == -67.5
    np.testing.assert_array_equal(data.X[:, :, 0], ds["2m_temperature"].values[:, ::-1].reshape(3, 32))
    np.testing.assert_array_equal(data.X[:, :, 1], ds["temperature"].values[:, 1, ::-1].reshape(3, 32))
    assert data.lon.min() >= -180 and data.lon.max() < 180
    np.testing.assert_array_equal(data.lon[:8], LON_360 - 180.0)
    # surface geopotential becomes a static orography feature (1000 m), not a dynamic variable
    k = data.static_names.index("orography_km")
    np.testing.assert_allclose(data.static[:, k], 1.0, rtol=1e-6)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_stores(tmp_path, zarr_format):
    ds = _wb2([500.0, 850.0], "hPa")
    store = tmp_path / f"wb2_v{zarr_format}.zarr"
    ds.to_zarr(store, zarr_format=zarr_format, consolidated=zarr_format == 2)
    data = load_grid(store, variables=["2m_temperature"])
    np.testing.assert_array_equal(data.X[:, :, 0], ds["2m_temperature"].values[:, ::-1].reshape(3, 32))


def test_grib_needs_cfgrib(tmp_path):
    path = tmp_path / "era5.grib"
    path.write_bytes(b"GRIB not really")
    if importlib.util.find_spec("cfgrib") is None:
        with pytest.raises(DataError, match=r"pip install gnnddm\[grib\]"):
            load_grid(path)
    else:  # a file that is not GRIB: one error naming it, whatever cfgrib raises
        with pytest.raises(DataError, match=r"era5.grib: cannot be read"):
            load_grid(path)


def test_real_era5_sample_is_plausible():
    data = load_grid("sample:era5_sample_1deg.nc", variables=["t2m", "msl", "10m_u_component_of_wind"])
    assert data.grid_shape == (181, 360) and data.num_times == 24 and data.mask.all()
    t2m, msl, u10 = (data.X[..., j] for j in range(3))
    assert 180 < t2m.min() and t2m.max() < 340
    assert 9e4 < msl.min() and msl.max() < 1.1e5
    assert np.abs(u10).max() < 60
    # warmer at the equator than at the poles: real data oriented north first
    equator = data.grid_shape[0] // 2
    assert t2m.reshape(24, 181, 360)[:, equator].mean() > t2m.reshape(24, 181, 360)[:, 0].mean() + 20


def test_unknown_variable_lists_both_names(tmp_path):
    _wb2([500.0, 850.0], "hPa").to_netcdf(tmp_path / "wb2.nc")
    with pytest.raises(DataError) as err:
        load_grid(tmp_path / "wb2.nc", variables=["t2m", "relative_humidity"])
    msg = str(err.value)
    assert "relative_humidity" in msg and "wb2.nc" in msg
    assert "t2m (2m_temperature)" in msg and "t_850 (temperature_850)" in msg


def test_time_selection_inclusive_and_empty(tmp_path):
    _wb2([850.0], "hPa").to_netcdf(tmp_path / "wb2.nc")
    data = load_grid(tmp_path / "wb2.nc", time=["2020-01-01T06", "2020-01-01T12"])
    assert list(data.times) == list(TIMES[1:])
    # an end given as a day includes the whole day, as for stations and meshes (gnnddm.data.times)
    assert list(load_grid(tmp_path / "wb2.nc", time=["2020-01-01", "2020-01-01"]).times) == list(TIMES)
    assert list(load_grid(tmp_path / "wb2.nc", time="2020-01-01").times) == list(TIMES)
    with pytest.raises(DataError, match=r"2019-01-01.*2020-01-01T00:00:00 \.\. 2020-01-01T12:00:00 \(3 steps\)"):
        load_grid(tmp_path / "wb2.nc", time=["2019-01-01", "2019-02-01"])


def test_missing_values_are_masked(tmp_path):
    ds = _wb2([850.0], "hPa")
    ds["2m_temperature"][1, 0, 0] = np.nan
    ds.to_netcdf(tmp_path / "wb2.nc")
    data = load_grid(tmp_path / "wb2.nc", variables=["t2m"])
    node = 3 * 8  # file row 0 is the southernmost row, stored last
    assert not data.mask[1, node, 0] and data.X[1, node, 0] == 0.0
    assert data.mask.sum() == data.mask.size - 1


def test_bad_files_raise_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_grid(tmp_path / "nope.nc")
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"\x89HDF\r\n garbage" * 10)
    with pytest.raises(DataError, match="corrupt.nc.*cannot be read"):
        load_grid(corrupt)
    xr.Dataset({"x": (("a", "b"), np.zeros((2, 3)))}).to_netcdf(tmp_path / "nolatlon.nc")
    with pytest.raises(DataError, match="nolatlon.nc.*latitude"):
        load_grid(tmp_path / "nolatlon.nc")


def test_area_weights():
    data = load_grid("sample:era5_sample_1deg.nc", variables=["t2m"], time=["2026-03-25", "2026-03-25"])
    assert data.area.mean() == pytest.approx(1.0)
    assert (data.area > 0).all()
    a = data.area.reshape(181, 360)[:, 0]
    assert a[0] < 0.01 * a[90]  # polar half-cell cap, small but positive
    np.testing.assert_allclose(a, a[::-1])
    np.testing.assert_allclose(a[1:-1] / a[90], np.cos(np.deg2rad(data.lat.reshape(181, 360)[1:-1, 0])),
                               rtol=1e-4)
    assert cell_areas(np.array([10.0])).tolist() == [1.0]


def test_coarsen_keeps_poles_and_means(tmp_path):
    lat = np.linspace(90, -90, 9)  # 22.5 deg with both poles
    lon = np.arange(16) * 22.5
    rng = np.random.default_rng(0)
    field = rng.normal(size=(2, 9, 16)).astype(np.float32)
    xr.Dataset({"t2m": (("time", "latitude", "longitude"), field)},
               coords={"time": TIMES[:2], "latitude": lat, "longitude": lon}).to_netcdf(tmp_path / "g.nc")
    fine = load_grid(tmp_path / "g.nc")
    coarse = load_grid(tmp_path / "g.nc", coarsen=2)
    assert coarse.grid_shape == (5, 8)
    np.testing.assert_array_equal(coarse.lat.reshape(5, 8)[:, 0], [90, 45, 0, -45, -90])
    np.testing.assert_array_equal(coarse.lon[:8], wrap_lon(lon[::2]))
    # area-weighted global mean is preserved (to the accuracy of the coarse cell areas)
    for t in range(2):
        m_fine = np.average(fine.X[t, :, 0], weights=fine.area)
        m_coarse = np.average(coarse.X[t, :, 0], weights=coarse.area)
        assert abs(m_fine - m_coarse) < 0.1 * fine.X[t, :, 0].std()
    # a constant field stays constant, including at the poles
    const = np.full_like(field, 5.0)
    xr.Dataset({"t2m": (("time", "latitude", "longitude"), const)},
               coords={"time": TIMES[:2], "latitude": lat, "longitude": lon}).to_netcdf(tmp_path / "c.nc")
    np.testing.assert_allclose(load_grid(tmp_path / "c.nc", coarsen=4).X, 5.0)
    with pytest.raises(ConfigError, match="valid: \\[1, 2, 4, 8\\]"):
        load_grid(tmp_path / "g.nc", coarsen=3)
    with pytest.raises(ConfigError, match="data.coarsen"):
        load_grid(tmp_path / "g.nc", coarsen=0)


def test_coarsen_without_poles_averages_blocks(tmp_path):
    """WeatherBench-style grid: blocks of k rows (area weighted), centred periodic windows in longitude."""
    ds = _wb2([850.0], "hPa")
    ds.to_netcdf(tmp_path / "wb2.nc")
    coarse = load_grid(tmp_path / "wb2.nc", variables=["t2m"], coarsen=2)
    assert coarse.grid_shape == (2, 4)
    np.testing.assert_allclose(coarse.lat.reshape(2, 4)[:, 0], [45.0, -45.0])
    x = ds["2m_temperature"].values[0, ::-1].astype(np.float64)  # north first
    a = cell_areas(LAT_DESC)[:2]
    w_lon = np.array([0.5, 1.0, 0.5])
    block = x[:2][:, [7, 0, 1]]  # centred on longitude index 0, wrapping around
    expect = (a[:, None] * w_lon[None, :] * block).sum() / (a.sum() * w_lon.sum())
    assert coarse.X[0, 0, 0] == pytest.approx(expect, rel=1e-6)


def test_coarsen_real_sample_preserves_global_mean():
    day = ["2026-03-25", "2026-03-25"]
    data = load_grid("sample:era5_sample_1deg.nc", variables=["t2m"], time=day)
    coarse = load_grid("sample:era5_sample_1deg.nc", variables=["t2m"], time=day, coarsen=4)
    assert coarse.grid_shape == (46, 90)
    assert np.average(coarse.X[0, :, 0], weights=coarse.area) == pytest.approx(
        np.average(data.X[0, :, 0], weights=data.area), abs=0.5)


def _small_grid(path, fmt):
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), _values(3, 4, 8, offset=280.0))},
                    coords={"time": TIMES, "latitude": LAT_DESC, "longitude": LON_360})
    ds.to_netcdf(path, format=fmt)
    return path


def test_empty_file_says_empty_not_a_backend_list(tmp_path):
    path = tmp_path / "empty.nc"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.nc: empty file \(0 bytes\)"):
        load_grid(path)


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT"])
def test_truncated_netcdf3_file_is_named_as_truncated(tmp_path, fmt):
    whole = _small_grid(tmp_path / "whole.nc", fmt)
    assert load_grid(whole).num_times == 3
    cut = tmp_path / "cut.nc"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut.nc: truncated or corrupt netCDF-3 file"):
        load_grid(cut)
