"""Subdomains and partitions as frozen data.

A :class:`Partition` is computed once from a graph and a part vector and then only read: algorithms,
the distributed layer and reports take their topology from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Subdomain:
    """One part ``V_k`` with its ``delta``-hop overlap ``H_k`` and the graph induced on ``V_k ∪ H_k``.

    Attributes
    ----------
    index : int
        k, the part number.
    nodes : int64 [n_local]
        Global ids of the local nodes: the owned nodes first (ascending), then the overlap nodes
        ordered by hop distance, then global id. ``nodes[i]`` is the global id of local node i.
    num_owned : int
        |V_k|; local ids ``0 .. num_owned-1`` are owned.
    hop : int64 [n_local]
        Hop distance of each local node from V_k (0 for owned nodes, 1..delta for overlap nodes).
    edge_index : int64 [2, E_k]
        Local ids of every global edge whose two endpoints are both local (induced subgraph).
    edge_ids : int64 [E_k]
        Global edge ids of those edges, to slice any per-edge array (``edge_weight``, ``edge_attr``).
    """

    index: int
    nodes: np.ndarray
    num_owned: int
    hop: np.ndarray
    edge_index: np.ndarray
    edge_ids: np.ndarray

    @property
    def num_local(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def owned(self) -> np.ndarray:
        """Global ids of the owned nodes V_k."""
        return self.nodes[: self.num_owned]

    @property
    def overlap(self) -> np.ndarray:
        """Global ids of the overlap nodes H_k."""
        return self.nodes[self.num_owned :]

    @property
    def owned_mask(self) -> np.ndarray:
        m = np.zeros(self.num_local, dtype=bool)
        m[: self.num_owned] = True
        return m

    def __repr__(self) -> str:
        return (
            f"Subdomain(k={self.index}, owned={self.num_owned}, overlap={self.num_local - self.num_owned}, "
            f"edges={self.edge_index.shape[1]})"
        )


@dataclass(frozen=True, eq=False)
class Partition:
    """A part vector, its subdomains and its quality metrics.

    Attributes
    ----------
    parts : int64 [N]
        Part of each node, values 0 .. num_parts-1.
    num_parts : int
    overlap : int
        delta, the overlap depth in hops.
    subdomains : tuple[Subdomain, ...]
        One per part, in part order.
    metrics : dict
        ``edge_cut`` (count of undirected cut edges), ``edge_cut_fraction`` (fraction of total edge
        weight), ``imbalance`` (max part size / mean), ``halo_ratio`` (Σ|H_k| / N),
        ``boundary_fraction``, ``components`` (list, per part), ... (see gnnddm.partition.metrics).
    method : str
        Name of the partitioner.
    part_adjacency : int64 [2, P_E]
        Pairs (k, l) of parts joined by at least one edge (both directions), for colouring.
    """

    parts: np.ndarray
    num_parts: int
    overlap: int
    subdomains: tuple[Subdomain, ...]
    metrics: dict = field(default_factory=dict)
    method: str = ""
    part_adjacency: np.ndarray | None = None

    def __repr__(self) -> str:
        """Quality report: parts, method, overlap, edge cut, halo ratio, imbalance, components."""
        m = self.metrics
        lines = [f"Partition: {self.num_parts} parts ({self.method or 'given'}), overlap {self.overlap}"]
        if "edge_cut" in m:
            comps = m["components"]
            split = [k for k, c in enumerate(comps) if c > 1]
            comp_txt = "every part connected" if not split else f"parts with several: {split[:8]}"
            sizes = m["part_sizes"]
            lines += [
                f"  edge cut        {m['edge_cut']} edges ({100 * m['edge_cut_fraction']:.2f} % of edge weight)",
                f"  halo ratio      {m['halo_ratio']:.3f}",
                f"  imbalance       {m['imbalance']:.3f} (part sizes {min(sizes)} .. {max(sizes)})",
                f"  boundary nodes  {100 * m['boundary_fraction']:.2f} %",
                f"  components      {sum(comps)} ({comp_txt})",
            ]
            if m.get("empty_parts"):
                lines.append(f"  empty parts     {m['empty_parts']}")
        return "\n".join(lines)
