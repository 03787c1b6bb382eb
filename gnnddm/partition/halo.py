"""One-hop halos for layer-by-layer halo exchange, as frozen data.

A deep GNN does not need an L-hop overlap to be exact: a subdomain can hold its owned nodes ``V_k`` plus
the one-hop halo ``H¹_k`` (the sources of edges into ``V_k`` that other parts own), compute one layer on
its owned nodes, and receive the new features of its halo nodes from their owners before the next layer
(the exchange of DistDGL's and Anemoi's sharded GNNs). :class:`HaloPlan` holds what that needs:

- per part k, the local node list ``nodes[k]`` = owned nodes (in the partition's order) then the halo
  nodes (ascending global id), and the local graph: every edge j -> i whose target i is owned (so an
  owned node sees all its incoming edges; halo nodes have none: their outputs are never used);
- the global in-degree of every local node, and its weighted in-degree, because a layer may normalise a
  message by its source's degree (GCN), which the local graph does not show for halo nodes;
- for every ordered pair of parts (j, k) the rows ``send[(j, k)]`` of j's owned nodes that k needs, and
  the positions ``recv[(j, k)]`` in k's halo where they go.

A forward exchange copies ``h_j[send[(j, k)]]`` into ``halo_k[recv[(j, k)]]``; the backward exchange adds
the gradients of the halo rows back onto the owners' rows (the transpose of the copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnnddm.partition.subdomain import Partition


@dataclass(frozen=True, eq=False)
class HaloPlan:
    """Local graphs with one-hop halos and the row maps of the halo exchange (see module docstring).

    Attributes
    ----------
    num_parts : int
    nodes : dict[int, int64 [n_owned + n_halo]]
        Global ids of part k's local nodes, owned first.
    num_owned : dict[int, int]
    edge_index : dict[int, int64 [2, E_k]]
        Local ids of the edges into owned nodes.
    edge_ids : dict[int, int64 [E_k]]
        Their global edge ids (to slice edge weights and features).
    in_degree, in_weight : dict[int, float32 / float64 [n_local]]
        Global (unweighted, weighted) in-degree of each local node.
    send, recv : dict[(int, int), int64 [r]]
        Owned-row indices in part j and halo positions in part k of the rows j sends to k.
    """

    num_parts: int
    nodes: dict
    num_owned: dict
    edge_index: dict
    edge_ids: dict
    in_degree: dict
    in_weight: dict
    send: dict
    recv: dict

    def num_halo(self, k: int) -> int:
        return len(self.nodes[k]) - self.num_owned[k]

    def rows_sent(self, parts_of: list[tuple[int, ...]] | None = None) -> int:
        """The largest number of rows one rank sends in an exchange.

        ``parts_of[r]``: the parts of rank r (default: one part per rank). Rows sent between two parts
        of the same rank stay in memory and are not counted.
        """
        blocks = parts_of or [(k,) for k in range(self.num_parts)]
        rank_of = {k: r for r, block in enumerate(blocks) for k in block}
        sent = np.zeros(len(blocks), dtype=np.int64)
        for (j, k), rows in self.send.items():
            if rank_of[j] != rank_of[k]:
                sent[rank_of[j]] += len(rows)
        return int(sent.max(initial=0))

    def __repr__(self) -> str:
        halo = sum(self.num_halo(k) for k in self.nodes)
        owned = sum(self.num_owned.values())
        return f"HaloPlan(parts={self.num_parts}, halo_ratio={halo / max(owned, 1):.3f}, pairs={len(self.send)})"


def halo_plan(partition: Partition, edge_index, num_nodes: int, edge_weight=None) -> HaloPlan:
    """The one-hop halo plan of ``partition`` on the directed graph ``edge_index`` (j -> i)."""
    ei = np.asarray(edge_index, dtype=np.int64)
    src, dst = ei[0], ei[1]
    weight = np.ones(ei.shape[1]) if edge_weight is None else np.asarray(edge_weight, dtype=np.float64)
    degree = np.bincount(dst, minlength=num_nodes).astype(np.float32)
    wdegree = np.bincount(dst, weights=weight, minlength=num_nodes)  # float64: a sum keeps its precision
    owner = np.asarray(partition.parts, dtype=np.int64)
    # owned nodes in the order of the partition's subdomains, so that owned rows line up with theirs
    owned = {sd.index: np.asarray(sd.nodes[: sd.num_owned], dtype=np.int64) for sd in partition.subdomains}
    row_in_owner = np.empty(num_nodes, dtype=np.int64)
    for ids in owned.values():
        row_in_owner[ids] = np.arange(len(ids))
    order = np.argsort(dst, kind="stable")
    nodes, num_owned, local_edges, edge_ids, deg, wdeg = {}, {}, {}, {}, {}, {}
    send, recv = {}, {}
    for k, ids in owned.items():
        into = order[np.isin(dst[order], ids)]
        sources = src[into]
        halo = np.unique(sources[owner[sources] != k])
        local = np.concatenate([ids, halo])
        pos = np.full(num_nodes, -1, dtype=np.int64)
        pos[local] = np.arange(len(local))
        nodes[k], num_owned[k] = local, len(ids)
        local_edges[k] = np.stack([pos[sources], pos[dst[into]]])
        edge_ids[k] = into
        deg[k], wdeg[k] = degree[local], wdegree[local]
        for j in np.unique(owner[halo]):
            members = np.flatnonzero(owner[halo] == j)
            send[(int(j), k)] = row_in_owner[halo[members]]
            recv[(int(j), k)] = members
    return HaloPlan(int(partition.num_parts), nodes, num_owned, local_edges, edge_ids, deg, wdeg, send, recv)
