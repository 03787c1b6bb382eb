import numpy as np
import pytest

from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.sphere import haversine


def test_distance_matches_haversine_and_is_symmetric():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-90, 90, 50), rng.uniform(-180, 180, 50)
    e = rng.integers(0, 50, (2, 300))
    attr = edge_features(lat, lon, e, chunk=64)  # several chunks
    assert attr.dtype == np.float32 and attr.shape == (300, len(EDGE_ATTR_NAMES))
    np.testing.assert_allclose(attr[:, 2], haversine(lat[e[0]], lon[e[0]], lat[e[1]], lon[e[1]]), atol=1e-6)
    np.testing.assert_allclose(np.hypot(attr[:, 0], attr[:, 1]), attr[:, 2], rtol=1e-5, atol=1e-7)
    assert np.array_equal(edge_features(lat, lon, e[::-1])[:, 2], attr[:, 2])
    assert np.isfinite(attr).all()


def test_displacement_is_seen_from_the_target():
    lat = np.array([30.0, 30.0, 31.0, 90.0, 90.0])
    lon = np.array([10.0, 11.0, 10.0, 0.0, 90.0])
    # edges: 1 -> 0 (source east of target), 2 -> 0 (north), 0 -> 1 (west), 4 -> 3 (coincident points)
    attr = edge_features(lat, lon, np.array([[1, 2, 0, 4], [0, 0, 1, 3]]))
    east, north, west, same = attr
    assert east[0] > 0 and abs(east[1]) < 0.01 * east[0]
    assert north[1] == pytest.approx(np.deg2rad(1.0), rel=1e-6) and abs(north[0]) < 1e-7
    assert west[0] < 0
    assert np.array_equal(same, np.zeros(3, dtype=np.float32))
