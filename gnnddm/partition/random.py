"""Random balanced parts: the baseline every other partitioner should beat on edge cut."""

from __future__ import annotations

import numpy as np

from gnnddm.partition.partitioners import Partitioner


def random(
    edge_index,
    num_nodes: int,
    num_parts: int,
    edge_weight=None,
    node_weight=None,
    lat=None,
    lon=None,
    *,
    seed: int = 0,
) -> np.ndarray:
    """A random permutation of the nodes dealt out to the parts in turn (sizes differ by at most one).

    Only ``num_nodes``, ``num_parts`` and ``seed`` are used; the graph is ignored.

    Returns
    -------
    int64 [N]
    """
    parts = np.empty(num_nodes, dtype=np.int64)
    parts[np.random.default_rng(seed).permutation(num_nodes)] = np.arange(num_nodes) % num_parts
    return parts


#: the partitioner on graph-carrying data: the ``_target_`` of conf/partition/random.yaml
partition = Partitioner(random)
