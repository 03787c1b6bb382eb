"""One rule for time selections: loaders (grid, mesh, stations) and date-range splits agree."""

import numpy as np
import pytest

from gnnddm.data.normalise import split_times
from gnnddm.data.times import time_index, time_mask
from gnnddm.errors import ConfigError, DataError

TIMES = np.arange("2020-01-30T00", "2020-02-02T00", np.timedelta64(6, "h"), dtype="datetime64[ns]")


def _days(idx):
    return [str(TIMES[i])[:13] for i in idx]


def test_an_end_given_as_a_day_includes_that_whole_day():
    idx = time_index(TIMES, ["2020-01-31", "2020-01-31"], "f.nc")
    assert _days(idx) == ["2020-01-31T00", "2020-01-31T06", "2020-01-31T12", "2020-01-31T18"]


def test_an_end_with_a_time_of_day_is_exact_and_either_end_may_be_open():
    assert _days(time_index(TIMES, ["2020-01-31T06", "2020-01-31T12"], "f.nc")) == ["2020-01-31T06",
                                                                                      "2020-01-31T12"]
    assert len(time_index(TIMES, [None, "2020-01-30"], "f.nc")) == 4
    assert len(time_index(TIMES, ["2020-02-01", None], "f.nc")) == 4
    assert time_mask(TIMES, None).all()


def test_one_period_selects_the_whole_year_month_or_day():
    assert len(time_index(TIMES, "2020-01", "f.nc")) == 8
    assert len(time_index(TIMES, "2020", "f.nc")) == len(TIMES)
    assert _days(time_index(TIMES, "2020-02-01", "f.nc"))[-1] == "2020-02-01T18"


def test_bad_and_empty_selections_name_the_key_and_the_file():
    with pytest.raises(ConfigError, match=r"data\.time: expected null, \[start, end\]"):
        time_mask(TIMES, ["not a date", None])
    with pytest.raises(DataError, match=r"f\.nc: data\.time=\[2019-01-01, 2019-02-01\] selects no time step; "
                                        r"the file covers 2020-01-30T00:00:00 \.\. 2020-02-01T18:00:00 \(12 steps\)"):
        time_index(TIMES, ["2019-01-01", "2019-02-01"], "f.nc")


def test_date_range_splits_follow_the_same_rule():
    split = split_times(TIMES, train=["2020-01-30", "2020-01-31"], val=["2020-02-01", "2020-02-01"])
    assert len(split.train) == 8 and len(split.val) == 4 and len(split.test) == 0
    with pytest.raises(ConfigError, match=r"data\.split\.val: expected"):
        split_times(TIMES, train=["2020-01-30", "2020-01-31"], val=["soon", None])
