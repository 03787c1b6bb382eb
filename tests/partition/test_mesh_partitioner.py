"""The joint graph of an encoder-processor-decoder model: METIS on the mesh, each grid node with its triangle."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.errors import ConfigError
from gnnddm.partition.mesh import mesh, partition

M, G = 12, 36  # mesh nodes 0..11 on a ring, grid nodes 12..47


def joint_graph():
    """A ring of mesh nodes; grid node g decoded from mesh nodes k, k+1, k+2 and encoded into k+1."""
    ring = np.arange(M)
    proc = np.concatenate([np.stack([ring, (ring + 1) % M]), np.stack([(ring + 1) % M, ring])], axis=1)
    grid = M + np.arange(G)
    k = np.arange(G) // 3
    dec = np.concatenate([np.stack([(k + d) % M, grid]) for d in range(3)], axis=1)
    enc = np.stack([grid, (k + 1) % M])
    edge_index = np.concatenate([enc, proc, dec], axis=1)
    kinds = np.repeat(np.eye(3), [enc.shape[1], proc.shape[1], dec.shape[1]], axis=0)
    attr = np.concatenate([np.ones((edge_index.shape[1], 3)), kinds], axis=1).astype(np.float32)
    names = ("dx", "dy", "distance", "is_encoder", "is_processor", "is_decoder")
    return edge_index, attr, names, dec


def test_mesh_parts_come_from_metis_and_grid_nodes_follow_their_decoder_triangle():
    edge_index, attr, names, dec = joint_graph()
    parts = mesh(edge_index, M + G, 3, edge_attr=attr, edge_attr_names=names)
    assert sorted(np.bincount(parts[:M]).tolist()) == [4, 4, 4]  # the ring cut into 3 arcs
    for g in range(M, M + G):
        votes = np.bincount(parts[dec[0, dec[1] == g]], minlength=3)
        assert parts[g] == votes.argmax()  # the majority of its 3 vertices (ties: the lowest part)
    assert set(np.bincount(parts[M:], minlength=3)) == {12}  # uniform decoding: balanced grid side


def test_the_partitioner_builds_overlaps_on_the_joint_graph():
    from gnnddm.testing.gallery import weather_data

    edge_index, attr, names, _ = joint_graph()
    rng = np.random.default_rng(0)
    data = weather_data(rng.uniform(-80, 80, M + G), rng.uniform(-180, 180, M + G), kind="mesh")
    data = data.with_graph(edge_index, np.ones(edge_index.shape[1], np.float32), attr, names)
    part = partition(data, num_parts=3, overlap=2)
    assert part.num_parts == 3 and part.method == "mesh"
    owned = np.concatenate([s.nodes[: s.num_owned] for s in part.subdomains])
    assert sorted(owned.tolist()) == list(range(M + G))  # every node owned once
    assert all(s.hop.max() == 2 for s in part.subdomains)


def test_a_graph_without_edge_kinds_is_refused_naming_the_builder():
    edge_index, attr, names, _ = joint_graph()
    with pytest.raises(ConfigError, match="partition=mesh: .*graph=icosahedral"):
        mesh(edge_index, M + G, 3, edge_attr=attr[:, :3], edge_attr_names=names[:3])
    with pytest.raises(ConfigError, match="partition.num_parts=13 exceeds the 12 mesh nodes"):
        mesh(edge_index, M + G, 13, edge_attr=attr, edge_attr_names=names)
