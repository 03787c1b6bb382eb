"""Quality metrics of a partition, as plain data.

Every function is pure and takes the undirected weighted adjacency ``A`` (scipy CSR [N, N], symmetric,
no self loops; see :func:`gnnddm.partition.overlap.symmetric_adjacency`) and the part vector. What the
numbers mean for training:

- ``edge_cut`` / ``edge_cut_fraction``: coupling dropped by a zero-overlap decomposition; the smaller,
  the closer the local problems are to the global one.
- ``imbalance`` = max part size / mean: the slowest subdomain sets the parallel time.
- ``halo_ratio`` = Σ_k |H_k| / N: redundant work and memory of the overlaps.
- ``boundary_fraction``: nodes with a neighbour in another part (they need the halo).
- ``components``: connected components per part; a disconnected part is a poor local problem.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def _cut_mask(adjacency: sp.csr_matrix, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of every stored entry of ``A`` and whether that entry joins two different parts."""
    rows = np.repeat(np.arange(adjacency.shape[0]), np.diff(adjacency.indptr))
    return rows, parts[rows] != parts[adjacency.indices]


def part_sizes(parts: np.ndarray, num_parts: int) -> np.ndarray:
    """|V_k| for k = 0 .. p-1, int64 [p]."""
    return np.bincount(np.asarray(parts, dtype=np.int64), minlength=num_parts)


def imbalance(parts: np.ndarray, num_parts: int) -> float:
    """max_k |V_k| / (N / p); 1.0 is perfect balance."""
    n = len(parts)
    return float(part_sizes(parts, num_parts).max() * num_parts / n) if n else 1.0


def edge_cut(adjacency: sp.csr_matrix, parts: np.ndarray) -> tuple[int, float]:
    """Number of undirected edges joining two parts, and their share of the total edge weight."""
    _, cut = _cut_mask(adjacency, parts)
    total = float(adjacency.data.sum())
    fraction = float(adjacency.data[cut].sum()) / total if total > 0 else 0.0
    return int(np.count_nonzero(cut)) // 2, fraction


def boundary_fraction(adjacency: sp.csr_matrix, parts: np.ndarray) -> float:
    """Fraction of nodes with at least one neighbour in another part."""
    rows, cut = _cut_mask(adjacency, parts)
    n = adjacency.shape[0]
    return float(np.unique(rows[cut]).size / n) if n else 0.0


def components_per_part(adjacency: sp.csr_matrix, parts: np.ndarray, num_parts: int) -> list[int]:
    """Number of connected components of the subgraph induced on each part (0 for an empty part)."""
    rows, cut = _cut_mask(adjacency, parts)
    keep = ~cut
    n = adjacency.shape[0]
    inner = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], adjacency.indices[keep])), shape=(n, n))
    num, label = connected_components(inner, directed=False)
    first = np.zeros(num, dtype=np.int64)
    first[label] = np.arange(n)  # one node of every component (all of its nodes share a part)
    return np.bincount(parts[first], minlength=num_parts).astype(int).tolist()


def part_adjacency(adjacency: sp.csr_matrix, parts: np.ndarray) -> np.ndarray:
    """Pairs (k, l), k != l, of parts joined by at least one edge; both directions, sorted; int64 [2, P_E]."""
    rows, cut = _cut_mask(adjacency, parts)
    pairs = np.stack([parts[rows[cut]], parts[adjacency.indices[cut]]]).astype(np.int64)
    if pairs.shape[1] == 0:
        return np.zeros((2, 0), dtype=np.int64)
    return np.unique(pairs, axis=1)


def halo_ratio(subdomains, num_nodes: int) -> float:
    """Σ_k |H_k| / N, the redundant compute of the overlaps."""
    halo = sum(s.num_local - s.num_owned for s in subdomains)
    return float(halo / num_nodes) if num_nodes else 0.0


def partition_metrics(adjacency: sp.csr_matrix, parts: np.ndarray, num_parts: int, subdomains) -> dict:
    """All metrics of one partition as a JSON-friendly dict (stored in ``Partition.metrics``).

    Keys: ``edge_cut``, ``edge_cut_fraction``, ``imbalance``, ``halo_ratio``, ``boundary_fraction``,
    ``components`` (list per part), ``part_sizes`` (list), ``empty_parts`` (list of part ids),
    ``max_local_nodes`` (largest |V_k ∪ H_k|, the memory of the biggest local problem).
    """
    sizes = part_sizes(parts, num_parts)
    cut, cut_fraction = edge_cut(adjacency, parts)
    n = len(parts)
    return {
        "edge_cut": cut,
        "edge_cut_fraction": cut_fraction,
        "imbalance": imbalance(parts, num_parts),
        "halo_ratio": halo_ratio(subdomains, n),
        "boundary_fraction": boundary_fraction(adjacency, parts),
        "components": components_per_part(adjacency, parts, num_parts),
        "part_sizes": sizes.astype(int).tolist(),
        "empty_parts": np.flatnonzero(sizes == 0).astype(int).tolist(),
        "max_local_nodes": max((s.num_local for s in subdomains), default=0),
    }


def color_parts(partition) -> np.ndarray:
    """Greedy colouring of the part adjacency graph: adjacent parts get different colours.

    Parts are visited by decreasing number of neighbours (Welsh-Powell) and each takes the smallest colour
    none of its neighbours holds, so at most ``max degree + 1`` colours are used. Multiplicative Schwarz
    with ``colored: true`` solves all parts of one colour together.

    Parameters
    ----------
    partition : Partition
        Uses ``num_parts`` and ``part_adjacency``.

    Returns
    -------
    int64 [p]
        Colour of each part, 0 .. n_colors-1.
    """
    p = partition.num_parts
    pairs = partition.part_adjacency
    if pairs is None:
        pairs = np.zeros((2, 0), dtype=np.int64)
    neighbours: dict[int, set[int]] = {k: set() for k in range(p)}
    for k, l in pairs.T.tolist():
        neighbours[k].add(l)
    colour = greedy_colouring(neighbours)
    return np.array([colour[k] for k in range(p)], dtype=np.int64)


def greedy_colouring(neighbours: dict[int, set[int]]) -> dict[int, int]:
    """Welsh-Powell: vertices by decreasing degree (ties: smaller id first), each the smallest colour none
    of its coloured neighbours holds (at most max degree + 1 colours). The one colouring of the package."""
    colour: dict[int, int] = {}
    for k in sorted(neighbours, key=lambda k: (-len(neighbours[k]), k)):
        used = {colour[n] for n in neighbours[k] if n in colour}
        colour[k] = next(c for c in range(len(neighbours) + 1) if c not in used)
    return colour


def colour_classes(parts: np.ndarray, edge_index: np.ndarray, active) -> list[list[int]]:
    """Greedy colouring of the subdomain adjacency graph (parts joined by an edge get different colours).

    Parts are coloured in order of decreasing degree (ties: part order); returns the colour classes,
    each sorted, in colour order.
    """
    active = [int(k) for k in active]
    a, b = parts[edge_index[0]], parts[edge_index[1]]
    cut = a != b
    neighbours = {k: set() for k in active}
    for u, v in zip(a[cut].tolist(), b[cut].tolist(), strict=True):
        if u in neighbours and v in neighbours:
            neighbours[u].add(v)
            neighbours[v].add(u)
    colour = greedy_colouring(neighbours)
    classes = [sorted(k for k in active if colour[k] == c) for c in range(max(colour.values(), default=-1) + 1)]
    return [c for c in classes if c]
