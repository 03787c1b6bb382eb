"""Operations on edge sets: canonical order, symmetrisation, self loops.

Every graph built by :mod:`gnnddm.graph.build` is in *canonical form*: an int64 ``[2, E]`` array in the
PyTorch Geometric convention (``edge_index[0]`` = source j, ``edge_index[1]`` = target i), without
duplicates, sorted by target and then by source (the order of a CSR matrix whose rows are targets).
The functions here sort integer keys ``target · N + source``, which is O(E log E) and needs no Python
loop; ``N²`` fits int64 for any graph that fits in memory.
"""

from __future__ import annotations

import numpy as np


def _keys(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    return dst.astype(np.int64) * np.int64(num_nodes) + src.astype(np.int64)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct keys. (Sort + neighbour comparison: ``np.unique`` is many times slower on
    tens of millions of int64 keys in recent numpy releases.)"""
    keys = np.sort(keys)
    if keys.size:
        keep = np.empty(keys.size, dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def _from_keys(keys: np.ndarray, num_nodes: int) -> np.ndarray:
    dst, src = np.divmod(keys, np.int64(num_nodes))
    return np.stack([src, dst])


def coalesce(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """The edges in canonical order (sorted by target, then source) with duplicates removed."""
    edge_index = np.asarray(edge_index, dtype=np.int64)
    return _from_keys(_sorted_unique(_keys(edge_index[0], edge_index[1], num_nodes)), num_nodes)


def symmetrise(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """The union of the edges and their reverses, in canonical order.

    A kNN relation is not symmetric (j may be among the k nearest of i but not i among those of j);
    the union makes every coupling two-way, so each node keeps at least its own k neighbours.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    src, dst = edge_index
    keys = np.concatenate([_keys(src, dst, num_nodes), _keys(dst, src, num_nodes)])
    return _from_keys(_sorted_unique(keys), num_nodes)


def remove_self_loops(edge_index: np.ndarray) -> np.ndarray:
    """The edges ``j -> i`` with ``j != i``, order preserved."""
    edge_index = np.asarray(edge_index, dtype=np.int64)
    return edge_index[:, edge_index[0] != edge_index[1]]


def add_self_loops(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Canonical edges plus one ``i -> i`` per node (existing self loops are not doubled)."""
    loops = np.arange(num_nodes, dtype=np.int64)
    return coalesce(np.concatenate([np.asarray(edge_index, dtype=np.int64), np.stack([loops, loops])], 1),
                    num_nodes)


def is_symmetric(edge_index: np.ndarray, num_nodes: int, edge_weight: np.ndarray | None = None) -> bool:
    """Whether every edge's reverse is present (and, given weights, carries the same weight)."""
    edge_index = np.asarray(edge_index, dtype=np.int64)
    fwd = _keys(edge_index[0], edge_index[1], num_nodes)
    rev = _keys(edge_index[1], edge_index[0], num_nodes)
    order = np.argsort(fwd, kind="stable")
    pos = np.searchsorted(fwd[order], rev)
    pos = np.minimum(pos, len(fwd) - 1)
    if len(fwd) and not np.array_equal(fwd[order][pos], rev):
        return False
    if edge_weight is None:
        return True
    w = np.asarray(edge_weight)
    return bool(np.array_equal(w, w[order][pos]))


def degrees(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Number of incoming edges of every node, int64 ``[N]``."""
    return np.bincount(np.asarray(edge_index)[1], minlength=num_nodes)
