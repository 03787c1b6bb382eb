"""Time splits and normalisation: contiguous splits, and statistics from valid training entries only."""

import numpy as np
import pytest

from gnnddm.data.normalise import normalise, split_times
from gnnddm.data.weather_graph import WeatherGraphData, static_position_features
from gnnddm.errors import ConfigError

DAYS = np.arange("2000-01-01", "2000-04-10", dtype="datetime64[D]").astype("datetime64[ns]")  # 100 days


def _stations(T=20, N=6, V=2, seed=0):
    """A 6-station gallery problem with random fields (~N(280, 5) and ~N(3, 2)) and a few missing entries."""
    rng = np.random.default_rng(seed)
    lat, lon = np.linspace(40, 60, N), np.linspace(-10, 10, N)
    X = np.stack([rng.normal(280, 5, (T, N)), rng.normal(3, 2, (T, N))], axis=-1)[..., :V].astype(np.float32)
    mask = rng.random((T, N, V)) > 0.1
    X[~mask] = 0.0
    static, names = static_position_features(lat, lon)
    return WeatherGraphData(
        kind="stations", lat=lat, lon=lon, area=np.ones(N), X=X, mask=mask, times=DAYS[:T],
        variables=("t2m", "wind_speed")[:V], units=("K", "m s-1")[:V], static=static, static_names=names,
    )


def test_fraction_split_is_contiguous_disjoint_and_ordered():
    s = split_times(DAYS, train=0.7, val=0.15, test=0.15)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 15, 15)
    assert np.array_equal(np.concatenate([s.train, s.val, s.test]), np.arange(100))
    assert DAYS[s.train[-1]] < DAYS[s.val[0]] and DAYS[s.val[-1]] < DAYS[s.test[0]]


def test_test_fraction_defaults_to_the_rest():
    s = split_times(DAYS, train=0.6, val=0.1)
    assert (len(s.train), len(s.val), len(s.test)) == (60, 10, 30)


def test_date_range_split_is_inclusive():
    s = split_times(DAYS, train=["2000-01-01", "2000-01-31"], val=["2000-02-01", "2000-02-29"],
                    test=["2000-03-01", "2000-04-30"])
    assert (len(s.train), len(s.val), len(s.test)) == (31, 29, 40)
    assert str(DAYS[s.train[-1]])[:10] == "2000-01-31" and str(DAYS[s.test[0]])[:10] == "2000-03-01"


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"train": 0.8, "val": 0.3}, "sum to at most 1"),
        ({"train": ["1990-01-01", "1990-12-31"], "val": None}, "selects no time step.*2000-01-01"),
        ({"train": 0.7, "val": ["2000-02-01", "2000-02-10"]}, "as fractions or all as"),
    ],
)
def test_bad_splits_name_the_key(kw, match):
    with pytest.raises(ConfigError, match=f"data.split.*{match}"):
        split_times(DAYS, **kw)


def test_normalise_uses_valid_training_entries_only():
    d = _stations()
    train = np.arange(12)
    n = normalise(d, train)
    x, m = d.X[train].astype(np.float64), d.mask[train]
    for v in range(d.num_vars):
        valid = x[..., v][m[..., v]]
        assert n.mean[v] == pytest.approx(valid.mean(), rel=1e-6)
        assert n.std[v] == pytest.approx(valid.std(), rel=1e-6)
    # changing val/test values and invalid training entries leaves the statistics unchanged
    X2 = d.X.copy()
    X2[12:] += 1000.0
    X2[:12][~d.mask[:12]] = -5.0e4
    n2 = normalise(d.replace(X=X2), train)
    np.testing.assert_array_equal(n2.mean, n.mean)
    np.testing.assert_array_equal(n2.std, n.std)
    # the training block is standardised, invalid entries stay 0, physical values come back
    z = n.X[train][m]
    assert abs(z.mean()) < 1e-5
    assert (n.X[~d.mask] == 0).all()
    np.testing.assert_allclose(n.to_physical(n.X)[d.mask], d.X[d.mask], rtol=1e-5)
    assert n.normalised and not d.normalised
