"""Synthetic reanalysis: grid conventions, determinism, round trip through the grid loader, learnability."""

import numpy as np
import pytest

from gnnddm.data import synthetic
from gnnddm.data.synthetic import generate, grid_coords, load_synthetic, write
from gnnddm.errors import ConfigError


def test_grid_conventions():
    lat, lon = grid_coords(5.625)  # WeatherBench: 32 x 64, no poles
    assert (lat.size, lon.size) == (32, 64)
    assert lat[0] == pytest.approx(87.1875) and lat[-1] == pytest.approx(-87.1875)
    assert np.all(np.diff(lat) < 0) and lon[0] == 0 and lon[-1] == pytest.approx(354.375)
    lat, lon = grid_coords(0.25)  # ERA5: 721 x 1440 with both poles
    assert (lat.size, lon.size) == (721, 1440) and lat.size * lon.size == 1_038_240
    assert lat[0] == 90.0 and lat[-1] == -90.0 and lat[360] == 0.0
    assert grid_coords(1.0)[0].size == 181
    with pytest.raises(ConfigError, match="must divide 180"):
        grid_coords(0.7)


def test_deterministic_and_seeded():
    a = generate(resolution=5.625, steps=6, seed=3)
    b = generate(resolution=5.625, steps=6, seed=3, chunk_time=4)  # chunking does not change values
    c = generate(resolution=5.625, steps=6, seed=4)
    assert dict(a.sizes) == {"time": 6, "latitude": 32, "longitude": 64}
    for v in ("t2m", "msl", "u10", "v10"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
        assert not np.allclose(a[v].values, c[v].values)
    assert a["t2m"].dtype == np.float32 and a["msl"].attrs["units"] == "Pa"
    assert (np.diff(a["time"].values) == np.timedelta64(6, "h")).all()
    # a variable subset has exactly the values of the full set
    t_only = generate(resolution=5.625, steps=6, seed=3, variables=["t2m"])
    np.testing.assert_array_equal(t_only["t2m"].values, a["t2m"].values)


def test_plausible_ranges():
    ds = generate(resolution=5.625, steps=40)
    assert 220 < ds.t2m.min() and ds.t2m.max() < 330
    assert 9.5e4 < ds.msl.min() and ds.msl.max() < 1.07e5
    assert float(np.abs(ds.u10).max()) < 40 and float(np.abs(ds.v10).max()) < 40
    tropics = ds.t2m.sel(latitude=slice(10, -10)).mean()
    polar = ds.t2m.sel(latitude=slice(90, 70)).mean()
    assert tropics > polar + 25


def test_write_round_trip_through_grid_loader(tmp_path):
    from gnnddm.data.grid import load_grid

    path = write(tmp_path / "s.nc", resolution=11.25, steps=5, seed=1, chunk_time=2)
    assert [p.name for p in tmp_path.iterdir()] == ["s.nc"]  # no temporary file left behind
    ds = generate(resolution=11.25, steps=5, seed=1)
    data = load_grid(path)
    assert data.grid_shape == (16, 32) and data.variables == ("t2m", "msl", "u10", "v10")
    np.testing.assert_array_equal(data.X[:, :, 1], ds["msl"].values.reshape(5, -1))
    np.testing.assert_array_equal(data.times, ds["time"].values)


def test_load_synthetic_caches_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("GNNDDM_CACHE", str(tmp_path))
    data = load_synthetic(resolution=11.25, steps=4, seed=0, coarsen=2)
    files = sorted((tmp_path / "synthetic").iterdir())
    assert len(files) == 1 and data.grid_shape == (8, 16) and data.layout == "synthetic"
    mtime = files[0].stat().st_mtime_ns
    again = load_synthetic(resolution=11.25, steps=4, seed=0, coarsen=2)
    assert files[0].stat().st_mtime_ns == mtime  # reused, not regenerated
    np.testing.assert_array_equal(again.X, data.X)
    load_synthetic(resolution=11.25, steps=4, seed=1)
    assert len(list((tmp_path / "synthetic").iterdir())) == 2
    with pytest.raises(ConfigError, match="data.sead: not a key of gnnddm.data.synthetic.load_synthetic"):
        load_synthetic(resolution=11.25, steps=4, sead=1)
    with pytest.raises(ConfigError, match="data.variables"):
        load_synthetic(resolution=11.25, steps=4, variables=["tp"])


def test_forecasting_is_learnable():
    """Next states are predictable from the current one, and the predictable part is advection.

    * persistence error of msl is far below its climatological (temporal) spread;
    * 1-step tendencies are spatially coherent (white noise would give ~0 neighbour correlation);
    * a per-latitude linear regression on the 5 zonal neighbours (which can learn the jet's shift)
      beats persistence clearly on held-out times.
    """
    ds = generate(resolution=5.625, steps=160, seed=0)
    x = ds["msl"].values.astype(np.float64)[20:]  # skip the spin-up
    pers = np.sqrt(np.mean((x[1:] - x[:-1]) ** 2))
    clim = np.sqrt(np.mean((x - x.mean(axis=0)) ** 2))
    assert pers < 0.35 * clim

    tend = x[1:] - x[:-1]
    coherence = np.corrcoef(tend.ravel(), np.roll(tend, 1, axis=2).ravel())[0, 1]
    assert coherence > 0.5

    train, test = slice(0, 90), slice(90, None)
    err_reg, err_pers = 0.0, 0.0
    for row in range(x.shape[1]):
        r = x[:, row]  # [T, nlon]
        feats = np.stack([np.roll(r, s, axis=1) for s in (-2, -1, 0, 1, 2)], axis=-1)[:-1]
        feats = np.concatenate([feats, np.ones(feats.shape[:2] + (1,))], axis=-1)
        target = r[1:]
        coef, *_ = np.linalg.lstsq(feats[train].reshape(-1, 6), target[train].ravel(), rcond=None)
        err_reg += np.sum((feats[test].reshape(-1, 6) @ coef - target[test].ravel()) ** 2)
        err_pers += np.sum((r[:-1][test] - target[test]) ** 2)
    assert np.sqrt(err_reg) < 0.7 * np.sqrt(err_pers)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="data.steps"):
        generate(steps=0)
    with pytest.raises(ConfigError, match="data.dt_hours"):
        generate(steps=2, dt_hours=-1)
    assert synthetic.GENERATOR_VERSION >= 1
