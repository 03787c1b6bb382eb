"""Partition quality metrics, part adjacency, colouring and the printed report."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.partition import build_partition, color_parts, symmetric_adjacency
from gnnddm.partition.metrics import boundary_fraction, components_per_part, edge_cut, imbalance
from gnnddm.testing.gallery import random_graph

ROWS = np.repeat(np.arange(4), 8)  # the 4 x 8 grid split into its 4 latitude rows
HALVES = np.repeat([0, 1], 16)


def test_metrics_of_latitude_rows_match_hand_counts(grid4x8):
    ei, n, _, _ = grid4x8
    m = build_partition(ei, n, ROWS, overlap=1).metrics
    # 32 undirected edges along the rows, 3 x 24 between consecutive rows; only the latter are cut
    assert m["edge_cut"] == 72
    assert m["edge_cut_fraction"] == pytest.approx(72 / 104)
    assert m["imbalance"] == 1.0
    assert m["boundary_fraction"] == 1.0
    assert m["components"] == [1, 1, 1, 1]
    assert m["part_sizes"] == [8, 8, 8, 8] and m["empty_parts"] == []
    assert m["max_local_nodes"] == 24


def test_edge_cut_fraction_is_weighted(grid4x8):
    ei, n, _, _ = grid4x8
    # weight 3 on edges between the two halves, 1 elsewhere
    w = np.where(HALVES[ei[0]] != HALVES[ei[1]], 3.0, 1.0)
    a = symmetric_adjacency(ei, n, w)
    count, fraction = edge_cut(a, HALVES)
    assert count == 24
    assert fraction == pytest.approx(24 * 3 / (80 + 24 * 3))
    assert boundary_fraction(a, HALVES) == 0.5


def test_imbalance_and_components_of_uneven_parts(grid4x8):
    ei, n, _, _ = grid4x8
    parts = np.zeros(n, dtype=int)
    parts[[0, 2, 4]] = 1  # three isolated nodes of one row: one part, three components
    a = symmetric_adjacency(ei, n)
    assert imbalance(parts, 2) == pytest.approx(29 / 16)
    assert components_per_part(a, parts, 3) == [1, 3, 0]


def test_part_adjacency_and_colouring_of_rows(grid4x8):
    ei, n, _, _ = grid4x8
    part = build_partition(ei, n, ROWS, overlap=0)
    assert part.part_adjacency.T.tolist() == [[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 2]]
    colors = color_parts(part)
    assert colors.max() == 1  # a chain of parts needs two colours


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colouring_separates_adjacent_parts(seed):
    rng = np.random.default_rng(seed)
    ei = random_graph(rng, 200, 300)
    part = build_partition(ei, 200, rng.integers(0, 12, size=200), overlap=0)
    colors = color_parts(part)
    k, l = part.part_adjacency
    assert k.size > 0 and np.all(colors[k] != colors[l])
    degree = np.bincount(k, minlength=12).max()
    assert colors.max() <= degree  # greedy uses at most max degree + 1 colours


def test_repr_reports_the_quality(grid4x8):
    ei, n, _, _ = grid4x8
    text = repr(build_partition(ei, n, ROWS, overlap=1, method="rows"))
    assert text.startswith("Partition: 4 parts (rows), overlap 1")
    for needle in ("edge cut        72 edges (69.23 % of edge weight)", "halo ratio", "imbalance       1.000",
                   "components      4 (every part connected)"):
        assert needle in text
