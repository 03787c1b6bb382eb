"""Recursive coordinate bisection (RCB) of the node positions on the unit sphere.

Nodes are mapped to 3-D unit vectors (so nothing breaks at the dateline or the poles). A set that must be
split into ``k`` parts is cut along the axis of its largest extent at the weighted quantile ``floor(k/2) / k``
and the two halves are split into ``floor(k/2)`` and ``k - floor(k/2)`` parts in turn, so any number of
parts works, not only powers of two. The graph is not used: RCB gives compact, balanced parts whose cut
follows from the geometry alone.
"""

from __future__ import annotations

import numpy as np

from gnnddm.graph.sphere import unit_vectors
from gnnddm.partition.partitioners import Partitioner


def geometric(
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
    """Parts by recursive coordinate bisection of (lat, lon); node weights balance the halves.

    Returns
    -------
    int64 [N]
    """
    if lat is None or lon is None:
        raise ValueError("the geometric partitioner needs node positions (lat, lon)")
    xyz = unit_vectors(lat, lon)
    w = np.ones(num_nodes) if node_weight is None else np.asarray(node_weight, dtype=np.float64)
    parts = np.zeros(num_nodes, dtype=np.int64)
    stack = [(np.arange(num_nodes), 0, int(num_parts))]  # (nodes, first part id, number of parts)
    while stack:
        idx, first, k = stack.pop()
        if k == 1 or idx.size == 0:
            parts[idx] = first
            continue
        k1 = k // 2
        pts = xyz[idx]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        order = np.argsort(pts[:, axis], kind="stable")
        cw = np.cumsum(w[idx[order]])
        m = int(np.argmin(np.abs(cw - cw[-1] * k1 / k))) + 1  # nodes in the first half
        if idx.size >= k:
            m = min(max(m, k1), idx.size - (k - k1))  # leave every sub-part at least one node
        stack.append((idx[order[:m]], first, k1))
        stack.append((idx[order[m:]], first + k1, k - k1))
    return parts


#: the partitioner on graph-carrying data: the ``_target_`` of conf/partition/geometric.yaml
partition = Partitioner(geometric)
