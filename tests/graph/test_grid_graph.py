import numpy as np
import pytest

from gnnddm.graph.edges import degrees, is_symmetric
from gnnddm.graph.grid import geometry_latitudes, grid_edges, is_periodic, pole_rows


@pytest.mark.parametrize("neighbours", [4, 8])
def test_interior_degree_and_symmetry(neighbours):
    nlat, nlon = 5, 8
    e = grid_edges(nlat, nlon, neighbours)
    deg = degrees(e, nlat * nlon).reshape(nlat, nlon)
    assert (deg[1:-1] == neighbours).all()
    assert (deg[[0, -1]] == (3 if neighbours == 4 else 5)).all()  # clipped at the first/last row
    assert is_symmetric(e, nlat * nlon)
    assert (e[0] != e[1]).all()
    keys = e[1] * nlat * nlon + e[0]
    assert np.all(np.diff(keys) > 0)  # canonical order, hence no duplicates


def test_longitude_wraps_around_on_global_grids_only():
    nlat, nlon = 4, 8
    pairs = set(map(tuple, grid_edges(nlat, nlon, 4, periodic=True).T))
    # node (1, 0) and node (1, nlon - 1) are east-west neighbours through the wrap
    assert (1 * nlon + nlon - 1, 1 * nlon) in pairs and (1 * nlon, 1 * nlon + nlon - 1) in pairs
    regional = set(map(tuple, grid_edges(nlat, nlon, 4, periodic=False).T))
    assert (1 * nlon + nlon - 1, 1 * nlon) not in regional
    assert degrees(np.array(list(regional)).T, nlat * nlon).reshape(nlat, nlon)[1, 0] == 3


def test_narrow_grids_have_no_duplicates_or_self_loops():
    for nlon in (1, 2):
        e = grid_edges(3, nlon, 8)
        assert (e[0] != e[1]).all()
        assert len(set(map(tuple, e.T))) == e.shape[1]


def test_is_periodic():
    assert is_periodic(np.arange(360.0))
    assert is_periodic((np.arange(1440) * 0.25 + 180.0) % 360.0 - 180.0)  # wrapped to [-180, 180)
    assert not is_periodic(np.arange(0.0, 30.0, 1.0))  # regional
    assert not is_periodic(np.arange(0.0, 359.0, 1.0))  # one column missing


def test_pole_rows_are_moved_for_ring_geometry():
    lat = np.repeat([90.0, 45.0, 0.0, -45.0, -90.0], 8)
    lon = np.tile(np.arange(8) * 45.0, 5)
    assert pole_rows(lat, (5, 8)) == [0, 4]
    g = geometry_latitudes(lat, lon, (5, 8))
    assert np.allclose(g[:8], 67.5) and np.allclose(g[-8:], -67.5)
    assert np.array_equal(g[8:-8], lat[8:-8])
    assert pole_rows(np.repeat([88.6, 0.0, -88.6], 8), (3, 8)) == []
