from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gnnddm.data.weather_graph import wrap_lon
from gnnddm.errors import ConfigError, DataError
from gnnddm.graph.build import grid_graph, knn_graph, mesh_graph, radius_graph
from gnnddm.graph.edges import degrees, is_symmetric
from gnnddm.graph.features import EDGE_ATTR_NAMES
from gnnddm.graph.sphere import EARTH_RADIUS_KM, haversine
from gnnddm.testing.gallery import weather_data

CONF = Path(__file__).resolve().parents[2] / "conf" / "graph"


def bare_grid(nlat=5, nlon=8, with_poles=True, T=8, V=2, seed=0):
    """A global ``nlat x nlon`` grid without a graph (what a builder takes), rows from pole to pole (all nodes
    of a pole row at one point) or from 60 N to 60 S; fields from :func:`gnnddm.testing.gallery.weather_data`."""
    lats = np.linspace(90, -90, nlat) if with_poles else np.linspace(60, -60, nlat)
    lat, lon = np.repeat(lats, nlon), wrap_lon(np.tile(np.arange(nlon) * 360.0 / nlon, nlat))
    return weather_data(lat, lon, grid_shape=(nlat, nlon), area=np.ones(lat.size), times=T, variables=V, seed=seed)


def bare_stations(n=30):
    """``n`` stations over 40-60 N, 15 W-15 E without a graph."""
    rng = np.random.default_rng(3)
    lat, lon = rng.uniform(40, 60, n), wrap_lon(rng.uniform(-15, 15, n))
    return weather_data(lat, lon, kind="stations", area=np.ones(n), times=8, variables=2)


def check_graph(g, symmetric=True, self_loops=False):
    """The contract every builder fulfils."""
    n = g.num_nodes
    e, w, a = g.edge_index, g.edge_weight, g.edge_attr
    assert e.dtype == np.int64 and e.shape[0] == 2
    assert w.dtype == np.float32 and w.shape == (e.shape[1],)
    assert a.dtype == np.float32 and a.shape == (e.shape[1], 3) and g.edge_attr_names == EDGE_ATTR_NAMES
    assert np.isfinite(w).all() and (w > 0).all() and np.isfinite(a).all()
    keys = e[1] * n + e[0]
    assert np.all(np.diff(keys) > 0)  # sorted by target then source: no duplicates
    loops = e[0] == e[1]
    assert loops.sum() == (n if self_loops else 0)
    if symmetric:
        assert is_symmetric(e, n, w)


@pytest.mark.parametrize("neighbours", [4, 8])
@pytest.mark.parametrize("with_poles", [True, False])
def test_grid_graph_contract(neighbours, with_poles):
    g = grid_graph(bare_grid(with_poles=with_poles), neighbours=neighbours)
    check_graph(g)
    deg = degrees(g.edge_index, g.num_nodes).reshape(5, 8)
    assert (deg[1:-1] == neighbours).all()
    assert g.edge_attr[:, 2].min() > 0  # no zero-length edges, not even among pole points


def test_grid_graph_wraps_longitude_and_orients_features():
    g = grid_graph(bare_grid(), neighbours=4)
    e, a = g.edge_index, g.edge_attr
    # node (2, 7) at lon 315 is the western neighbour of node (2, 0) at lon 0, through the wrap
    k = np.flatnonzero((e[0] == 2 * 8 + 7) & (e[1] == 2 * 8))
    assert k.size == 1 and a[k[0], 0] < 0 and abs(a[k[0], 1]) < 1e-6
    k = np.flatnonzero((e[0] == 2 * 8 + 1) & (e[1] == 2 * 8))  # eastern neighbour
    assert a[k[0], 0] > 0 and abs(a[k[0], 1]) < 1e-6
    off_pole = e[0] // 8 != e[1] // 8
    off_pole |= (e[0] // 8 > 0) & (e[0] // 8 < 4)
    lat, lon = g.lat, g.lon
    np.testing.assert_allclose(a[off_pole, 2], haversine(lat[e[0]], lon[e[0]], lat[e[1]], lon[e[1]])[off_pole],
                               atol=1e-6)
    # pole ring edges: short, positive, pointing east or west
    ring = ((e[0] < 8) & (e[1] < 8)) | ((e[0] >= 32) & (e[1] >= 32))
    assert ring.sum() == 2 * 2 * 8
    assert (a[ring, 2] > 0).all() and (a[ring, 2] < a[~ring, 2].min()).all()
    assert (np.abs(a[ring, 0]) > np.abs(a[ring, 1])).all()


@pytest.mark.parametrize("kernel", ["gaussian", "inverse", "uniform"])
@pytest.mark.parametrize("weights", ["distance", "correlation", "product"])
def test_self_loops_kernels_and_weightings(kernel, weights):
    g = grid_graph(bare_grid(), kernel=kernel, weights=weights, self_loops=True)
    check_graph(g, self_loops=True)
    g = knn_graph(bare_stations(), k=4, kernel=kernel, weights=weights)
    check_graph(g)


def test_knn_graph_symmetric_unless_directed():
    data = bare_stations()
    g = knn_graph(data, k=4)
    check_graph(g)
    assert (degrees(g.edge_index, g.num_nodes) >= 4).all()
    d = knn_graph(data, k=4, directed=True)
    check_graph(d, symmetric=False)
    assert not is_symmetric(d.edge_index, d.num_nodes)
    assert (degrees(d.edge_index, d.num_nodes) == 4).all()


def test_radius_graph():
    data = bare_stations()
    g = radius_graph(data, radius_km=600.0, max_neighbours=64)
    check_graph(g)
    assert (g.edge_attr[:, 2] <= 600.0 / EARTH_RADIUS_KM * (1 + 1e-6)).all()
    with pytest.warns(UserWarning, match="without neighbours"):
        radius_graph(data, radius_km=1.0)


def test_correlation_uses_training_steps_only():
    data = bare_grid(T=10)
    train = np.arange(6)
    X = data.X.copy()
    X[6:] = np.random.default_rng(9).normal(size=X[6:].shape)  # other values outside the training steps
    a = grid_graph(data, train_index=train, weights="correlation")
    b = grid_graph(data.replace(X=X), train_index=train, weights="correlation")
    c = grid_graph(data.replace(X=X), weights="correlation")
    assert np.array_equal(a.edge_weight, b.edge_weight)
    assert not np.array_equal(a.edge_weight, c.edge_weight)
    with pytest.raises(DataError, match="at least 2 training time steps"):
        grid_graph(data, train_index=[0], weights="correlation")


def test_mesh_graph_uses_native_edges():
    data = bare_stations(n=6)
    native = np.array([[0, 1, 1, 2, 3, 4, 4, 4], [1, 0, 2, 1, 4, 3, 4, 5]])  # a self loop, one one-way edge
    g = mesh_graph(data.replace(kind="mesh", native_edges=native))
    check_graph(g)
    assert set(map(tuple, g.edge_index.T)) == {(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3), (4, 5), (5, 4)}
    with pytest.raises(DataError, match="native"):
        mesh_graph(data)


def test_bad_options_name_the_key():
    data = bare_grid()
    with pytest.raises(ConfigError, match="graph.neighbours"):
        grid_graph(data, neighbours=6)
    with pytest.raises(ConfigError, match="graph.kernel"):
        grid_graph(data, kernel="cubic")
    with pytest.raises(ConfigError, match="graph.weights"):
        knn_graph(data, weights="mutual")
    with pytest.raises(ConfigError, match="graph.k"):
        knn_graph(data, k=data.num_nodes)
    with pytest.raises(ConfigError, match="graph.radius_km"):
        radius_graph(data, radius_km=-1.0)
    with pytest.raises(ConfigError, match="graph.length_scale"):
        grid_graph(data, length_scale=0)
    with pytest.raises(DataError, match="regular lat-lon grid"):
        grid_graph(bare_stations())


@pytest.mark.filterwarnings("ignore:graph.radius_km")  # the gallery grid is coarser than the radius
@pytest.mark.parametrize("name", ["grid8", "grid4", "knn", "radius", "mesh"])
def test_configs_instantiate_to_builders(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert next(iter(cfg)) == "_target_"
    builder = instantiate(cfg)
    rng = np.random.default_rng(0)
    native = rng.integers(0, 40, (2, 60))
    data = bare_grid().replace(native_edges=native)
    g = builder(data, train_index=np.arange(4))
    check_graph(g)
