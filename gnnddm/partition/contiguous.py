"""Contiguous ranges of node ids, as sharded data loaders split a grid (Anemoi-style shards).

On a regular grid (node id = i_lat * nlon + i_lon) the parts are latitude bands: cheap and predictable,
but with long boundaries, hence larger edge cuts and halos than METIS.
"""

from __future__ import annotations

import numpy as np

from gnnddm.partition.partitioners import Partitioner


def contiguous(
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
    """Balanced ranges of node ids: part k holds the ids whose cumulative weight falls in [k, k+1) * W / p.

    Each node is placed by the midpoint of its weight interval, so with unit weights the sizes differ by
    at most one. The graph and the seed are ignored.

    Returns
    -------
    int64 [N], non-decreasing
    """
    w = np.ones(num_nodes) if node_weight is None else np.asarray(node_weight, dtype=np.float64)
    total = w.sum()
    if num_nodes == 0 or total <= 0:
        return (np.arange(num_nodes, dtype=np.int64) * num_parts) // max(num_nodes, 1)
    mid = np.cumsum(w) - 0.5 * w
    return np.minimum(num_parts - 1, np.floor(mid * num_parts / total)).astype(np.int64)


#: the partitioner on graph-carrying data: the ``_target_`` of conf/partition/contiguous.yaml
partition = Partitioner(contiguous)
