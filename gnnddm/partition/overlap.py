"""Subdomains with exact ``delta``-hop overlaps, built from a part vector.

Given owned sets ``V_k = {i : parts[i] = k}``, the overlap of depth ``delta`` is

    H_k = { j not in V_k : dist(j, V_k) <= delta },

the nodes reached by a multi-source breadth-first search from ``V_k`` on the undirected graph. A GNN with
``L <= delta`` message-passing layers then computes on ``V_k ∪ H_k`` exactly the outputs it computes on the
whole graph for the owned nodes. Each search only touches the CSR rows of its current frontier (the first
frontier is the boundary of ``V_k``), so building all subdomains costs about one pass over the edges
per hop instead of one pass per part and hop.

Example
-------
>>> import numpy as np
>>> ei = np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])      # path 0 - 1 - 2 - 3
>>> part = build_partition(ei, 4, np.array([0, 0, 1, 1]), overlap=1)
>>> part.subdomains[0].nodes.tolist(), part.subdomains[0].hop.tolist()
([0, 1, 2], [0, 0, 1])
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from gnnddm.partition.metrics import part_adjacency, partition_metrics
from gnnddm.partition.subdomain import Partition, Subdomain


def symmetric_adjacency(edge_index, num_nodes: int, edge_weight=None) -> sp.csr_matrix:
    """The undirected weighted adjacency of a graph: symmetric, without self loops, sorted indices.

    ``A[i, j] = max(w_ij, w_ji)`` where a missing direction counts as absent (so a symmetric input keeps
    its weights and a one-directional edge keeps its own); repeated edges add up. Unweighted graphs
    get weight 1.

    Parameters
    ----------
    edge_index : int [2, E]
    num_nodes : int
    edge_weight : float [E] or None

    Returns
    -------
    scipy.sparse.csr_matrix float64 [N, N]
    """
    edge_index = np.asarray(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {edge_index.shape}")
    src, dst = edge_index[0], edge_index[1]
    if edge_index.shape[1] and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside 0 .. {num_nodes - 1}")
    keep = src != dst
    w = np.ones(int(keep.sum())) if edge_weight is None else np.asarray(edge_weight, np.float64)[keep]
    a = sp.csr_matrix((w, (src[keep], dst[keep])), shape=(num_nodes, num_nodes))
    a = a.maximum(a.T).tocsr()
    a.sort_indices()
    return a


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions ``indptr[r] .. indptr[r+1]-1`` of every row ``r`` in ``rows``, concatenated (vectorised)."""
    starts = indptr[rows].astype(np.int64)
    counts = indptr[rows + 1].astype(np.int64) - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # position = start of its row + rank inside the row
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64)


def build_partition(
    edge_index,
    num_nodes: int,
    parts,
    overlap: int,
    edge_weight=None,
    method: str = "",
    num_parts: int | None = None,
) -> Partition:
    """Subdomains, quality metrics and part adjacency of a part vector.

    Parameters
    ----------
    edge_index : int [2, E]
        The graph (directed edges j -> i; the overlap is grown on its undirected version).
    num_nodes : int
        N.
    parts : int [N]
        Part of each node, values 0 .. p-1 (parts may be empty).
    overlap : int
        delta >= 0, the overlap depth in hops.
    edge_weight : float [E] or None
        Used for the weighted edge cut.
    method : str
        Name of the partitioner, kept for reports.
    num_parts : int or None
        p, when it exceeds ``parts.max() + 1`` (trailing empty parts); default ``parts.max() + 1``.

    Returns
    -------
    Partition
        ``subdomains[k].nodes`` = V_k (ascending) then H_k ordered by hop, then id; ``hop`` the hop
        distance of each local node; ``edge_index`` / ``edge_ids`` the global edges with both endpoints
        local, in global edge order, in local ids.

    Warns
    -----
    UserWarning
        When nodes have no edges, parts are empty or disconnected, or an overlap covers the whole graph.
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    parts = np.asarray(parts)
    if parts.shape != (num_nodes,):
        raise ValueError(f"parts must have shape [{num_nodes}], got {parts.shape}")
    if not np.issubdtype(parts.dtype, np.integer) or (num_nodes and parts.min() < 0):
        raise ValueError("parts must hold non-negative integers")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    parts = parts.astype(np.int64)
    used = int(parts.max()) + 1 if num_nodes else 0
    if num_parts is not None and num_parts < used:
        raise ValueError(f"num_parts={num_parts} but parts holds values up to {used - 1}")
    num_parts = used if num_parts is None else int(num_parts)

    adjacency = symmetric_adjacency(edge_index, num_nodes, edge_weight)
    subdomains = _subdomains(edge_index, num_nodes, parts, num_parts, overlap, adjacency)
    metrics = partition_metrics(adjacency, parts, num_parts, subdomains)
    partition = Partition(
        parts=parts,
        num_parts=num_parts,
        overlap=int(overlap),
        subdomains=tuple(subdomains),
        metrics=metrics,
        method=method,
        part_adjacency=part_adjacency(adjacency, parts),
    )
    _warn_about(partition, adjacency)
    return partition


def _subdomains(edge_index, num_nodes, parts, num_parts, overlap, adjacency) -> list[Subdomain]:
    indptr, indices = adjacency.indptr, adjacency.indices
    # out-edges of every node in global edge order: CSR over the sources of the original edge list
    order = np.argsort(edge_index[0], kind="stable")
    out_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(edge_index[0], minlength=num_nodes), out=out_ptr[1:])
    dst = edge_index[1]

    # owned nodes of every part, ascending; boundary = owned nodes with a neighbour in another part
    owned_order = np.argsort(parts, kind="stable")
    part_ptr = np.zeros(num_parts + 1, dtype=np.int64)
    np.cumsum(np.bincount(parts, minlength=num_parts), out=part_ptr[1:])
    rows = np.repeat(np.arange(num_nodes), np.diff(indptr))
    boundary = np.zeros(num_nodes, dtype=bool)
    boundary[rows[parts[rows] != parts[indices]]] = True
    del rows

    seen = np.full(num_nodes, -1, dtype=np.int64)  # seen[v] == k: v already local to part k
    g2l = np.full(num_nodes, -1, dtype=np.int64)  # global -> local id of the part being built
    subdomains = []
    for k in range(num_parts):
        owned = owned_order[part_ptr[k] : part_ptr[k + 1]]
        seen[owned] = k
        layers, frontier = [owned], owned[boundary[owned]]
        for _ in range(overlap):
            if frontier.size == 0:
                break
            nb = indices[gather_rows(indptr, indices, frontier)]
            nb = np.unique(nb[seen[nb] != k])
            seen[nb] = k
            layers.append(nb.astype(np.int64))
            frontier = nb
        nodes = np.concatenate(layers)
        hop = np.repeat(np.arange(len(layers), dtype=np.int64), [len(x) for x in layers])

        g2l[nodes] = np.arange(nodes.size, dtype=np.int64)
        eids = order[gather_rows(out_ptr, dst, nodes)]
        eids = np.sort(eids[g2l[dst[eids]] >= 0])
        local_edges = g2l[edge_index[:, eids]]
        g2l[nodes] = -1
        subdomains.append(
            Subdomain(
                index=k,
                nodes=nodes,
                num_owned=int(owned.size),
                hop=hop,
                edge_index=local_edges,
                edge_ids=eids,
            )
        )
    return subdomains


def _warn_about(partition: Partition, adjacency: sp.csr_matrix) -> None:
    n = partition.parts.shape[0]
    isolated = int(np.count_nonzero(np.diff(adjacency.indptr) == 0))
    if isolated:
        warnings.warn(
            f"{isolated} of {n} nodes have no edges, so they receive no messages; check the graph settings.",
            stacklevel=3,
        )
    m = partition.metrics
    if m["empty_parts"]:
        warnings.warn(
            f"parts {m['empty_parts']} are empty; lower partition.num_parts or use another partitioner.",
            stacklevel=3,
        )
    split = [k for k, c in enumerate(m["components"]) if c > 1]
    if split:
        warnings.warn(
            f"parts {split[:10]}{' ...' if len(split) > 10 else ''} consist of several connected components, "
            "which weakens their local solves.",
            stacklevel=3,
        )
    if partition.num_parts > 1 and any(s.num_local == n for s in partition.subdomains):
        warnings.warn(
            f"partition.overlap={partition.overlap} is so large that a subdomain covers the whole graph; "
            "the decomposition does no useful splitting.",
            stacklevel=3,
        )
