"""METIS k-way partitioning on physically weighted edges (pymetis).

METIS minimises the weight of cut edges under a balance constraint. Edge weights must be positive
integers, so ``edge_weight`` (larger = stronger coupling) is scaled to ``round(w / max(w) * weight_scale)``,
at least 1; with ``weight_scale = 1000`` weights that differ by more than 0.1 % of the largest stay
distinct. The result is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymetis

from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import symmetric_adjacency
from gnnddm.partition.partitioners import Partitioner
from gnnddm.schema.fields import at_least
from gnnddm.schema.partition import IMBALANCE, PartitionConfig


def metis(
    edge_index,
    num_nodes: int,
    num_parts: int,
    edge_weight=None,
    node_weight=None,
    lat=None,
    lon=None,
    *,
    seed: int = 0,
    imbalance: float = 1.03,
    weight_scale: int = 1000,
) -> np.ndarray:
    """Parts from METIS (recursive bisection for p <= 8, k-way above, as pymetis chooses).

    Parameters
    ----------
    edge_index : int [2, E]
        Symmetrised and stripped of self loops before METIS sees it.
    num_nodes, num_parts : int
    edge_weight : float [E] or None
        Coupling strength; scaled to integers 1 .. weight_scale.
    node_weight : number [N] or None
        Work per node (e.g. number of valid observations), rounded to integers >= 1.
    lat, lon
        Ignored.
    seed : int
        METIS random seed.
    imbalance : float
        Allowed max part weight / mean (METIS ``ufactor = 1000 * (imbalance - 1)``).
    weight_scale : int
        Largest integer edge weight.

    Returns
    -------
    int64 [N]
    """
    if imbalance < 1.0:
        raise ConfigError(f"partition.imbalance: must be >= 1.0 (max part size / mean), got {imbalance}")
    if isinstance(weight_scale, bool) or not isinstance(weight_scale, int) or weight_scale < 1:
        raise ConfigError(f"partition.weight_scale: expected an integer >= 1, got {weight_scale!r}")
    if num_parts == 1:
        return np.zeros(num_nodes, dtype=np.int64)

    adj = symmetric_adjacency(edge_index, num_nodes, edge_weight)
    eweights = None
    if edge_weight is not None and adj.nnz:
        eweights = np.maximum(1, np.rint(adj.data / adj.data.max() * weight_scale)).astype(np.int64)
    vweights = None
    if node_weight is not None:
        vweights = np.maximum(1, np.rint(np.asarray(node_weight, dtype=np.float64))).astype(np.int64)
    options = pymetis.Options(seed=int(seed), ufactor=int(round(1000 * (imbalance - 1.0))))
    result = pymetis.part_graph(
        int(num_parts),
        adjacency=pymetis.CSRAdjacency(adj_starts=adj.indptr.astype(np.int64), adjacent=adj.indices.astype(np.int64)),
        eweights=eweights,
        vweights=vweights,
        options=options,
    )
    return np.asarray(result.vertex_part, dtype=np.int64)


@dataclass
class MetisPartitionConfig(PartitionConfig):
    """``partition=metis``: the balance and the integer edge-weight scale of :func:`metis`."""

    _target_: str = "gnnddm.partition.metis.partition"
    imbalance: float = field(default=1.03, metadata=IMBALANCE)
    weight_scale: int = field(default=1000, metadata=at_least(1))

    target_prefix = None  # its own target only


#: the partitioner on graph-carrying data: the ``_target_`` of conf/partition/metis.yaml
partition = Partitioner(metis, MetisPartitionConfig)
