"""The partition tests' graphs, from :mod:`gnnddm.testing.gallery`."""

from __future__ import annotations

import pytest

from gnnddm.testing.gallery import grid_data, grid_edge_index, latlon


@pytest.fixture
def grid4x8():
    """The 4 x 8 lat-lon grid: (8-neighbour edge_index, num_nodes, lat, lon)."""
    lat, lon = latlon(4, 8)
    return grid_edge_index(4, 8, neighbours=8), 32, lat, lon


@pytest.fixture
def tiny_data():
    """The 4 x 8 grid as WeatherGraphData with its 8-neighbour graph, 3 times, nothing missing."""
    return grid_data(4, 8, neighbours=8, times=3)
