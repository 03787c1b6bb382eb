"""Tiny gallery graphs for the partition tests."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.data.weather_graph import WeatherGraphData, static_position_features
from gnnddm.graph.grid import grid_edges


def grid8_edges(nlat: int, nlon: int) -> np.ndarray:
    """Directed edges of the 8-neighbour lat-lon grid (node = i_lat * nlon + i_lon), periodic in longitude."""
    return grid_edges(nlat, nlon, neighbours=8)


def grid_latlon(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (north first) and longitudes in [-180, 180) of a regular grid, each [N]."""
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = -180.0 + (np.arange(nlon) + 0.5) * 360.0 / nlon
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return la.ravel(), lo.ravel()


def random_graph(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """A random undirected graph with n nodes and about m undirected edges, both directions, no loops."""
    a, b = rng.integers(0, n, size=(2, m))
    keep = a != b
    ei = np.concatenate([np.stack([a[keep], b[keep]]), np.stack([b[keep], a[keep]])], axis=1)
    return np.unique(ei, axis=1)


@pytest.fixture
def grid4x8():
    """The 4 x 8 lat-lon grid: (edge_index, num_nodes, lat, lon)."""
    lat, lon = grid_latlon(4, 8)
    return grid8_edges(4, 8), 32, lat, lon


@pytest.fixture
def gallery():
    """The helpers above, for tests that build their own graphs."""
    from types import SimpleNamespace

    return SimpleNamespace(
        grid8_edges=grid8_edges, grid_latlon=grid_latlon, random_graph=random_graph, make_data=make_data
    )


def make_data(nlat: int = 4, nlon: int = 8, num_times: int = 3, seed: int = 0) -> WeatherGraphData:
    """A small gridded WeatherGraphData carrying its 8-neighbour graph (weights 1, cos-lat areas)."""
    lat, lon = grid_latlon(nlat, nlon)
    n = lat.size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_times, n, 2)).astype(np.float32)
    static, names = static_position_features(lat, lon)
    area = np.cos(np.deg2rad(lat))
    data = WeatherGraphData(
        kind="grid", lat=lat, lon=lon, area=area / area.mean(), X=x, mask=np.ones(x.shape, dtype=bool),
        times=np.arange(num_times).astype("datetime64[h]").astype("datetime64[ns]"),
        variables=("t2m", "msl"), units=("K", "Pa"), static=static, static_names=names,
        grid_shape=(nlat, nlon),
    )
    ei = grid8_edges(nlat, nlon)
    return data.with_graph(ei, np.ones(ei.shape[1], dtype=np.float32))


@pytest.fixture
def tiny_data():
    """The 4 x 8 grid as WeatherGraphData with its graph."""
    return make_data()
