"""The joint grid + icosahedral-mesh graph: the mesh, the three edge kinds, the padded data, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gnnddm.config import compose
from gnnddm.data.weather_graph import WeatherGraphData, static_position_features, wrap_lon
from gnnddm.errors import ConfigError, DataError
from gnnddm.graph import icosahedral
from gnnddm.graph.edges import coalesce, is_symmetric
from gnnddm.graph.features import edge_features
from gnnddm.graph.icosahedral import (
    ICOSAHEDRAL_EDGE_ATTR_NAMES,
    barycentric,
    icosahedral_graph,
    icosahedron,
    longest_edge,
    processor_edges,
)
from gnnddm.graph.sphere import haversine, unit_vectors
from gnnddm.schema import problems
from gnnddm.testing.gallery import EdgeGNN, latlon, problem, weather_data

CONF = Path(__file__).resolve().parents[2] / "conf" / "graph"
MESH_NODES = [12, 42, 162, 642, 2562, 10242, 40962]


def centred_grid(nlat=18, nlon=36, **kw) -> WeatherGraphData:
    """A global grid of cell centres (no node on a pole), 10 deg by default."""
    lat, lon = latlon(nlat, nlon)
    return weather_data(lat, lon, grid_shape=(nlat, nlon), times=4, variables=2, missing=0.1, **kw)


def pole_grid(nlat=13, nlon=24, lat_range=(90, -90), lon_step=None, T=3, V=2) -> WeatherGraphData:
    """A grid with rows on the poles (all nodes of a pole row at one point), four position features."""
    step = 360.0 / nlon if lon_step is None else lon_step
    lat = np.repeat(np.linspace(*lat_range, nlat), nlon)
    lon = wrap_lon(np.tile(np.arange(nlon) * step, nlat))
    X = np.random.default_rng(0).normal(size=(T, lat.size, V)).astype(np.float32)
    static, names = static_position_features(lat, lon)
    static = np.concatenate([static, np.full((lat.size, 1), 0.5, np.float32)], axis=1)
    return WeatherGraphData(
        kind="grid", lat=lat, lon=lon, area=np.cos(np.deg2rad(lat)) + 0.01, X=X, mask=np.ones(X.shape, bool),
        times=np.arange(T).astype("datetime64[h]").astype("datetime64[ns]"), variables=("a", "b"),
        units=("K", "Pa"), static=static, static_names=(*names, "orography"), grid_shape=(nlat, nlon),
        source="pole grid", normalised=True, mean=np.array([1.0, 2.0]), std=np.array([3.0, 4.0]),
    )


def kinds(g) -> np.ndarray:
    """Edge kind per edge: 0 encoder, 1 processor, 2 decoder."""
    return np.argmax(g.edge_attr[:, 3:], axis=1)


# -------------------------------------------------------------------------------------------------- mesh
def test_node_counts_per_refinement():
    for r, m in enumerate(MESH_NODES):
        xyz, faces, level_edges = icosahedron(r)
        assert xyz.shape == (m, 3) and faces.shape == (20 * 4**r, 3) and len(level_edges) == r + 1
        np.testing.assert_allclose(np.linalg.norm(xyz, axis=1), 1.0, atol=1e-15)


def test_every_level_is_a_closed_outward_oriented_surface_with_euler_characteristic_2():
    _, _, finest_levels = icosahedron(6)
    for r in range(7):
        xyz, faces, level_edges = icosahedron(r)
        a, b, c = xyz[faces[:, 0]], xyz[faces[:, 1]], xyz[faces[:, 2]]
        assert (np.einsum("ij,ij->i", np.cross(b - a, c - a), a) > 0).all()  # outward
        directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        keys = directed[:, 0] * len(xyz) + directed[:, 1]
        reverse = directed[:, 1] * len(xyz) + directed[:, 0]
        assert np.unique(keys).size == keys.size and set(keys) == set(reverse)  # each edge once each way
        edges = level_edges[-1]
        assert (edges[0] < edges[1]).all() and edges.shape[1] == keys.size // 2
        assert len(xyz) - edges.shape[1] + len(faces) == 2
        np.testing.assert_array_equal(edges, finest_levels[r])  # coarse nodes keep their ids


def test_refinement_halves_the_edges_and_keeps_the_coarse_nodes():
    xyz2, _, _ = icosahedron(2)
    xyz3, _, levels = icosahedron(3)
    np.testing.assert_array_equal(xyz3[:162], xyz2)
    coarse, fine = longest_edge(xyz3, levels[2]), longest_edge(xyz3, levels[3])
    assert 0.5 * coarse < fine < 0.6 * coarse


def test_multimesh_holds_the_finest_edges_and_the_coarser_levels():
    xyz, _, level_edges = icosahedron(3)
    single = processor_edges(level_edges, len(xyz), multimesh=False)
    multi = processor_edges(level_edges, len(xyz), multimesh=True)
    as_set = lambda e: set(zip(*e.tolist(), strict=True))  # noqa: E731
    assert as_set(single) < as_set(multi)
    assert multi.shape[1] == 2 * sum(e.shape[1] for e in level_edges)  # the levels share no node pair
    for e in (single, multi):
        assert is_symmetric(e, len(xyz)) and (e[0] != e[1]).all()
        np.testing.assert_array_equal(coalesce(e, len(xyz)), e)


# ----------------------------------------------------------------------------------------------- builder
@pytest.fixture(scope="module")
def built():
    data = centred_grid()
    return data, icosahedral_graph(data, refinement=2)


def test_nodes_positions_and_graph_layout(built):
    data, g = built
    G, M = data.num_nodes, 162
    assert g.num_nodes == G + M and g.grid_shape is None and g.native_edges is None
    np.testing.assert_array_equal(g.lat[:G], data.lat)
    np.testing.assert_array_equal(g.lon[:G], data.lon)
    assert (g.lon >= -180).all() and (g.lon < 180).all()
    xyz, _, _ = icosahedron(2)
    np.testing.assert_allclose(unit_vectors(g.lat[G:], g.lon[G:]), xyz, atol=1e-12)
    for name in ("source", "layout", "variables", "units", "normalised", "kind"):
        assert getattr(g, name) == getattr(data, name)
    np.testing.assert_array_equal(g.times, data.times)
    np.testing.assert_array_equal(g.mean, data.mean)
    np.testing.assert_array_equal(g.std, data.std)


def test_fields_are_padded_with_masked_zeros(built):
    data, g = built
    G = data.num_nodes
    assert g.X.dtype == np.float32 and g.X.shape == (4, g.num_nodes, 2)
    np.testing.assert_array_equal(g.X[:, :G], data.X)
    np.testing.assert_array_equal(g.mask[:, :G], data.mask)
    assert (g.X[:, G:] == 0).all() and not g.mask[:, G:].any()
    np.testing.assert_array_equal(g.area[:G], data.area)
    assert (g.area[G:] == 0).all()


def test_static_features_mark_mesh_nodes_and_give_their_positions():
    data = pole_grid()
    g = icosahedral_graph(data, refinement=1)
    G = data.num_nodes
    assert g.static_names == (*data.static_names, "mesh_node") and g.static.dtype == np.float32
    np.testing.assert_array_equal(g.static[:G, :-1], data.static)
    np.testing.assert_array_equal(g.static[:, -1], np.r_[np.zeros(G), np.ones(42)])
    position, _ = static_position_features(g.lat[G:], g.lon[G:])
    np.testing.assert_array_equal(g.static[G:, :4], position)
    assert (g.static[G:, 4] == 0).all()  # orography: unknown on the mesh


def test_edges_are_canonical_typed_and_carry_their_geometry(built):
    data, g = built
    n, G = g.num_nodes, data.num_nodes
    e = g.edge_index
    assert e.dtype == np.int64 and g.edge_attr.dtype == np.float32 and g.edge_weight.dtype == np.float32
    assert g.edge_attr_names == ICOSAHEDRAL_EDGE_ATTR_NAMES and g.edge_attr.shape == (e.shape[1], 6)
    np.testing.assert_array_equal(coalesce(e, n), e)  # sorted by target, then source; no duplicates
    assert (e[0] != e[1]).all()
    assert (g.edge_weight == 1.0).all()
    np.testing.assert_array_equal(g.edge_attr[:, 3:].sum(axis=1), 1.0)
    assert set(np.unique(g.edge_attr[:, 3:])) == {0.0, 1.0}
    k = kinds(g)
    src_mesh, dst_mesh = e[0] >= G, e[1] >= G
    np.testing.assert_array_equal(k == 0, ~src_mesh & dst_mesh)
    np.testing.assert_array_equal(k == 1, src_mesh & dst_mesh)
    np.testing.assert_array_equal(k == 2, src_mesh & ~dst_mesh)
    np.testing.assert_array_equal(g.edge_attr[:, :3], edge_features(g.lat, g.lon, e))


def test_every_grid_node_sends_to_the_mesh_within_the_radius_and_every_mesh_node_receives(built):
    data, g = built
    G, e = data.num_nodes, g.edge_index[:, kinds(g) == 0]
    assert (np.bincount(e[0], minlength=G) >= 1).all()
    assert (np.bincount(e[1] - G, minlength=162) >= 1).all()
    xyz, _, levels = icosahedron(2)
    reach = 0.6 * longest_edge(xyz, levels[-1])
    d = haversine(g.lat[e[0]], g.lon[e[0]], g.lat[e[1]], g.lon[e[1]])
    assert d.max() <= reach + 1e-12
    # and nothing within the radius is left out
    near = haversine(data.lat[:, None], data.lon[:, None], g.lat[None, G:], g.lon[None, G:]) <= reach - 1e-9
    assert set(zip(*np.nonzero(near), strict=True)) <= {(int(j), int(i) - G) for j, i in e.T}


def test_mesh_nodes_without_grid_node_in_reach_get_the_nearest():
    # a coarse grid and a fine mesh: the radius misses mesh nodes, never grid nodes
    data = centred_grid(6, 12)
    g = icosahedral_graph(data, refinement=3)
    G, e = data.num_nodes, g.edge_index[:, kinds(g) == 0]
    xyz, _, levels = icosahedron(3)
    reach = 0.6 * longest_edge(xyz, levels[-1])
    d = haversine(data.lat[:, None], data.lon[:, None], g.lat[None, G:], g.lon[None, G:])  # [G, M]
    lonely = np.flatnonzero(d.min(axis=0) > reach)
    assert lonely.size > 100
    received = np.bincount(e[1] - G, minlength=642)
    assert (received >= 1).all() and (received[lonely] == 1).all()
    sources = e[0, np.isin(e[1] - G, lonely)]
    np.testing.assert_allclose(d[sources, lonely], d[:, lonely].min(axis=0))


@pytest.mark.parametrize("data", [centred_grid(), pole_grid()], ids=["centred", "poles"])
def test_every_grid_node_hears_the_three_vertices_of_its_triangle(data):
    g = icosahedral_graph(data, refinement=2)
    G, e = data.num_nodes, g.edge_index[:, kinds(g) == 2]
    assert (np.bincount(e[1], minlength=G) == 3).all()
    order = np.argsort(e[1], kind="stable")
    triangles = (e[0, order] - G).reshape(G, 3)
    xyz, faces, _ = icosahedron(2)
    assert {tuple(t) for t in np.sort(triangles, axis=1)} <= {tuple(f) for f in np.sort(faces, axis=1)}
    lam = barycentric(unit_vectors(data.lat, data.lon), xyz, triangles)
    assert (lam >= -1e-9).all()
    np.testing.assert_allclose(lam.sum(axis=1), 1.0)


def test_mean_encoder_edges_per_grid_node_stays_close_to_graphcasts():
    g = icosahedral_graph(pole_grid(37, 72), refinement=3)
    encoder = int((kinds(g) == 0).sum())
    assert 1.0 <= encoder / 37 / 72 <= 3.0


def test_partitioned_with_exact_overlaps_equals_unpartitioned():
    data = icosahedral_graph(centred_grid(12, 24), refinement=1)
    losses = {}
    for overlap in (3, 0):
        _, _, objective, task, batch = problem(data, parts=3, overlap=overlap)
        on_batch = objective.on(batch)
        torch.manual_seed(0)
        model = EdgeGNN(task.in_channels, task.out_channels, data.edge_attr.shape[1], layers=3).double()
        with torch.no_grad():
            losses[overlap] = (float(on_batch.global_loss(model)),
                               sum(float(on_batch.local_loss(model, k)) for k in range(3)))
    assert losses[3][1] == pytest.approx(losses[3][0], rel=1e-12)
    assert abs(losses[0][1] - losses[0][0]) > 1e-4 * losses[0][0]


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("refinement", [-1, 7, 9])
def test_refinement_out_of_range(refinement):
    with pytest.raises(ConfigError, match=r"graph\.refinement: .*\[0, 6\]"):
        icosahedral_graph(centred_grid(), refinement=refinement)


def test_a_mesh_that_cannot_fit_in_memory_is_refused_before_building(monkeypatch):
    monkeypatch.setattr(icosahedral, "_available_bytes", lambda: 10_000)
    monkeypatch.setattr(icosahedral, "encoder_edges", lambda *a: pytest.fail("built before the check"))
    with pytest.raises(ConfigError, match=r"graph\.refinement=3: the joint graph needs about [\d.]+ MB .*edges"):
        icosahedral_graph(centred_grid(), refinement=3)


def test_a_radius_that_leaves_grid_nodes_out_names_the_smallest_that_covers_all():
    data = centred_grid()
    with pytest.raises(ConfigError, match=r"graph\.radius=0.2: (\d+) of 648 grid nodes .* is ([\d.]+)") as err:
        icosahedral_graph(data, refinement=2, radius=0.2)
    smallest = float(str(err.value).rsplit(" ", 1)[1])
    assert 0.2 < smallest < 0.6
    g = icosahedral_graph(data, refinement=2, radius=smallest)
    assert (np.bincount(g.edge_index[0, kinds(g) == 0], minlength=648) >= 1).all()
    with pytest.raises(ConfigError, match="graph.radius"):
        icosahedral_graph(data, refinement=2, radius=smallest - 2e-4)


@pytest.mark.parametrize("radius", [0, -0.5])
def test_radius_must_be_positive(radius):
    with pytest.raises(ConfigError, match=r"graph\.radius: .*must be > 0"):
        icosahedral_graph(centred_grid(), radius=radius)


@pytest.mark.parametrize("data", [
    pole_grid(lat_range=(60, -60)),
    pole_grid(lat_range=(90, -30)),
    pole_grid(nlon=12, lon_step=10.0),
], ids=["no poles", "half the globe", "part of the longitudes"])
def test_regional_grids_are_refused(data):
    with pytest.raises(DataError, match="icosahedral mesh needs global data"):
        icosahedral_graph(data, refinement=1)


def test_data_that_is_not_a_grid_is_refused():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-90, 90, 50), rng.uniform(-180, 180, 50)
    with pytest.raises(DataError, match="icosahedral mesh needs global data .* kind 'stations'"):
        icosahedral_graph(weather_data(lat, lon, kind="stations"), refinement=1)


def test_lazily_read_data_is_refused(monkeypatch):
    monkeypatch.setattr(WeatherGraphData, "lazy", property(lambda self: True))
    with pytest.raises(ConfigError, match=r"graph=icosahedral.*data\.lazy=false"):
        icosahedral_graph(centred_grid(), refinement=1)


# ------------------------------------------------------------------------------------------------ config
def test_the_config_option_builds_the_graph():
    cfg = OmegaConf.load(CONF / "icosahedral.yaml")
    assert (cfg.refinement, cfg.multimesh, cfg.radius) == (4, True, 0.6)
    cfg.refinement = 1
    g = instantiate(cfg)(centred_grid(), train_index=np.arange(3))
    assert g.num_nodes == 648 + 42


def test_the_config_validates_and_names_a_bad_refinement():
    assert [str(p) for p in problems(compose(["graph=icosahedral"]))] == []
    assert [str(p) for p in problems(compose(["graph=icosahedral", "graph.refinement=9"]))] == [
        "graph.refinement: a refinement level must be in [0, 6], got 9"]
