"""Partitioning the joint graph of an encoder-processor-decoder model: the mesh by METIS, the grid with it.

On the joint graph of ``graph=icosahedral`` (grid nodes, hidden-mesh nodes; encoder edges grid -> mesh,
processor edges mesh <-> mesh, decoder edges mesh -> grid, told apart by the one-hot edge features
``is_encoder``, ``is_processor``, ``is_decoder``), the parts follow the mesh:

1. METIS partitions the mesh nodes on the processor edges (with a multi-mesh, the long edges of the coarse
   levels count like the others), each mesh node weighted by ``1 +`` the grid nodes it decodes into / 3, so
   that parts balance the work of the grid side too (a latitude-longitude grid crowds its nodes towards
   the poles, where a mesh triangle covers many more grid nodes than at the equator);
2. each grid node belongs to the part of its decoder triangle: the part holding most of the 3 vertices it
   is decoded from (ties: the lowest part id);
3. a node that is only encoded into the mesh (an observation node of ``task=assimilate``) belongs to the part
   holding most of the mesh nodes it sends to.

Overlaps are then built on the joint graph as for any graph (:mod:`gnnddm.partition.overlap`): with
``overlap >= processor_layers + 2`` (the model's hops) every subdomain problem is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gnnddm.errors import ConfigError
from gnnddm.partition.metis import metis
from gnnddm.partition.partitioners import Partitioner
from gnnddm.schema.fields import at_least
from gnnddm.schema.partition import IMBALANCE, PartitionConfig

TYPES = ("is_encoder", "is_processor", "is_decoder")


def edge_kinds(edge_attr, edge_attr_names) -> dict[str, np.ndarray]:
    """bool [E] per kind (``encoder``, ``processor``, ``decoder``) from the one-hot edge features."""
    names = tuple(edge_attr_names or ())
    if edge_attr is None or any(t not in names for t in TYPES):
        raise ConfigError("partition=mesh: the graph has no edge kinds (edge features is_encoder, is_processor, "
                          "is_decoder); it partitions the joint graph of graph=icosahedral")
    attr = np.asarray(edge_attr)
    return {t[3:]: attr[:, names.index(t)] > 0.5 for t in TYPES}


def mesh(
    edge_index,
    num_nodes: int,
    num_parts: int,
    edge_weight=None,
    node_weight=None,
    lat=None,
    lon=None,
    edge_attr=None,
    edge_attr_names=(),
    *,
    seed: int = 0,
    imbalance: float = 1.03,
) -> np.ndarray:
    """Parts of the joint graph: METIS on the mesh, grid nodes with their decoder triangle (module docstring).

    Returns
    -------
    int64 [N]
    """
    kinds = edge_kinds(edge_attr, edge_attr_names)
    edge_index = np.asarray(edge_index)
    proc, dec = edge_index[:, kinds["processor"]], edge_index[:, kinds["decoder"]]
    is_mesh = np.zeros(num_nodes, dtype=bool)
    is_mesh[proc.ravel()] = True
    is_mesh[dec[0]] = True
    is_mesh[edge_index[1, kinds["encoder"]]] = True
    mesh_nodes = np.nonzero(is_mesh)[0]
    if num_parts > mesh_nodes.size:
        raise ConfigError(f"partition.num_parts={num_parts} exceeds the {mesh_nodes.size} mesh nodes; lower it or "
                          "raise graph.refinement")
    local = np.full(num_nodes, -1, dtype=np.int64)
    local[mesh_nodes] = np.arange(mesh_nodes.size)
    work = 1.0 + np.bincount(local[dec[0]], minlength=mesh_nodes.size) / 3.0
    mesh_parts = metis(local[proc], mesh_nodes.size, num_parts, node_weight=work, seed=seed, imbalance=imbalance)
    parts = np.full(num_nodes, -1, dtype=np.int64)
    parts[mesh_nodes] = mesh_parts
    # each decoded node: the part most of its triangle's vertices hold (ties: the lowest id)
    votes = _votes(dec[1], mesh_parts[local[dec[0]]], num_nodes, num_parts)
    decoded = votes.sum(axis=1) > 0
    rest = ~is_mesh & decoded
    parts[rest] = votes[rest].argmax(axis=1)
    # a node that only encodes into the mesh (an observation node of task=assimilate): the part most of the
    # mesh nodes it sends to hold
    enc = edge_index[:, kinds["encoder"]]
    sends = _votes(enc[0], mesh_parts[local[enc[1]]], num_nodes, num_parts)
    senders = (parts < 0) & (sends.sum(axis=1) > 0)
    parts[senders] = sends[senders].argmax(axis=1)
    orphans = np.nonzero(parts < 0)[0]
    if orphans.size:
        raise ConfigError(f"partition=mesh: {orphans.size} nodes are neither mesh nodes nor decoded from nor "
                          "encoded into the mesh (the joint graph of graph=icosahedral decodes every grid node)")
    return parts


def _votes(nodes: np.ndarray, parts: np.ndarray, num_nodes: int, num_parts: int) -> np.ndarray:
    """int64 [num_nodes, num_parts]: for each node, how many of its edges (``nodes[k]``) reach each part
    (``parts[k]``)."""
    votes = np.zeros((num_nodes, num_parts), dtype=np.int64)
    np.add.at(votes, (nodes, parts), 1)
    return votes


@dataclass
class MeshPartitionConfig(PartitionConfig):
    """``partition=mesh``: METIS on the mesh of the joint graph (:func:`mesh`). The overlap of 6 hops makes the
    subdomain problems of the encoder-processor-decoder exact at its default depth (``processor_layers`` 4,
    + 2)."""

    _target_: str = "gnnddm.partition.mesh.partition"
    overlap: int = field(default=6, metadata=at_least(0))
    imbalance: float = field(default=1.03, metadata=IMBALANCE)

    target_prefix = None  # its own target only


#: the partitioner on graph-carrying data: the ``_target_`` of conf/partition/mesh.yaml
partition = Partitioner(mesh, MeshPartitionConfig)
