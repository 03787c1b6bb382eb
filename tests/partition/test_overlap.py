"""Subdomains: ownership, exact delta-hop overlaps, induced local graphs, warnings."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from gnnddm.partition import build_partition, symmetric_adjacency
from gnnddm.testing.gallery import random_graph


def bfs_hops(edge_index: np.ndarray, num_nodes: int, sources, depth: int) -> dict[int, int]:
    """Plain-Python multi-source BFS on the undirected graph: {node: hop} for hop <= depth."""
    nbrs = [set() for _ in range(num_nodes)]
    for a, b in edge_index.T.tolist():
        if a != b:
            nbrs[a].add(b)
            nbrs[b].add(a)
    hops = {int(s): 0 for s in sources}
    queue = deque(hops)
    while queue:
        v = queue.popleft()
        if hops[v] == depth:
            continue
        for w in nbrs[v]:
            if w not in hops:
                hops[w] = hops[v] + 1
                queue.append(w)
    return hops


@pytest.mark.filterwarnings("ignore::UserWarning")  # random graphs have isolated nodes and split parts
@pytest.mark.parametrize("delta", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_equals_exact_delta_hop_neighbourhood(delta, seed):
    rng = np.random.default_rng(seed)
    n = 40
    ei = random_graph(rng, n, 50)
    ei = ei[:, rng.permutation(ei.shape[1])]  # edge order must not matter
    parts = rng.integers(0, 4, size=n)
    part = build_partition(ei, n, parts, overlap=delta)

    owners = np.zeros(n, dtype=int)
    for sub in part.subdomains:
        owners[sub.owned] += 1
        assert np.all(parts[sub.owned] == sub.index)
        assert np.all(np.diff(sub.owned) > 0), "owned nodes ascending"
        expected = bfs_hops(ei, n, np.flatnonzero(parts == sub.index), delta)
        got = dict(zip(sub.nodes.tolist(), sub.hop.tolist(), strict=True))
        assert got == expected
        assert len(set(sub.nodes.tolist())) == sub.num_local, "no node twice"
        # overlap ordered by hop, then id
        key = sub.hop[sub.num_owned :] * n + sub.overlap
        assert np.all(np.diff(key) > 0)
    assert np.all(owners == 1), "every node owned exactly once"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("delta", [0, 2])
def test_local_edges_are_exactly_the_induced_global_edges(delta):
    rng = np.random.default_rng(5)
    n = 60
    ei = random_graph(rng, n, 90)
    ei = np.concatenate([ei, [[3, 7], [3, 3]]], axis=1)  # a one-directional edge and a self loop
    w = rng.random(ei.shape[1])
    part = build_partition(ei, n, rng.integers(0, 3, size=n), overlap=delta, edge_weight=w)
    for sub in part.subdomains:
        local = set(sub.nodes.tolist())
        expected = [e for e in range(ei.shape[1]) if ei[0, e] in local and ei[1, e] in local]
        assert sub.edge_ids.tolist() == expected
        assert np.array_equal(sub.nodes[sub.edge_index], ei[:, sub.edge_ids])


def test_subdomain_views_and_owned_mask(grid4x8):
    ei, n, _, _ = grid4x8
    parts = np.repeat(np.arange(4), 8)  # one latitude row per part
    part = build_partition(ei, n, parts, overlap=1, method="rows")
    sub = part.subdomains[1]
    assert sub.owned.tolist() == list(range(8, 16))
    assert sorted(sub.overlap.tolist()) == list(range(0, 8)) + list(range(16, 24))
    assert sub.owned_mask.sum() == 8 and sub.owned_mask[:8].all()
    assert part.metrics["halo_ratio"] == pytest.approx((8 + 16 + 16 + 8) / 32)


def test_trailing_empty_parts_are_kept_and_reported(grid4x8):
    ei, n, _, _ = grid4x8
    with pytest.warns(UserWarning, match=r"parts \[2\] are empty"):
        part = build_partition(ei, n, np.repeat([0, 1], 16), overlap=1, num_parts=3)
    assert part.num_parts == 3 and part.subdomains[2].num_local == 0


def test_warns_when_an_overlap_covers_the_whole_graph(grid4x8):
    ei, n, _, _ = grid4x8
    with pytest.warns(UserWarning, match="covers the whole graph"):
        build_partition(ei, n, np.repeat([0, 1], 16), overlap=5)


def test_warns_about_isolated_nodes_and_split_parts():
    ei = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])  # 0-1 and 2-3, node 4 alone
    with pytest.warns(UserWarning) as record:
        part = build_partition(ei, 5, np.array([0, 1, 0, 1, 0]), overlap=0)
    text = " ".join(str(r.message) for r in record)
    assert "1 of 5 nodes have no edges" in text
    assert "several connected components" in text
    assert part.metrics["components"] == [3, 2]


def test_symmetric_adjacency_symmetrises_and_drops_self_loops():
    ei = np.array([[0, 1, 2, 2], [1, 0, 0, 2]])
    a = symmetric_adjacency(ei, 3, edge_weight=np.array([2.0, 2.0, 5.0, 9.0]))
    assert (a != a.T).nnz == 0
    assert a.diagonal().sum() == 0
    assert a[0, 1] == 2.0 and a[0, 2] == 5.0 and a[2, 0] == 5.0


def test_bad_node_ids_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        build_partition(np.array([[0], [9]]), 3, np.zeros(3, dtype=int), overlap=1)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("layers", "delta"), [(1, 1), (2, 2), (2, 3), (3, 3)])
def test_message_passing_on_subdomains_is_exact_when_overlap_covers_the_layers(layers, delta):
    # L rounds of weighted aggregation over directed edges j -> i (a linear GNN without weights)
    import scipy.sparse as sp

    rng = np.random.default_rng(layers + 10 * delta)
    n = 80
    ei = random_graph(rng, n, 120)
    ei = ei[:, rng.random(ei.shape[1]) < 0.8]  # drop some directions: the graph is not symmetric
    w = rng.random(ei.shape[1])
    x = rng.standard_normal(n)
    a = sp.csr_matrix((w, (ei[1], ei[0])), shape=(n, n))
    y = x.copy()
    for _ in range(layers):
        y = a @ y + y
    part = build_partition(ei, n, rng.integers(0, 5, size=n), overlap=delta)
    for sub in part.subdomains:
        m = sub.num_local
        a_loc = sp.csr_matrix((w[sub.edge_ids], (sub.edge_index[1], sub.edge_index[0])), shape=(m, m))
        y_loc = x[sub.nodes]
        for _ in range(layers):
            y_loc = a_loc @ y_loc + y_loc
        np.testing.assert_allclose(y_loc[: sub.num_owned], y[sub.owned], rtol=1e-12, atol=1e-12)


def test_message_passing_is_approximate_when_overlap_is_too_small(grid4x8):
    ei, n, _, _ = grid4x8
    part = build_partition(ei, n, np.repeat([0, 1], 16), overlap=0)
    x = np.arange(n, dtype=float)
    sub = part.subdomains[0]
    local_sum = np.bincount(sub.edge_index[1], weights=x[sub.nodes][sub.edge_index[0]], minlength=sub.num_local)
    global_sum = np.bincount(ei[1], weights=x[ei[0]], minlength=n)
    assert not np.allclose(local_sum[: sub.num_owned], global_sum[sub.owned])
