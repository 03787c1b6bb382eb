"""Coarse graphs for two-level Schwarz methods: clusters, restriction and prolongation (docs/algorithms.md).

The fine nodes are aggregated into ``n_c`` clusters (by default METIS with ``n_c`` parts, so clusters are
compact and balanced). With ``a`` the fine area weights, ``A_c = Σ_{i in c} a_i`` and ``c(i)`` the
cluster of node i:

    R [n_c, N]:  R[c, i] = a_i / A_c  if c(i) = c     (area-weighted average:  x_c = Σ_{i in c} a_i x_i / A_c)
    P [N, n_c]:  P[i, c] = 1          if c(i) = c     (piecewise-constant injection)

so ``R @ P = I`` (a cluster-constant field survives restriction and prolongation unchanged) and
``Σ_c A_c (R x)_c = Σ_i a_i x_i`` (area-weighted means are preserved). Coarse edges join clusters linked
by at least one fine edge, weighted by the sum of those fine weights (``P^T A P`` without its diagonal);
coarse positions are area-weighted centroids on the sphere and coarse edge features ``(dx, dy, distance)``
are computed from them as for any graph. Because GNN weights do not depend on graph size, the same model
runs on the coarse graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gnnddm.graph.features import edge_features
from gnnddm.graph.sphere import unit_vectors
from gnnddm.partition.overlap import symmetric_adjacency
from gnnddm.partition.partitioners import get_partitioner


@dataclass(frozen=True, eq=False)
class CoarseLevel:
    """One coarse graph and its transfer operators to the graph it coarsens.

    Attributes
    ----------
    assign : int64 [N]
        Cluster of each fine node, 0 .. num_clusters-1 (no empty clusters).
    num_clusters : int
        n_c (may be below the number asked for when the partitioner left clusters empty).
    restriction : scipy.sparse.csr_matrix [n_c, N]
        Area-weighted cluster averaging R.
    prolongation : scipy.sparse.csr_matrix [N, n_c]
        Piecewise-constant injection P.
    edge_index : int64 [2, E_c]
        Coarse edges, symmetric, no self loops, sorted by target then source.
    edge_weight : float32 [E_c]
        Sum of the weights of the fine edges between the two clusters.
    edge_attr : float32 [E_c, 3] or None
        ``(dx, dy, distance)`` between cluster centroids (None without positions).
    lat, lon : float64 [n_c] or None
        Area-weighted centroids on the sphere, degrees; lon in [-180, 180).
    area : float64 [n_c]
        Summed fine areas, normalised to mean 1.
    """

    assign: np.ndarray
    num_clusters: int
    restriction: sp.csr_matrix
    prolongation: sp.csr_matrix
    edge_index: np.ndarray
    edge_weight: np.ndarray
    edge_attr: np.ndarray | None
    lat: np.ndarray | None
    lon: np.ndarray | None
    area: np.ndarray

    def restrict(self, x: np.ndarray, axis: int = 0) -> np.ndarray:
        """``R x`` along the node axis ``axis`` of ``x`` (e.g. axis=1 for fields ``[T, N, V]``)."""
        return _apply(self.restriction, x, axis)

    def prolong(self, xc: np.ndarray, axis: int = 0) -> np.ndarray:
        """``P x_c`` along the cluster axis ``axis`` of ``xc``."""
        return _apply(self.prolongation, xc, axis)

    def __repr__(self) -> str:
        return (
            f"CoarseLevel(clusters={self.num_clusters}, fine_nodes={self.assign.shape[0]}, "
            f"edges={self.edge_index.shape[1]})"
        )


def _apply(op: sp.csr_matrix, x: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(x), axis, 0)
    out = op @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(out.reshape((op.shape[0],) + moved.shape[1:]), 0, axis)


def coarsen(
    edge_index,
    num_nodes: int,
    num_clusters: int,
    edge_weight=None,
    area=None,
    lat=None,
    lon=None,
    method: str = "metis",
    seed: int = 0,
    node_weight=None,
) -> CoarseLevel:
    """Aggregate a graph into ``num_clusters`` clusters with the partitioner named ``method``.

    Parameters
    ----------
    edge_index : int [2, E]
    num_nodes : int
    num_clusters : int
        n_c, 1 <= n_c <= N.
    edge_weight : float [E] or None
        Fine coupling weights (1 when None).
    area : float [N] or None
        Fine area weights (1 when None).
    lat, lon : float [N] or None
        Fine positions in degrees (needed for the geometric method, centroids and edge features).
    method : str
        Partitioner that forms the clusters.
    seed : int
    node_weight : float [N] or None
        Balance clusters by this weight (e.g. fine nodes per node when coarsening a coarse graph).
    """
    if not 1 <= num_clusters <= num_nodes:
        raise ValueError(f"num_clusters must be between 1 and the number of nodes ({num_nodes}), got {num_clusters}")
    parts = get_partitioner(method)(
        edge_index, num_nodes, int(num_clusters), edge_weight=edge_weight, node_weight=node_weight,
        lat=lat, lon=lon, seed=seed,
    )
    return aggregate(parts, edge_index, num_nodes, edge_weight=edge_weight, area=area, lat=lat, lon=lon)


def aggregate(parts, edge_index, num_nodes: int, edge_weight=None, area=None, lat=None, lon=None,
              edges: bool = True) -> CoarseLevel:
    """The coarse level whose clusters are the distinct labels of ``parts`` [N] (any integers).

    Clusters are numbered in increasing label order; R, P, the coarse edges ``P^T A P`` (diagonal
    dropped), centroids and edge features as described in the module docstring. ``edges=False`` skips
    the coarse edges (empty), for callers that build the coarse graph themselves.
    """
    _, assign = np.unique(np.asarray(parts), return_inverse=True)
    assign = assign.astype(np.int64).reshape(-1)
    if assign.shape[0] != num_nodes:
        raise ValueError(f"parts must label each of the {num_nodes} nodes, got {assign.shape[0]} labels")
    n_c = int(assign.max()) + 1
    area = np.ones(num_nodes) if area is None else np.asarray(area, dtype=np.float64)
    nodes = np.arange(num_nodes)

    cluster_area = np.bincount(assign, weights=area, minlength=n_c)
    restriction = sp.csr_matrix((area / cluster_area[assign], (assign, nodes)), shape=(n_c, num_nodes))
    prolongation = sp.csr_matrix((np.ones(num_nodes), (nodes, assign)), shape=(num_nodes, n_c))

    fine = symmetric_adjacency(edge_index if edges else np.zeros((2, 0), dtype=np.int64), num_nodes,
                               edge_weight if edges else None)
    coarse = (prolongation.T @ fine @ prolongation).tocsr()
    coarse.setdiag(0)
    coarse.eliminate_zeros()
    coarse.sort_indices()
    targets = np.repeat(np.arange(n_c, dtype=np.int64), np.diff(coarse.indptr))
    coarse_edges = np.stack([coarse.indices.astype(np.int64), targets])

    clat = clon = attr = None
    if lat is not None and lon is not None:
        clat, clon = centroids(restriction, lat, lon)
        attr = edge_features(clat, clon, coarse_edges)
    return CoarseLevel(
        assign=assign,
        num_clusters=n_c,
        restriction=restriction,
        prolongation=prolongation,
        edge_index=coarse_edges,
        edge_weight=coarse.data.astype(np.float32),
        edge_attr=attr,
        lat=clat,
        lon=clon,
        area=cluster_area / cluster_area.mean(),
    )


def centroids(restriction: sp.csr_matrix, lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted centroids on the sphere of the clusters of ``restriction`` (degrees, lon in [-180, 180))."""
    centre = restriction @ unit_vectors(lat, lon)
    centre /= np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-300)
    clat = np.rad2deg(np.arcsin(np.clip(centre[:, 2], -1.0, 1.0)))
    clon = (np.rad2deg(np.arctan2(centre[:, 1], centre[:, 0])) + 180.0) % 360.0 - 180.0
    return clat, clon


def coarsen_levels(
    edge_index,
    num_nodes: int,
    levels,
    edge_weight=None,
    area=None,
    lat=None,
    lon=None,
    method: str = "metis",
    seed: int = 0,
) -> list[CoarseLevel]:
    """Repeated coarsening: level k aggregates the graph of level k-1 into ``levels[k]`` clusters.

    Each level's ``restriction`` / ``prolongation`` map between it and the level before it (level 0
    against the fine graph); clusters of later levels are balanced by the number of fine nodes they hold.

    Parameters
    ----------
    levels : sequence of int
        Strictly decreasing cluster counts, the first below ``num_nodes``.

    Returns
    -------
    list[CoarseLevel], finest first
    """
    levels = [int(n) for n in levels]
    sizes = [num_nodes, *levels]
    if not levels or any(b >= a for a, b in zip(sizes, sizes[1:], strict=False)) or levels[-1] < 1:
        raise ValueError(f"levels must be strictly decreasing cluster counts below {num_nodes}, got {levels}")
    out: list[CoarseLevel] = []
    count = None  # fine nodes per node of the current graph
    for n_c in levels:
        level = coarsen(
            edge_index, num_nodes, n_c, edge_weight=edge_weight, area=area, lat=lat, lon=lon,
            method=method, seed=seed, node_weight=count,
        )
        count = np.bincount(level.assign, weights=np.ones(num_nodes) if count is None else count)
        out.append(level)
        edge_index, num_nodes, edge_weight = level.edge_index, level.num_clusters, level.edge_weight
        area, lat, lon = level.area, level.lat, level.lon
    return out
