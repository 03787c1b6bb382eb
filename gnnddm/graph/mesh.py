"""The native adjacency of unstructured meshes.

Model meshes (e.g. ICON's triangular cells) come with their own neighbourhood: the loader stores cells
that share a vertex as ``WeatherGraphData.native_edges``. That adjacency follows the model's
discretisation, which a kNN search on cell centres only approximates (it misses neighbours across
elongated cells and adds ones that share no vertex), so mesh data should use it.
"""

from __future__ import annotations

import numpy as np

from gnnddm.errors import DataError
from gnnddm.graph.edges import coalesce, remove_self_loops


def mesh_edges(native_edges, num_nodes: int, source: str = "the data") -> np.ndarray:
    """Validated native edges in canonical order, without self loops or duplicates, int64 ``[2, E]``.

    Raises
    ------
    DataError
        When the edges are missing, not ``[2, E]``, or name nodes outside ``[0, num_nodes)``.
    """
    if native_edges is None:
        raise DataError(
            f"graph=mesh needs the native adjacency of an unstructured mesh, but {source} has none "
            "(native_edges is empty); use graph=knn or graph=radius for these locations"
        )
    edges = np.asarray(native_edges)
    if edges.ndim != 2 or edges.shape[0] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise DataError(f"{source}: native_edges must be an integer array [2, E], got {edges.dtype} {edges.shape}")
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        raise DataError(
            f"{source}: native_edges name nodes outside [0, {num_nodes}) "
            f"(min {edges.min()}, max {edges.max()})"
        )
    return coalesce(remove_self_loops(edges), num_nodes)
