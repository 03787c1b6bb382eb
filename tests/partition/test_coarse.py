"""Coarse graphs: clusters, restriction / prolongation, coarse edges and positions, repeated levels."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.partition import coarsen, coarsen_levels, symmetric_adjacency
from gnnddm.testing.gallery import grid_edge_index, latlon


@pytest.fixture
def grid12x24():
    lat, lon = latlon(12, 24)
    ei = grid_edge_index(12, 24, neighbours=8)
    w = np.random.default_rng(0).uniform(0.5, 2.0, ei.shape[1])
    w = 0.5 * (w + symmetric_adjacency(ei, lat.size, w)[ei[0], ei[1]].A1)  # symmetric weights
    area = np.cos(np.deg2rad(lat))
    return ei, w, lat, lon, area / area.mean()


@pytest.mark.parametrize("method", ["metis", "geometric"])
def test_restriction_preserves_area_weighted_means(grid12x24, method):
    ei, w, lat, lon, area = grid12x24
    level = coarsen(ei, lat.size, 20, edge_weight=w, area=area, lat=lat, lon=lon, method=method)
    x = np.random.default_rng(1).standard_normal((lat.size, 3))
    xc = level.restrict(x)
    fine_mean = (area[:, None] * x).sum(0) / area.sum()
    coarse_mean = (level.area[:, None] * xc).sum(0) / level.area.sum()
    np.testing.assert_allclose(coarse_mean, fine_mean, rtol=1e-12, atol=1e-12)
    assert level.area.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(level.restriction.sum(axis=1).A1, 1.0)


def test_prolongation_then_restriction_is_identity_on_cluster_constant_fields(grid12x24):
    ei, w, lat, lon, area = grid12x24
    level = coarsen(ei, lat.size, 20, edge_weight=w, area=area, lat=lat, lon=lon)
    y = np.random.default_rng(2).standard_normal(level.num_clusters)
    x = level.prolong(y)  # constant on every cluster
    assert np.array_equal(x, y[level.assign])
    np.testing.assert_allclose(level.prolong(level.restrict(x)), x, rtol=1e-12)
    np.testing.assert_allclose(level.restrict(x), y, rtol=1e-12)


def test_coarse_edges_sum_fine_weights_between_clusters(grid12x24):
    ei, w, lat, lon, area = grid12x24
    level = coarsen(ei, lat.size, 15, edge_weight=w, area=area, lat=lat, lon=lon)
    src, dst = level.edge_index
    assert np.all(src != dst)
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert pairs == {(b, a) for a, b in pairs}
    # brute force: sum of fine weights over fine edges joining clusters a and b
    fine = symmetric_adjacency(ei, lat.size, w).tocoo()
    expected = {}
    for i, j, v in zip(fine.row, fine.col, fine.data, strict=True):
        a, b = level.assign[j], level.assign[i]
        if a != b:
            expected[a, b] = expected.get((a, b), 0.0) + v
    got = {(a, b): v for a, b, v in zip(src.tolist(), dst.tolist(), level.edge_weight.tolist(), strict=True)}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6)
    # edge features between centroids: (dx, dy, distance) with |(dx, dy)| = distance
    assert level.edge_attr.shape == (src.size, 3)
    np.testing.assert_allclose(np.hypot(level.edge_attr[:, 0], level.edge_attr[:, 1]), level.edge_attr[:, 2],
                               rtol=1e-4)


def test_centroid_of_a_cluster_across_the_date_line():
    lat = np.array([10.0, 10.0])
    lon = np.array([179.0, -179.0])
    level = coarsen(np.array([[0, 1], [1, 0]]), 2, 1, lat=lat, lon=lon, method="contiguous")
    assert abs(abs(level.lon[0]) - 180.0) < 1e-9
    assert level.lat[0] == pytest.approx(10.0, abs=0.01)
    assert level.edge_index.shape == (2, 0)


def test_restrict_along_the_node_axis_of_fields(grid12x24):
    ei, w, lat, lon, area = grid12x24
    level = coarsen(ei, lat.size, 10, edge_weight=w, area=area)
    x = np.random.default_rng(3).standard_normal((4, lat.size, 2))
    xc = level.restrict(x, axis=1)
    assert xc.shape == (4, level.num_clusters, 2)
    np.testing.assert_allclose(xc[2, :, 1], level.restrict(x[2, :, 1]))


def test_repeated_coarsening_chains_levels(grid12x24):
    ei, w, lat, lon, area = grid12x24
    levels = coarsen_levels(ei, lat.size, [40, 10], edge_weight=w, area=area, lat=lat, lon=lon)
    assert [lv.num_clusters for lv in levels] == [40, 10]
    assert levels[1].assign.shape == (40,)
    # the composed restriction still preserves the area-weighted mean
    x = np.random.default_rng(4).standard_normal(lat.size)
    xc = levels[1].restrict(levels[0].restrict(x))
    assert (levels[1].area * xc).sum() / levels[1].area.sum() == pytest.approx((area * x).sum() / area.sum())


@pytest.mark.parametrize("levels", [[], [40, 40], [10, 40], [288]])
def test_bad_levels_are_rejected(grid12x24, levels):
    ei, w, lat, lon, area = grid12x24
    with pytest.raises(ValueError, match="levels must be strictly decreasing"):
        coarsen_levels(ei, lat.size, levels)
