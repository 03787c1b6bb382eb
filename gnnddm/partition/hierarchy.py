"""Level hierarchies for multilevel training and two-level coarse spaces (docs/multilevel.md).

A hierarchy is a list of :class:`~gnnddm.partition.coarse.CoarseLevel`, finest first; level ℓ
aggregates the nodes of level ℓ − 1 (level 0 aggregates the data's nodes). Every level restricts fields
by area-weighted averaging (``R``, conservative: ``Σ_c A_c (R x)_c = Σ_i a_i x_i`` and a constant field
stays that constant), so targets and inputs on a coarse level are the cell means of the finer one.
Three coarsenings (``ddm.coarsening``):

- ``grid``: a regular lat-lon grid coarsened by 2 in each direction (2 x 2 blocks; with an odd number of
  rows or columns the last block is 1 wide). The coarse grid is a regular grid again: its latitudes are
  the area-weighted row means, its longitudes the circular means of the column pairs, and its graph is
  *rebuilt* with the run's own graph builder (``graph`` config group: same stencil, kernel and weights),
  so edge features ``(dx, dy, distance)`` are the physical displacements between coarse cells, as on
  the fine grid. Each level has about 4x fewer nodes.
- ``matching``: two rounds of heavy-edge matching of the weighted graph per level (each round merges
  every node with its most strongly coupled unmatched neighbour, when it has one), so each level has
  about 4x fewer nodes; for meshes and station networks. Coarse edges join matched groups linked by a
  fine edge, weighted by the sum of those fine weights (``Pᵀ A P``), with ``(dx, dy, distance)`` between
  the area-weighted centroids.
- ``clusters``: METIS clusters (the coarse space ``two_level`` has always used), ``clusters`` of them on
  the first level and a quarter as many on each further one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gnnddm.errors import ConfigError
from gnnddm.partition.coarse import CoarseLevel, aggregate, coarsen_levels
from gnnddm.partition.overlap import symmetric_adjacency

COARSENINGS = ("grid", "matching", "clusters")
MIN_GRID_ROWS, MIN_GRID_COLUMNS = 2, 4
"""The smallest coarse grid a ``grid`` level may have (4 columns keep longitude periodic)."""


def grid_levels_allowed(grid_shape: tuple[int, int]) -> int:
    """How many times a grid of ``grid_shape`` can be coarsened by 2 and keep MIN_GRID_ROWS x MIN_GRID_COLUMNS."""
    nlat, nlon = grid_shape
    count = 0
    while -(-nlat // 2) >= MIN_GRID_ROWS and -(-nlon // 2) >= MIN_GRID_COLUMNS:
        nlat, nlon = -(-nlat // 2), -(-nlon // 2)
        count += 1
    return count


def build_hierarchy(
    data,
    coarse_levels: int,
    coarsening: str = "grid",
    rebuild: Callable | None = None,
    clusters: int | None = None,
    seed: int = 0,
    levels_key: str = "ddm.levels",
    levels_offset: int = 1,
) -> list[CoarseLevel]:
    """``coarse_levels`` coarse levels of ``data`` (a WeatherGraphData with its graph), finest first.

    Parameters
    ----------
    data : WeatherGraphData
    coarse_levels : int
        Number of coarse levels (>= 1).
    coarsening : {"grid", "matching", "clusters"}
    rebuild : callable, optional
        ``rebuild(coarse_data) -> coarse_data with its graph`` for ``grid`` (the run's graph builder);
        default: :func:`gnnddm.graph.build.grid_graph` with its defaults.
    clusters : int, optional
        ``clusters``: clusters of the first coarse level (default N / 4).
    seed : int
        Random tie-breaking of the matching; seed of METIS.
    levels_key, levels_offset : str, int
        The config key that sets the number of levels and what it adds to ``coarse_levels`` (1 when it
        counts the fine level too), for error messages.

    Raises
    ------
    ConfigError
        A coarsening that does not fit the data kind, or more levels than the data allow.
    """
    if coarsening not in COARSENINGS:
        raise ConfigError(f"ddm.coarsening: expected one of {list(COARSENINGS)}, got {coarsening!r}")
    if coarse_levels < 1:
        return []
    if coarsening == "grid":
        return _grid_hierarchy(data, coarse_levels, rebuild, levels_key, levels_offset)
    if coarsening == "matching":
        return _matching_hierarchy(data, coarse_levels, seed, levels_key, levels_offset)
    first = data.num_nodes // 4 if clusters is None else int(clusters)
    sizes = [first // 4**i for i in range(coarse_levels)]
    if any(n < 1 for n in sizes) or first >= data.num_nodes:
        raise ConfigError(
            f"{levels_key}: {coarse_levels + levels_offset} levels need {coarse_levels} cluster counts from "
            f"{first} down by 4 that stay >= 1 and below the {data.num_nodes} nodes; use fewer levels"
        )
    return coarsen_levels(data.edge_index, data.num_nodes, sizes, edge_weight=data.edge_weight, area=data.area,
                          lat=data.lat, lon=data.lon, method="metis", seed=seed)


# ------------------------------------------------------------------------------------------------ grid
def _grid_hierarchy(data, coarse_levels, rebuild, levels_key, levels_offset) -> list[CoarseLevel]:
    if data.kind != "grid" or data.grid_shape is None:
        raise ConfigError(
            f"ddm.coarsening: grid coarsens regular lat-lon grids, but {data.source or 'the data'} is of kind "
            f"{data.kind!r}; use ddm.coarsening=matching (or clusters)"
        )
    allowed = grid_levels_allowed(data.grid_shape)
    if coarse_levels > allowed:
        raise ConfigError(
            f"{levels_key}: the {data.grid_shape[0]} x {data.grid_shape[1]} grid allows at most "
            f"{allowed + levels_offset} levels ({allowed} coarsenings by 2 that keep at least "
            f"{MIN_GRID_ROWS} x {MIN_GRID_COLUMNS} points), got {coarse_levels + levels_offset}"
        )
    if rebuild is None:
        from gnnddm.graph.build import grid_graph

        rebuild = grid_graph
    out = []
    for _ in range(coarse_levels):
        level, data = coarsen_grid(data, rebuild)
        out.append(level)
    return out


def coarsen_grid(data, rebuild: Callable) -> tuple[CoarseLevel, object]:
    """One grid level: (the CoarseLevel from ``data``'s nodes, the coarse WeatherGraphData with its graph)."""
    nlat, nlon = data.grid_shape
    clat_n, clon_n = -(-nlat // 2), -(-nlon // 2)
    rows = np.repeat(np.arange(nlat) // 2, nlon)
    cols = np.tile(np.arange(nlon) // 2, nlat)
    assign = rows * clon_n + cols
    level = aggregate(assign, data.edge_index, data.num_nodes, area=data.area, edges=False)  # graph rebuilt below
    # a regular grid again: one latitude per row (area-weighted), one longitude per column (circular mean)
    lat_rows = np.asarray(data.lat, dtype=np.float64).reshape(nlat, nlon)[:, 0]
    area_rows = np.asarray(data.area, dtype=np.float64).reshape(nlat, nlon).sum(axis=1)
    pair = np.arange(nlat) // 2
    clat_rows = np.bincount(pair, weights=lat_rows * area_rows) / np.bincount(pair, weights=area_rows)
    lon_cols = np.deg2rad(np.asarray(data.lon, dtype=np.float64)[:nlon])
    col = np.arange(nlon) // 2
    clon_cols = np.rad2deg(np.arctan2(np.bincount(col, weights=np.sin(lon_cols)),
                                      np.bincount(col, weights=np.cos(lon_cols))))
    clon_cols = (clon_cols + 180.0) % 360.0 - 180.0
    lat = np.repeat(clat_rows, clon_n)
    lon = np.tile(clon_cols, clat_n)
    X = level.restrict(data.X, axis=1).astype(np.float32)
    mask = level.restrict(data.mask.astype(np.float32), axis=1) > 0
    coarse = data.replace(
        lat=lat, lon=lon, area=level.area, X=X, mask=mask, static=level.restrict(data.static).astype(np.float32),
        grid_shape=(clat_n, clon_n), native_edges=None, edge_index=None, edge_weight=None, edge_attr=None,
        warnings=(),
    )
    coarse = rebuild(coarse)
    level = dataclasses.replace(level, edge_index=coarse.edge_index, edge_weight=coarse.edge_weight,
                                edge_attr=coarse.edge_attr, lat=lat, lon=lon)
    return level, coarse


# ------------------------------------------------------------------------------------------------ matching
def heavy_edge_matching(edge_index, num_nodes: int, edge_weight=None, seed: int = 0, rounds: int = 16) -> np.ndarray:
    """Labels [N] of a heavy-edge matching: pairs of nodes (or single nodes) share a label.

    Handshake rounds: every unmatched node proposes to its unmatched neighbour of largest weight (ties
    broken by a seeded random key); mutual proposals are matched. Nodes left without an unmatched
    neighbour stay single.
    """
    adj = symmetric_adjacency(edge_index, num_nodes, edge_weight).tocoo()
    keep = adj.row != adj.col
    src, dst, w = adj.row[keep].astype(np.int64), adj.col[keep].astype(np.int64), adj.data[keep].astype(np.float64)
    rng = np.random.default_rng(seed)
    key = w * (1.0 + 1e-9 * rng.random(w.shape[0]))  # a seeded tie-break between equal weights
    match = np.full(num_nodes, -1, dtype=np.int64)
    for _ in range(rounds):
        free = (match[src] < 0) & (match[dst] < 0)
        if not free.any():
            break
        s, d, k = src[free], dst[free], key[free]
        order = np.lexsort((-k, s))  # per source, the heaviest edge first
        s, d = s[order], d[order]
        first = np.ones(s.shape[0], dtype=bool)
        first[1:] = s[1:] != s[:-1]
        proposal = np.full(num_nodes, -1, dtype=np.int64)
        proposal[s[first]] = d[first]
        nodes = s[first]
        mutual = proposal[proposal[nodes]] == nodes
        a = nodes[mutual]
        match[a] = proposal[a]
    single = match < 0
    match[single] = np.flatnonzero(single)
    return np.minimum(np.arange(num_nodes), match)


def _matching_hierarchy(data, coarse_levels, seed, levels_key, levels_offset) -> list[CoarseLevel]:
    out: list[CoarseLevel] = []
    edge_index, n, weight, area, lat, lon = (data.edge_index, data.num_nodes, data.edge_weight, data.area,
                                             data.lat, data.lon)
    for level_no in range(coarse_levels):
        # two matchings: about 4x fewer nodes per level; the second matches the graph of the pairs
        labels = heavy_edge_matching(edge_index, n, weight, seed=seed + 2 * level_no)
        pairs = aggregate(labels, edge_index, n, edge_weight=weight)
        labels = heavy_edge_matching(pairs.edge_index, pairs.num_clusters, pairs.edge_weight,
                                     seed=seed + 2 * level_no + 1)[pairs.assign]
        level = aggregate(labels, edge_index, n, edge_weight=weight, area=area, lat=lat, lon=lon)
        if level.num_clusters < 2 or level.num_clusters == n:
            raise ConfigError(
                f"{levels_key}: heavy-edge matching of the {data.num_nodes}-node graph leaves "
                f"{level.num_clusters} nodes at coarse level {level_no + 1}; at most {level_no + levels_offset} "
                f"levels fit, got {coarse_levels + levels_offset}"
            )
        out.append(level)
        edge_index, n, weight, area, lat, lon = (level.edge_index, level.num_clusters, level.edge_weight, level.area,
                                                 level.lat, level.lon)
    return out
