"""Station loaders: long and wide CSV, CF timeSeries netCDF, plausibility checks, errors, the Irish file."""

import warnings

import netCDF4
import numpy as np
import pytest

from gnnddm.data.plausibility import DataQualityWarning, check_values
from gnnddm.data.stations import load_stations
from gnnddm.errors import DataError

LONG_CSV = """station,time,lat,lon,t2m [K],d2m [K]
A,2020-01-01T00:00,50.0,10.0,280.0,275.0
B,2020-01-01T00:00,51.0,-5.0,281.0,
A,2020-01-01T06:00,50.0,10.0,282.0,276.0
C,2020-01-01T06:00,-30.0,150.0,300.0,290.0
B,2020-01-01T06:00,51.0,-5.0,283.0,277.0
"""


def test_long_csv_pivots_rows_and_masks_missing_entries(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text(LONG_CSV)
    d = load_stations(f)
    assert d.kind == "stations" and d.layout == "stations-long-csv"
    assert d.variables == ("t2m", "d2m") and d.units == ("K", "K")
    assert d.times.tolist() == list(np.array(["2020-01-01T00", "2020-01-01T06"], "datetime64[ns]").astype(int))
    np.testing.assert_allclose(d.lat, [50.0, 51.0, -30.0])
    np.testing.assert_allclose(d.lon, [10.0, -5.0, 150.0])
    assert (d.area == 1).all()
    # B has no d2m at 00 (empty cell); C has no row at 00
    assert not d.mask[0, 1, 1] and d.mask[0, 1, 0]
    assert not d.mask[0, 2].any() and d.mask[1].all()
    assert d.X[0, 2].tolist() == [0.0, 0.0]
    assert d.X[1, 1].tolist() == [283.0, 277.0]
    assert d.warnings == ()
    assert d.node_ids == ("A", "B", "C")


def test_long_csv_takes_positions_and_elevation_from_station_table(tmp_path):
    (tmp_path / "stations.csv").write_text("id,latitude,longitude,elevation\nA,50,10,1000\nB,51,-5,0\n")
    f = tmp_path / "obs.csv"
    f.write_text("id,date,wind_speed\nA,2020-01-01,3.0\nB,2020-01-01,4.0\nA,2020-01-02,5.0\n")
    d = load_stations(f, time=["2020-01-02", None])
    np.testing.assert_allclose(d.lat, [50.0, 51.0])
    assert d.static_names[-1] == "elevation_km"
    np.testing.assert_allclose(d.static[:, -1], [1.0, 0.0])
    assert d.num_times == 1 and d.mask[0].tolist() == [[True], [False]]


def test_wide_csv_with_station_table(tmp_path):
    (tmp_path / "stations.csv").write_text("code,name,latitude,longitude\nX1,One,53.0,-8.0\nX2,Two,54.0,-7.0\n")
    f = tmp_path / "speed_kt.csv"
    f.write_text("year,month,day,X2,X1\n2001,1,2,5.0,6.0\n2001,1,1,,4.0\n")
    d = load_stations(f)
    assert d.layout == "stations-wide-csv"
    assert d.variables == ("wind_speed",) and d.units == ("knots",)  # unit guessed from the file name
    np.testing.assert_allclose(d.lat, [54.0, 53.0])  # column order of the data file
    assert str(d.times[0])[:10] == "2001-01-01"  # rows sorted by time
    assert d.mask[:, :, 0].tolist() == [[False, True], [True, True]]
    assert d.X[1, :, 0].tolist() == [5.0, 6.0]


def test_wide_csv_station_missing_from_table_is_dropped_with_one_warning(tmp_path):
    (tmp_path / "stations.csv").write_text("code,latitude,longitude\nX1,53.0,-8.0\n")
    f = tmp_path / "w.csv"
    f.write_text("date,X1,ZZ\n2001-01-01,4.0,5.0\n")
    with pytest.warns(DataQualityWarning, match=r"dropped 1 station with invalid coordinates \(ZZ\)"):
        d = load_stations(f, variables=["ws"], units="m s-1")
    assert d.num_nodes == 1 and d.variables == ("ws",)


def _write_cf(path, station_first=True):
    """CF timeSeries: 4 stations x 3 times; station D has no position (NaN lon); t2m has a fill value and 1
    impossible value, d2m one 9999."""
    codes = ["AAA", "BBB", "CCC", "DDD"]
    t2m = np.array([[280.0, 281.0, -9999.0], [290.0, 500.0, 291.0], [270.0, 271.0, 272.0], [1.0, 2.0, 3.0]])
    d2m = np.array([[270.0, 271.0, 272.0], [9999.0, 280.0, 281.0], [260.0, 261.0, 262.0], [1.0, 2.0, 3.0]])
    with netCDF4.Dataset(path, "w") as ds:
        ds.featureType = "timeSeries"
        ds.createDimension("station", 4)
        ds.createDimension("time", 3)
        ds.createDimension("name_strlen", 3)
        sid = ds.createVariable("station_id", "S1", ("station", "name_strlen"))
        sid.cf_role = "timeseries_id"
        sid[:] = netCDF4.stringtochar(np.array(codes, dtype="S3"))
        for name, vals in (("lat", [50.0, 51.0, 52.0, 53.0]), ("lon", [0.0, 1.0, 2.0, np.nan]),
                           ("alt", [10.0, 20.0, 30.0, 40.0])):
            v = ds.createVariable(name, "f8", ("station",))
            v[:] = vals
        ds["lat"].standard_name = "latitude"
        ds["lon"].standard_name = "longitude"
        ds["alt"].standard_name = "surface_altitude"
        tv = ds.createVariable("time", "f8", ("time",))
        tv.units = "hours since 2020-01-01 00:00"
        tv[:] = [0, 6, 12]
        dims = ("station", "time") if station_first else ("time", "station")
        for name, vals in (("t2m", t2m), ("d2m", d2m)):
            v = ds.createVariable(name, "f4", dims, fill_value=-9999.0)
            v.units = "K"
            v.coordinates = "time lat lon alt station_id"
            v[:] = vals if station_first else vals.T


@pytest.mark.parametrize("station_first", [True, False])
def test_cf_timeseries_masks_fill_and_impossible_values_and_drops_a_station_without_position(tmp_path, station_first):
    f = tmp_path / "obs.nc"
    _write_cf(f, station_first)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = load_stations(f)
    quality = [w for w in caught if issubclass(w.category, DataQualityWarning)]
    assert len(quality) == 1
    msg = str(quality[0].message)
    assert msg == ("obs.nc: masked 2 impossible values (t2m: 1, d2m: 1); "
                   "dropped 1 station with invalid coordinates (DDD)")
    assert d.warnings == (msg,)
    assert d.layout == "cf-timeseries" and d.num_nodes == 3 and d.num_times == 3
    assert d.node_ids == ("AAA", "BBB", "CCC")  # the file's codes of the stations kept
    assert str(d.times[1])[:16] == "2020-01-01T06:00"
    np.testing.assert_allclose(d.lon, [0.0, 1.0, 2.0])
    assert d.static_names[-1] == "elevation_km"
    t2m, d2m = d.mask[..., 0], d.mask[..., 1]
    assert not t2m[2, 0]  # _FillValue
    assert not t2m[1, 1]  # 500 K
    assert not d2m[0, 1]  # 9999 K
    assert t2m.sum() == 7 and d2m.sum() == 8
    assert (d.X[~d.mask] == 0).all()
    assert d.X[0, 0, 0] == pytest.approx(280.0)


def test_plausibility_converts_thresholds_to_the_file_units():
    x = np.array([[[150.0], [250.0], [-1.0], [50.0]]])
    m = np.ones_like(x, dtype=bool)
    kt, n_kt = check_values(x, m, ["wind_speed"], ["knots"])  # 120 m/s = 233 kt
    ms, n_ms = check_values(x, m, ["wind_speed"], ["m s-1"])
    assert kt[0, :, 0].tolist() == [True, False, False, True] and n_kt.tolist() == [2]
    assert ms[0, :, 0].tolist() == [False, False, False, True] and n_ms.tolist() == [3]
    t = np.array([[[300.0, 950.0, 20.0], [20.0, 50000.0, 120.0]]])
    ok, n = check_values(t, np.ones_like(t, dtype=bool), ["t2m", "msl", "rh"], ["degC", "hPa", "%"])
    assert ok[0].tolist() == [[False, True, True], [True, False, False]] and n.tolist() == [1, 1, 1]
    k = np.array([[[300.0, 101325.0], [20.0, 50000.0]]])
    ok, _ = check_values(k, np.ones_like(k, dtype=bool), ["t2m", "msl"], ["K", "Pa"])
    assert ok[0].tolist() == [[True, True], [False, False]]


def test_irish_wind_file():
    d = load_stations("sample:irish_wind/wind_daily_knots.csv", variables=["wind_speed"], units="knots")
    assert d.num_nodes == 12 and d.num_times == 6574
    assert str(d.times[0])[:10] == "1961-01-01" and str(d.times[-1])[:10] == "1978-12-31"
    assert 51.0 < d.lat.min() and d.lat.max() < 55.5
    assert -10.5 < d.lon.min() and d.lon.max() < -6.0
    assert d.mask.all() and d.warnings == ()
    assert d.units == ("knots",)
    jan = load_stations("sample:irish_wind/wind_daily_knots.csv", time="1961-01")
    assert jan.num_times == 31


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load_stations(tmp_path / "nope.csv")


def test_corrupt_netcdf_is_named(tmp_path):
    f = tmp_path / "broken.nc"
    f.write_bytes(b"CDF\x01garbage")
    with pytest.raises(DataError, match="broken.nc"):
        load_stations(f)


def test_unknown_variable_lists_available(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text(LONG_CSV)
    with pytest.raises(DataError, match=r"unknown variable.*'tp'.*available: \['t2m', 'd2m'\]"):
        load_stations(f, variables=["tp"])


def test_empty_time_selection_names_the_covered_range(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text(LONG_CSV)
    with pytest.raises(DataError, match="selects no time step.*2020-01-01T00:00:00 .. 2020-01-01T06:00:00"):
        load_stations(f, time=["2021-01-01", "2021-12-31"])


def test_wide_table_without_station_table_says_what_is_needed(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("date,X1\n2001-01-01,4.0\n")
    with pytest.raises(DataError, match="stations_path"):
        load_stations(f)
