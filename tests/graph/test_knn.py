import numpy as np

from gnnddm.graph.edges import degrees, symmetrise
from gnnddm.graph.knn import knn_edges, radius_edges
from gnnddm.graph.sphere import EARTH_RADIUS_KM, haversine


def stations(n=40, seed=0):
    """Scattered points, including some across the date line and near a pole."""
    rng = np.random.default_rng(seed)
    lat = np.concatenate([rng.uniform(-60, 60, n - 6), [89.0, 88.5, 89.5, 0.0, 1.0, -1.0]])
    lon = np.concatenate([rng.uniform(-180, 180, n - 6), [0.0, 120.0, -120.0, 179.8, -179.9, 179.9]])
    return lat, lon


def brute_force_knn(lat, lon, k):
    d = haversine(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k], d


def test_knn_contains_brute_force_neighbours():
    lat, lon = stations()
    k = 5
    e = knn_edges(lat, lon, k)
    nearest, _ = brute_force_knn(lat, lon, k)
    pairs = set(map(tuple, e.T))
    for i in range(lat.size):
        assert all((int(j), i) in pairs for j in nearest[i])  # j -> i for j among the k nearest of i
    assert (degrees(e, lat.size) == k).all()  # directed: exactly k sources per target
    sym = symmetrise(e, lat.size)
    assert (degrees(sym, lat.size) >= k).all()
    # date-line neighbours are found: 179.8E and 179.9W are 0.3 degrees apart
    assert (lat.size - 2, lat.size - 3) in set(map(tuple, sym.T))


def test_knn_never_links_a_node_to_itself_with_coincident_points():
    lat = np.full(12, 90.0)  # a pole row: 12 copies of the same point
    lon = np.arange(12) * 30.0
    e = knn_edges(lat, lon, 4)
    assert (e[0] != e[1]).all()
    assert (degrees(e, 12) == 4).all()


def test_radius_edges_stay_within_radius_and_respect_the_cap():
    lat, lon = stations()
    radius = 1500.0 / EARTH_RADIUS_KM
    e = radius_edges(lat, lon, radius, max_neighbours=50)
    d = haversine(lat[e[0]], lon[e[0]], lat[e[1]], lon[e[1]])
    assert (d <= radius * (1 + 1e-12)).all()
    assert (e[0] != e[1]).all()
    _, full = brute_force_knn(lat, lon, 1)
    assert e.shape[1] == np.count_nonzero(full <= radius)  # with a loose cap: every pair within radius
    capped = radius_edges(lat, lon, radius, max_neighbours=2)
    assert degrees(capped, lat.size).max() <= 2
