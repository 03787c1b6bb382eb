"""Level hierarchies: conservative restriction, rebuilt grid graphs, heavy-edge matching, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.errors import ConfigError
from gnnddm.graph.build import grid_graph
from gnnddm.graph.grid import grid_edges
from gnnddm.partition.hierarchy import build_hierarchy, grid_levels_allowed, heavy_edge_matching
from gnnddm.testing.gallery import grid_data, station_data

COARSENINGS = ("grid", "matching", "clusters")


def _composed(levels):
    """Restriction from the data's nodes to each level, composed."""
    out, op = [], None
    for level in levels:
        op = level.restriction if op is None else level.restriction @ op
        out.append(op)
    return out


@pytest.mark.parametrize("coarsening", COARSENINGS)
def test_restriction_keeps_constants_and_conserves_the_area_weighted_mean(coarsening):
    data = grid_data(16, 32, neighbours=8)
    levels = build_hierarchy(data, 3, coarsening)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(data.num_nodes)
    mean = np.sum(data.area * x) / np.sum(data.area)
    for level, op in zip(levels, _composed(levels), strict=True):
        np.testing.assert_allclose(op @ np.full(data.num_nodes, 3.5), 3.5, rtol=1e-12)
        xc = op @ x
        np.testing.assert_allclose(np.sum(level.area * xc) / np.sum(level.area), mean, rtol=1e-10, atol=1e-12)
        assert level.edge_attr is not None and level.edge_attr.shape == (level.edge_index.shape[1], 3)


def test_grid_levels_are_grids_of_half_the_rows_and_columns_with_rebuilt_physical_graphs():
    data = grid_data(16, 32, neighbours=8)
    levels = build_hierarchy(data, 2, "grid")
    assert [lv.num_clusters for lv in levels] == [8 * 16, 4 * 8]
    first = levels[0]
    # a 2 x 2 block per coarse node, row-major like the fine grid
    assert np.array_equal(np.bincount(first.assign), np.full(128, 4))
    assert first.assign[0] == first.assign[1] == first.assign[32] == first.assign[33] == 0
    # the graph is the 8-stencil of the coarse grid, built by the same builder on the coarse positions
    rebuilt = grid_graph(data.replace(lat=first.lat, lon=first.lon, area=first.area, grid_shape=(8, 16),
                                      X=data.X[:, :128], mask=data.mask[:, :128], static=data.static[:128],
                                      edge_index=None, edge_weight=None, edge_attr=None))
    assert np.array_equal(first.edge_index, grid_edges(8, 16, 8, periodic=True))
    np.testing.assert_array_equal(first.edge_attr, rebuilt.edge_attr)
    # physical units: an east-west edge of the coarse grid is twice as long as the fine one on the row
    # nearest the equator (coarse rows are the area-weighted means of the fine row pairs)
    def east_distance(lat, lon, edges, edge_attr, node):
        hit = (edges[1] == node) & (edges[0] == node + 1)
        return float(edge_attr[hit, 2][0])

    fine = east_distance(data.lat, data.lon, data.edge_index, data.edge_attr, 7 * 32)
    coarse = east_distance(first.lat, first.lon, first.edge_index, first.edge_attr, 3 * 16)
    assert coarse == pytest.approx(2 * fine * np.cos(np.deg2rad(first.lat[3 * 16])) /
                                   np.cos(np.deg2rad(data.lat[7 * 32])), rel=1e-3)


def test_odd_rows_leave_a_single_row_block_and_the_rows_stay_constant():
    data = grid_data(5, 8, neighbours=8)
    (level,) = build_hierarchy(data, 1, "grid")
    assert level.num_clusters == 3 * 4
    assert np.bincount(level.assign).tolist() == [4] * 8 + [2] * 4
    lat = level.lat.reshape(3, 4)
    assert np.all(lat == lat[:, :1])


def test_more_levels_than_the_grid_allows_is_one_error_naming_the_key():
    data = grid_data(8, 16, neighbours=8)
    assert grid_levels_allowed((8, 16)) == 2  # 4 x 8, 2 x 4
    with pytest.raises(ConfigError, match=r"ddm.levels: the 8 x 16 grid allows at most 3 levels"):
        build_hierarchy(data, 3, "grid")


def test_grid_coarsening_of_stations_names_the_key_and_the_alternative():
    with pytest.raises(ConfigError, match=r"ddm.coarsening: grid .* kind 'stations'.*matching"):
        build_hierarchy(station_data(), 1, "grid")


def test_heavy_edge_matching_pairs_each_node_with_its_heaviest_free_neighbour():
    # path a - b - c - d with the heavy link in the middle: b and c pair, a and d stay single
    edges = np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    weight = np.array([1.0, 1.0, 5.0, 5.0, 1.0, 1.0])
    labels = heavy_edge_matching(edges, 4, weight)
    assert labels.tolist() == [0, 1, 1, 3]
    # every group is one node or two adjacent nodes
    data = station_data(40, k=4)
    labels = heavy_edge_matching(data.edge_index, data.num_nodes, data.edge_weight, seed=3)
    adjacent = set(map(tuple, data.edge_index.T.tolist()))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        assert len(members) <= 2
        if len(members) == 2:
            assert (int(members[0]), int(members[1])) in adjacent


def test_matching_levels_shrink_stations_about_fourfold_and_fail_clearly_when_nothing_is_left():
    data = station_data(64, k=4)
    levels = build_hierarchy(data, 2, "matching")
    assert 64 / 4.5 <= levels[0].num_clusters <= 64 / 2.5
    assert levels[1].num_clusters < levels[0].num_clusters
    with pytest.raises(ConfigError, match="ddm.levels"):
        build_hierarchy(data, 6, "matching")
