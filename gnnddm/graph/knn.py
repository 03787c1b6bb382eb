"""Nearest-neighbour relations on the sphere: k nearest neighbours and neighbours within a radius.

Both search a :class:`scipy.spatial.cKDTree` of 3-D unit vectors (:func:`~gnnddm.graph.sphere.unit_vectors`);
the chord length is monotone in great-circle distance, so the neighbours found are the nearest on the
sphere, across the date line and the poles alike. Both return the *directed* relation ``j -> i`` for
``j`` among the neighbours of target ``i`` (the PyG ``knn_graph`` flow), grouped by target and ordered
by distance; :func:`gnnddm.graph.edges.symmetrise` makes it two-way.

Coincident points (duplicate stations, the points of a pole row) are distinct nodes at distance 0; a
node is never its own neighbour even when the tree returns a duplicate of it first.

On a regular lat-lon grid, kNN neighbourhoods near the poles are dominated by the closely packed points
of a node's own latitude row, so rows there can end up only linked among themselves; use the stencil
graph of :mod:`gnnddm.graph.grid` for regular grids.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from gnnddm.graph.sphere import arc_to_chord, unit_vectors


def _tree(lat, lon) -> cKDTree:
    return cKDTree(unit_vectors(lat, lon), balanced_tree=False, compact_nodes=False)


def _drop_self(idx: np.ndarray, limit: int, missing: int) -> tuple[np.ndarray, np.ndarray]:
    """Sources and targets from a ``[N, m]`` query result: not the node itself, at most ``limit`` each."""
    n = idx.shape[0]
    keep = (idx != np.arange(n)[:, None]) & (idx != missing)
    keep &= np.cumsum(keep, axis=1) <= limit
    dst = np.repeat(np.arange(n, dtype=np.int64), keep.sum(axis=1))
    return idx[keep].astype(np.int64), dst


def knn_edges(lat, lon, k: int, workers: int = -1) -> np.ndarray:
    """Directed kNN relation, int64 ``[2, N·k]``: ``j -> i`` for the ``k`` nearest ``j ≠ i`` of each ``i``.

    Parameters
    ----------
    lat, lon : float [N]
        Positions in degrees.
    k : int
        Neighbours per node, ``1 <= k < N``.
    workers : int
        Threads of the tree query (-1: all cores).
    """
    lat = np.asarray(lat, dtype=np.float64)
    n = lat.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    _, idx = _tree(lat, lon).query(unit_vectors(lat, lon), k=k + 1, workers=workers)
    src, dst = _drop_self(idx, k, missing=n)
    return np.stack([src, dst])


def radius_edges(lat, lon, radius: float, max_neighbours: int, workers: int = -1) -> np.ndarray:
    """Directed radius relation: ``j -> i`` for the (at most ``max_neighbours``) nearest ``j ≠ i`` with
    great-circle distance below ``radius`` (radians), int64 ``[2, E]``.

    The cap bounds memory and degree where points cluster (dense station networks, pole rows); like
    PyG's ``max_num_neighbors`` it applies per target, so after symmetrisation a node can have more.
    """
    lat = np.asarray(lat, dtype=np.float64)
    n = lat.shape[0]
    if max_neighbours < 1:
        raise ValueError(f"max_neighbours must be >= 1, got {max_neighbours}")
    m = min(max_neighbours + 1, n)
    _, idx = _tree(lat, lon).query(unit_vectors(lat, lon), k=m, distance_upper_bound=float(arc_to_chord(radius)),
                                   workers=workers)
    idx = idx.reshape(n, m)
    src, dst = _drop_self(idx, max_neighbours, missing=n)
    return np.stack([src, dst])
