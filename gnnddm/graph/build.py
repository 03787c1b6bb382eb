"""Graph builders: the callables that the ``graph`` config group instantiates.

Each builder has the signature ``builder(data, train_index=None, **options) -> WeatherGraphData`` and
returns ``data.with_graph(edge_index, edge_weight, edge_attr, edge_attr_names)``. The config files
``conf/graph/*.yaml`` name a builder with ``_target_`` and ``_partial_: true`` and set its options, so

    data = hydra.utils.instantiate(cfg.graph)(data, train_index=split.train)

builds the graph. ``train_index`` selects the training time steps (int array, bool mask or slice) used
by data-dependent weights; ``None`` uses all steps.

What every builder returns:

- ``edge_index`` int64 ``[2, E]``, PyG convention (row 0 = source j, row 1 = target i), sorted by target
  then source, no duplicates; both directions of every link unless ``directed=True``; self loops only
  with ``self_loops=True``.
- ``edge_weight`` float32 ``[E]``, finite and > 0, equal on both directions of a symmetric graph
  (:mod:`gnnddm.graph.weights`; options ``kernel``, ``length_scale`` in km, ``weights``).
- ``edge_attr`` float32 ``[E, 3]`` named ``("dx", "dy", "distance")`` (:mod:`gnnddm.graph.features`).
"""

from __future__ import annotations

import warnings

import numpy as np

from gnnddm.data.normalise import read_block
from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError, DataError
from gnnddm.graph.edges import add_self_loops, coalesce, degrees, symmetrise
from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.grid import geometry_latitudes, grid_edges, is_periodic, pole_ring_mask
from gnnddm.graph.knn import knn_edges, radius_edges
from gnnddm.graph.mesh import mesh_edges
from gnnddm.graph.sphere import EARTH_RADIUS_KM
from gnnddm.graph.weights import edge_weights
from gnnddm.schema.fields import check_args
from gnnddm.schema.graph import GridGraphConfig, KnnGraphConfig, MeshGraphConfig, RadiusGraphConfig


def grid_graph(
    data: WeatherGraphData,
    train_index=None,
    neighbours: int = 8,
    kernel: str = "gaussian",
    length_scale: float | None = None,
    weights: str = "distance",
    self_loops: bool = False,
    directed: bool = False,
) -> WeatherGraphData:
    """Stencil graph of a regular lat-lon grid: 4 (N, S, E, W) or 8 (plus diagonals) neighbours.

    Longitude wraps around on global grids; rows at the poles are handled as described in
    :mod:`gnnddm.graph.grid`. The stencil is symmetric, so ``directed`` changes nothing (it is accepted
    so that all builders share one set of options).

    Raises
    ------
    DataError
        When the data is not a regular grid (``grid_shape`` missing or inconsistent).
    ConfigError
        For an invalid option, naming it (``graph.neighbours``, ``graph.kernel``, ...).
    """
    check_args(GridGraphConfig, "graph", neighbours=neighbours, kernel=kernel, length_scale=length_scale,
               weights=weights, self_loops=self_loops, directed=directed)
    shape = data.grid_shape
    if shape is None or shape[0] * shape[1] != data.num_nodes:
        raise DataError(
            f"graph=grid needs a regular lat-lon grid, but {data.source or 'the data'} is of kind "
            f"{data.kind!r} with grid_shape={shape}; use graph=knn, graph=radius or graph=mesh"
        )
    nlat, nlon = shape
    edge_index = grid_edges(nlat, nlon, neighbours, periodic=is_periodic(data.lon[:nlon]))
    if self_loops:
        edge_index = add_self_loops(edge_index, data.num_nodes)
    attr = edge_features(data.lat, data.lon, edge_index)
    ring = pole_ring_mask(edge_index, data.lat, shape)
    if ring.any():
        attr[ring] = edge_features(geometry_latitudes(data.lat, data.lon, shape), data.lon, edge_index[:, ring])
    return _assemble(data, edge_index, attr, train_index, kernel, length_scale, weights)


def knn_graph(
    data: WeatherGraphData,
    train_index=None,
    k: int = 8,
    kernel: str = "gaussian",
    length_scale: float | None = None,
    weights: str = "distance",
    self_loops: bool = False,
    directed: bool = False,
) -> WeatherGraphData:
    """k-nearest-neighbour graph by great-circle distance (:func:`gnnddm.graph.knn.knn_edges`).

    Symmetric (union of the kNN relation and its reverse, so every node has at least ``k``
    neighbours) unless ``directed=True``, which keeps exactly the ``k`` nearest sources of each target.
    Suits station networks and unstructured points; for regular grids prefer :func:`grid_graph`.
    """
    check_args(KnnGraphConfig, "graph", k=k, kernel=kernel, length_scale=length_scale, weights=weights,
               self_loops=self_loops, directed=directed)
    n = data.num_nodes
    if k >= n:
        raise ConfigError(f"graph.k: expected an integer in [1, {n - 1}] for {n} nodes, got {k!r}")
    edge_index = knn_edges(data.lat, data.lon, int(k))
    return _finish(data, edge_index, train_index, kernel, length_scale, weights, self_loops, directed)


def radius_graph(
    data: WeatherGraphData,
    train_index=None,
    radius_km: float = 250.0,
    max_neighbours: int = 32,
    kernel: str = "gaussian",
    length_scale: float | None = None,
    weights: str = "distance",
    self_loops: bool = False,
    directed: bool = False,
) -> WeatherGraphData:
    """Links between nodes closer than ``radius_km`` (great circle), at most ``max_neighbours`` nearest
    per target (:func:`gnnddm.graph.knn.radius_edges`); symmetric unless ``directed=True``.

    Warns when nodes are left without neighbours (the radius is below their nearest-neighbour distance).
    """
    check_args(RadiusGraphConfig, "graph", radius_km=radius_km, max_neighbours=max_neighbours, kernel=kernel,
               length_scale=length_scale, weights=weights, self_loops=self_loops, directed=directed)
    edge_index = radius_edges(data.lat, data.lon, radius_km / EARTH_RADIUS_KM, max_neighbours)
    isolated = int(np.count_nonzero(degrees(edge_index, data.num_nodes) == 0))
    if isolated:
        warnings.warn(
            f"graph.radius_km={radius_km} leaves {isolated} of {data.num_nodes} nodes without neighbours; "
            "increase graph.radius_km or use graph=knn",
            stacklevel=2,
        )
    return _finish(data, edge_index, train_index, kernel, length_scale, weights, self_loops, directed)


def mesh_graph(
    data: WeatherGraphData,
    train_index=None,
    kernel: str = "gaussian",
    length_scale: float | None = None,
    weights: str = "distance",
    self_loops: bool = False,
    directed: bool = False,
) -> WeatherGraphData:
    """The mesh's own adjacency (``data.native_edges``, e.g. ICON cells sharing a vertex).

    Made symmetric unless ``directed=True``, which keeps the native edges as given.

    Raises
    ------
    DataError
        When the data carries no native edges (grids and station networks).
    """
    check_args(MeshGraphConfig, "graph", kernel=kernel, length_scale=length_scale, weights=weights,
               self_loops=self_loops, directed=directed)
    edge_index = mesh_edges(data.native_edges, data.num_nodes, source=data.source or "the data")
    return _finish(data, edge_index, train_index, kernel, length_scale, weights, self_loops, directed)


# ---------------------------------------------------------------------------------------------- helpers
def _finish(data, edge_index, train_index, kernel, length_scale, weights, self_loops, directed):
    """Symmetrise (unless directed), add self loops if asked, compute features and weights."""
    n = data.num_nodes
    edge_index = coalesce(edge_index, n) if directed else symmetrise(edge_index, n)
    if self_loops:
        edge_index = add_self_loops(edge_index, n)
    attr = edge_features(data.lat, data.lon, edge_index)
    return _assemble(data, edge_index, attr, train_index, kernel, length_scale, weights)


def _assemble(data, edge_index, attr, train_index, kernel, length_scale, weights) -> WeatherGraphData:
    X = mask = None
    if weights != "distance":
        X, mask = _training_series(data, train_index, weights)
    scale = None if length_scale is None else float(length_scale) / EARTH_RADIUS_KM
    w = edge_weights(attr[:, 2], edge_index, kernel, scale, weights, X=X, mask=mask)
    return data.with_graph(edge_index, w, attr, EDGE_ATTR_NAMES)


def _training_series(data: WeatherGraphData, train_index, weights: str):
    """``X`` and ``mask`` at the training steps (all steps when ``train_index`` is None)."""
    if train_index is None:
        index = slice(None)
    elif isinstance(train_index, slice):
        index = train_index
    else:
        index = np.asarray(train_index)
    X, mask = read_block(data, index)
    if X.shape[0] < 2:
        raise DataError(
            f"graph.weights={weights} needs at least 2 training time steps of {data.source or 'the data'} "
            f"to correlate, got {X.shape[0]}; use graph.weights=distance"
        )
    return X, mask
