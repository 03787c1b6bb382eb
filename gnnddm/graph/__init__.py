"""Graphs on the sphere: neighbourhoods of grids, points and meshes, with edge weights and features.

Builders (the ``graph`` config group) live in :mod:`gnnddm.graph.build`; the numpy functions they are
made of (:func:`grid_edges`, :func:`knn_edges`, :func:`radius_edges`, :func:`edge_features`,
:func:`edge_weights`) can be used on bare ``lat``/``lon`` arrays.
"""

from gnnddm.graph.build import grid_graph, knn_graph, mesh_graph, radius_graph
from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.grid import grid_edges
from gnnddm.graph.knn import knn_edges, radius_edges
from gnnddm.graph.sphere import haversine, tangent_displacement, unit_vectors
from gnnddm.graph.weights import correlation_weights, edge_weights, kernel_weights

__all__ = [
    "EDGE_ATTR_NAMES",
    "correlation_weights",
    "edge_features",
    "edge_weights",
    "grid_edges",
    "grid_graph",
    "haversine",
    "kernel_weights",
    "knn_edges",
    "knn_graph",
    "mesh_graph",
    "radius_edges",
    "radius_graph",
    "tangent_displacement",
    "unit_vectors",
]
