"""Partitions of a graph into subdomains with overlaps, their quality, and coarse graphs.

- :class:`Partitioner`: a partitioner lifted to data, ``partitioner(data, ...) -> Partition``; each module
  ``metis``, ``random``, ``contiguous``, ``geometric`` has one, ``partition`` (the config option's target).
- :func:`get_partitioner`: the partitioner function of a name; each ``(edge_index, num_nodes, num_parts,
  edge_weight, node_weight, lat, lon, *, seed, ...) -> parts``.
- :func:`build_partition`: part vector -> subdomains with exact ``delta``-hop overlaps and metrics.
- :func:`color_parts`: colouring of the part adjacency for multiplicative Schwarz.
- :func:`coarsen`, :func:`coarsen_levels`: cluster graphs with restriction / prolongation operators.
"""

from gnnddm.partition.coarse import CoarseLevel, coarsen, coarsen_levels
from gnnddm.partition.metrics import color_parts, partition_metrics
from gnnddm.partition.overlap import build_partition, symmetric_adjacency
from gnnddm.partition.partitioners import Partitioner, get_partitioner, partition_graph
from gnnddm.partition.subdomain import Partition, Subdomain

__all__ = [
    "CoarseLevel",
    "Partition",
    "Partitioner",
    "Subdomain",
    "build_partition",
    "coarsen",
    "coarsen_levels",
    "color_parts",
    "get_partitioner",
    "partition_graph",
    "partition_metrics",
    "symmetric_adjacency",
]
