"""Station files from elsewhere: CSV dialects, unreadable cells, conflicting positions, CF standard names."""

from __future__ import annotations

import warnings

import netCDF4
import numpy as np
import pytest

from gnnddm.data.plausibility import DataQualityWarning
from gnnddm.data.stations import load_stations
from gnnddm.errors import ConfigError, DataError

EUROPEAN = """station;date;lat;lon;t2m [degC]
A;2020-01-01;50,5;10,25;12,5
B;2020-01-01;51,0;-5,0;-3,25
A;2020-01-02;50,5;10,25;13,0
B;2020-01-02;51,0;-5,0;-2,5
"""


def _load(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_stations(path, **kw)
    return data, [str(w.message) for w in caught if issubclass(w.category, DataQualityWarning)]


def test_semicolon_separator_and_decimal_comma_are_detected(tmp_path):
    f = tmp_path / "eu.csv"
    f.write_text(EUROPEAN)
    d, messages = _load(f)
    assert d.mask.all() and messages == []
    np.testing.assert_allclose(d.lat, [50.5, 51.0])
    np.testing.assert_allclose(d.lon, [10.25, -5.0])
    np.testing.assert_allclose(d.X[:, :, 0], [[12.5, -3.25], [13.0, -2.5]])


def test_separator_and_decimal_keys_override_the_detection(tmp_path):
    f = tmp_path / "odd.txt"
    f.write_text(EUROPEAN.replace(";", "|"))
    d, _ = _load(f, sep="|", decimal=",")
    np.testing.assert_allclose(d.X[0, :, 0], [12.5, -3.25])
    with pytest.raises(DataError, match="separator and decimal mark"):
        load_stations(f, sep=",", decimal=",")


def test_cells_that_are_not_numbers_are_counted_per_column_with_examples_in_one_warning(tmp_path):
    f = tmp_path / "obs.csv"
    f.write_text("station,time,lat,lon,t2m,rh\nA,2020-01-01,50,10,abc,80\nA,2020-01-02,50,10,12,n/a\n"
                 "A,2020-01-03,50,10,\"12,5\",x\nA,2020-01-04,50,10,13,70\n")
    d, messages = _load(f)
    assert len(messages) == 1
    assert "t2m: 2 ('abc', '12,5')" in messages[0] and "rh: 1 ('x')" in messages[0]
    assert d.mask[:, 0, 0].tolist() == [False, True, False, True]
    assert d.mask[:, 0, 1].tolist() == [True, False, False, True]  # n/a is a missing-value marker


def test_one_station_with_two_positions_in_the_rows_is_an_error_listing_it(tmp_path):
    f = tmp_path / "moving.csv"
    f.write_text("station,time,lat,lon,t2m\nA,2020-01-01,50,10,280\nB,2020-01-01,40,0,281\n"
                 "A,2020-01-02,52,10,282\nB,2020-01-02,40,0,283\n")
    with pytest.raises(DataError, match=r"1 station\(s\) with conflicting coordinates: A .*\(50, 10\), \(52, 10\)"
                       r".*data.position_conflicts=first"):
        load_stations(f)
    d, messages = _load(f, position_conflicts="first")
    np.testing.assert_allclose(d.lat, [50.0, 40.0])
    assert any("several positions (A)" in m for m in messages)


def test_a_station_table_with_one_id_twice_at_different_places_is_an_error(tmp_path):
    (tmp_path / "stations.csv").write_text("code,latitude,longitude\nX1,53.0,-8.0\nX2,54.0,-7.0\nX1,53.5,-8.0\n"
                                           "X2,54.0,-7.0\n")
    f = tmp_path / "speed.csv"
    f.write_text("date,X1,X2\n2001-01-01,4.0,5.0\n2001-01-02,6.0,7.0\n")
    with pytest.raises(DataError, match=r"stations.csv: 1 station\(s\) with conflicting coordinates: X1"):
        load_stations(f)  # X2 is listed twice at the same place: no conflict
    d, _ = _load(f, position_conflicts="first")
    np.testing.assert_allclose(d.lat, [53.0, 54.0])


def test_unknown_conflict_policy_names_the_key(tmp_path):
    f = tmp_path / "eu.csv"
    f.write_text(EUROPEAN)
    with pytest.raises(ConfigError, match="data.position_conflicts"):
        load_stations(f, position_conflicts="last")


def test_empty_csv_says_empty(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        load_stations(f)


def test_plausibility_knows_variables_by_cf_standard_name(tmp_path):
    f = tmp_path / "dir.nc"
    with netCDF4.Dataset(f, "w") as nc:
        nc.featureType = "timeSeries"
        nc.createDimension("station", 2)
        nc.createDimension("time", 3)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t[:] = "hours since 2020-01-01", [0, 1, 2]
        for name, vals in (("lat", [50.0, 51.0]), ("lon", [0.0, 1.0])):
            nc.createVariable(name, "f8", ("station",))[:] = vals
        v = nc.createVariable("dirn", "f8", ("station", "time"))  # a name the checks do not know
        v.standard_name, v.units = "wind_from_direction", "degree"
        v[:] = [[10.0, 650.0, 90.0], [-70.0, 180.0, 359.0]]
    d, messages = _load(f)
    assert d.mask[:, :, 0].T.tolist() == [[True, False, True], [False, True, True]]
    assert any("masked 2 impossible values (dirn: 2)" in m for m in messages)
