"""Tiny deterministic problems for tests and docstring examples (in the manner of ``pyamg.gallery``).

Graphs and data
    :func:`latlon` (cell centres of a global lat-lon grid), :func:`grid_edge_index` (its 4- or
    8-neighbour stencil), :func:`weather_data` (random fields on given nodes and edges),
    :func:`grid_data` (a global grid, 4 x 8 by default), :func:`station_data` (scattered stations),
    :func:`random_graph`, :func:`grid_tensors` and :func:`model_graph` (the grid as the tensors a
    model layer takes).
Models
    :class:`LinearGNN` (one linear message-passing layer: its squared loss is a linear least-squares
    problem), :class:`EdgeGNN` (tanh layers using edge features and weights).
Decomposed problems
    :func:`contiguous_parts`, :func:`problem` (data, partition, objective, task and a batch),
    :func:`least_squares_problem` (targets made by a known :class:`LinearGNN`, so loss 0 is reached at
    its weights), :func:`comm_for` (a one-process communicator), :func:`to_dtype`. The objective holds no
    batch: a test evaluates it on the batch it is given (``objective.on(batch).global_loss(model)``) and
    steps an algorithm with it (``algorithm.step(batch)``).
Shipped models
    :func:`real_models`: the classes named by ``conf/model/*.yaml``.

Everything is seeded: the same call returns the same numbers.

Examples
--------
>>> from gnnddm.testing.gallery import grid_data, problem
>>> data = grid_data()
>>> data.num_nodes, data.grid_shape, data.edge_index.shape
(32, (4, 8), (2, 112))
>>> data, partition, objective, task, batch = problem(data, parts=2, overlap=1)
>>> partition.num_parts, batch.x.dtype
(2, torch.float64)
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import yaml
from torch import nn

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.ddm.objective import Objective
from gnnddm.distributed.accounting import Accounting
from gnnddm.distributed.comm import LocalComm
from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.grid import grid_edges
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import Batch, ForecastTask

__all__ = [
    "EdgeGNN", "LinearGNN", "comm_for", "contiguous_parts", "grid_data", "grid_edge_index", "grid_tensors",
    "latlon", "least_squares_problem", "model_graph", "problem", "random_graph", "real_models",
    "station_data", "to_dtype", "weather_data",
]


# ---------------------------------------------------------------------------------------------------------
# graphs and data


def latlon(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
    """Node positions of a global ``nlat x nlon`` grid, node id = ``i_lat * nlon + i_lon``.

    Latitudes are the row centres, north first: ``90 - (i + 1/2) * 180 / nlat`` (no node on a pole);
    longitudes start at -180: ``-180 + j * 360 / nlon``. Returns ``(lat, lon)``, each float64 ``[N]``.

    >>> lat, lon = latlon(2, 4)
    >>> lat.tolist(), lon.tolist()
    ([45.0, 45.0, 45.0, 45.0, -45.0, -45.0, -45.0, -45.0], [-180.0, -90.0, 0.0, 90.0, -180.0, -90.0, 0.0, 90.0])
    """
    lats = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lons = -180.0 + np.arange(nlon) * 360.0 / nlon
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    return lat.ravel(), lon.ravel()


def grid_edge_index(nlat: int, nlon: int, neighbours: int = 8) -> np.ndarray:
    """Both directions of every stencil link of the grid, periodic in longitude: int64 ``[2, E]``.

    The edges of ``graph=grid`` (:func:`gnnddm.graph.grid.grid_edges`), in its order (by target, then
    source). ``neighbours`` is 4 (N, S, E, W) or 8 (plus the diagonals).

    >>> grid_edge_index(4, 8, neighbours=8).shape
    (2, 208)
    """
    return grid_edges(nlat, nlon, neighbours=neighbours, periodic=True)


def weather_data(lat, lon, edge_index=None, *, kind: str = "grid", grid_shape=None, area=None, times: int = 6,
                 variables: int = 2, seed: int = 0, missing: float = 0.0) -> WeatherGraphData:
    """Normalised random fields on the given nodes, carrying the given graph (if any).

    Parameters
    ----------
    lat, lon : float [N]
        Node positions in degrees.
    edge_index : int [2, E], optional
        The graph (directed edges ``source -> target``); None for data without a graph.
    kind, grid_shape
        As in :class:`~gnnddm.data.weather_graph.WeatherGraphData`.
    area : float [N], optional
        Node areas before normalisation to mean 1 (default: cos(latitude)).
    times, variables : int
        ``X`` is ``[times, N, variables]`` of N(0, 1) values at hourly times; variables ``v0, v1, ...``.
    seed : int
        Seeds the fields, the missing entries and the edge weights.
    missing : float
        Fraction of entries masked out (their values are set to 0).

    Two static features (sin of latitude, cos of longitude), edge weights uniform in [0.5, 1.5) and the
    edge features ``dx, dy, distance`` (:func:`gnnddm.graph.features.edge_features`).
    """
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = lat.shape[0]
    x = rng.standard_normal((times, n, variables)).astype(np.float32)
    mask = rng.random((times, n, variables)) >= missing
    x[~mask] = 0.0
    area = np.cos(np.deg2rad(lat)) if area is None else np.asarray(area, dtype=np.float64)
    static = np.stack([np.sin(np.deg2rad(lat)), np.cos(np.deg2rad(lon))], axis=1).astype(np.float32)
    data = WeatherGraphData(
        kind=kind, lat=lat, lon=lon, area=area / area.mean(), X=x, mask=mask,
        times=np.arange(times).astype("datetime64[h]").astype("datetime64[ns]"),
        variables=tuple(f"v{i}" for i in range(variables)), units=("1",) * variables,
        static=static, static_names=("sin_lat", "cos_lon"), normalised=True, grid_shape=grid_shape,
    )
    if edge_index is None:
        return data
    edge_index = np.asarray(edge_index, dtype=np.int64)
    weight = 0.5 + rng.random(edge_index.shape[1]).astype(np.float32)
    return data.with_graph(edge_index, weight, edge_features(lat, lon, edge_index), EDGE_ATTR_NAMES)


def grid_data(nlat: int = 4, nlon: int = 8, neighbours: int = 4, **kw) -> WeatherGraphData:
    """A global lat-lon grid (:func:`latlon`) with the graph of ``graph=grid``.

    The stencil edges of :func:`grid_edge_index`, their features ``dx, dy, distance`` and weights from
    the builder's defaults (a Gaussian kernel of the distance, :func:`gnnddm.graph.build.grid_graph`).
    Keywords go to :func:`weather_data` (``times``, ``variables``, ``seed``, ``missing``).

    >>> data = grid_data(6, 12, neighbours=8, times=3)
    >>> data.X.shape, data.edge_attr.shape
    ((3, 72, 2), (504, 3))
    """
    from gnnddm.graph.build import grid_graph

    lat, lon = latlon(nlat, nlon)
    return grid_graph(weather_data(lat, lon, grid_shape=(nlat, nlon), **kw), neighbours=neighbours)


def station_data(n: int = 12, k: int = 3, **kw) -> WeatherGraphData:
    """``n`` stations scattered over 50-56 N, 10-5 W, each linked with its ``k`` nearest (both directions).

    Unit areas and, unless ``missing`` is given, 10 % of the observations missing; other keywords go to
    :func:`weather_data`.

    >>> data = station_data()
    >>> data.kind, data.num_nodes, bool(data.mask.all())
    ('stations', 12, False)
    """
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(50, 56, n), rng.uniform(-10, -5, n)
    d = (lat[:, None] - lat[None]) ** 2 + (lon[:, None] - lon[None]) ** 2
    np.fill_diagonal(d, np.inf)
    pairs = {(int(j), i) for i in range(n) for j in np.argsort(d[i])[:k]}
    pairs |= {(b, a) for a, b in pairs}
    kw.setdefault("missing", 0.1)
    return weather_data(lat, lon, np.array(sorted(pairs)).T, kind="stations", area=np.ones(n), **kw)


def random_graph(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """A random undirected graph on ``n`` nodes with about ``m`` links: both directions, no self loops.

    >>> ei = random_graph(np.random.default_rng(0), 10, 20)
    >>> bool((ei[0] != ei[1]).all()), {tuple(e) for e in ei.T} == {tuple(e) for e in ei[::-1].T}
    (True, True)
    """
    a, b = rng.integers(0, n, size=(2, m))
    keep = a != b
    ei = np.concatenate([np.stack([a[keep], b[keep]]), np.stack([b[keep], a[keep]])], axis=1)
    return np.unique(ei, axis=1)


def grid_tensors(nlat: int = 4, nlon: int = 8, edge_dim: int = 3, seed: int = 0) -> dict:
    """The 8-neighbour grid as the tensors a model layer takes.

    Returns a dict with ``edge_index`` (int64 ``[2, E]``), ``num_nodes``, ``edge_attr`` (``[E, edge_dim]``,
    N(0, 1)) and ``edge_weight`` (``[E]``, uniform in [0.1, 1.1)); :func:`model_graph` prepares it.
    """
    gen = torch.Generator().manual_seed(seed)
    ei = torch.as_tensor(grid_edge_index(nlat, nlon, neighbours=8))
    attr = torch.randn(ei.shape[1], edge_dim, generator=gen)
    weight = torch.rand(ei.shape[1], generator=gen) + 0.1
    return dict(edge_index=ei, num_nodes=nlat * nlon, edge_attr=attr, edge_weight=weight)


def model_graph(g: dict | None = None):
    """The :class:`~gnnddm.models.graph.Graph` the models take, of :func:`grid_tensors` (default: 4 x 8).

    >>> import torch
    >>> from gnnddm.testing.gallery import LinearGNN, model_graph
    >>> LinearGNN(5, 2)(torch.zeros(3, 32, 5), model_graph()).shape
    torch.Size([3, 32, 2])
    """
    from gnnddm.models.graph import prepare_graph

    g = grid_tensors() if g is None else g
    return prepare_graph(g["edge_index"], g["num_nodes"], edge_attr=g["edge_attr"], edge_weight=g["edge_weight"])


# ---------------------------------------------------------------------------------------------------------
# models


class LinearGNN(nn.Module):
    """One linear message-passing layer, ``out[b, i] = (mean_{j -> i} x[b, j]) W1 + x[b, i] W2`` (no bias).

    Its squared loss is a linear least-squares function of ``(W1, W2)``: targets made by a known
    ``LinearGNN`` have that model's weights as exact minimiser (loss 0).
    """

    num_message_passing_layers = 1

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int = 0, **_):
        super().__init__()
        self.w1 = nn.Linear(in_channels, out_channels, bias=False)
        self.w2 = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor, graph) -> torch.Tensor:
        src, dst = graph.edge_index
        agg = torch.zeros_like(x).index_add_(1, dst, x[:, src])
        agg = agg / graph.in_degree.clamp_min(1).to(x.dtype)[None, :, None]
        return self.w1(agg) + self.w2(x)


class EdgeGNN(nn.Module):
    """``layers`` layers ``h_i <- tanh(sum_{j -> i} w_ji phi([h_j, e_ji]) + h_i U)`` and a linear read-out.

    Uses the edge features ``e`` and weights ``w``, so that it checks that subdomains slice them correctly.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int = 0, hidden: int = 6, layers: int = 2):
        super().__init__()
        self.num_message_passing_layers = layers
        self.encode = nn.Linear(in_channels, hidden)
        self.msg = nn.ModuleList(nn.Linear(hidden + edge_dim, hidden) for _ in range(layers))
        self.root = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(layers))
        self.decode = nn.Linear(hidden, out_channels)

    def forward(self, x: torch.Tensor, graph) -> torch.Tensor:
        src, dst = graph.edge_index
        h = self.encode(x)
        for msg, root in zip(self.msg, self.root, strict=True):
            m = h[:, src]
            if graph.edge_attr is not None:
                m = torch.cat([m, graph.edge_attr.to(h.dtype).expand(h.shape[0], -1, -1)], dim=-1)
            m = torch.tanh(msg(m)) * graph.edge_weight.to(h.dtype)[None, :, None]
            h = torch.tanh(torch.zeros_like(h).index_add_(1, dst, m) + root(h))
        return self.decode(h)


# ---------------------------------------------------------------------------------------------------------
# decomposed problems


def contiguous_parts(n: int, p: int) -> np.ndarray:
    """Labels of ``p`` parts of consecutive node ids (sizes differ by at most one).

    >>> contiguous_parts(7, 3).tolist()
    [0, 0, 0, 1, 1, 2, 2]
    """
    return (np.arange(n) * p // n).astype(np.int64)


def to_dtype(batch: Batch, dtype) -> Batch:
    """The batch with its floating-point tensors cast to ``dtype``."""
    return Batch(*(getattr(batch, f).to(dtype) if getattr(batch, f).is_floating_point() else getattr(batch, f)
                   for f in ("x", "y", "w", "base", "truth", "valid")))


def problem(data=None, parts: int = 3, overlap: int = 2, dtype=torch.float64, batch_size: int = 2, seed: int = 0):
    """``(data, partition, objective, task, batch)``: a forecast task on ``data`` (default :func:`grid_data`).

    The partition has ``parts`` contiguous parts (:func:`contiguous_parts`) and ``overlap`` halo layers;
    ``batch`` (full graph) holds the samples ``seed, ..., seed + batch_size - 1`` cast to ``dtype``: the batch
    to evaluate the objective on (``objective.on(batch)``) and to step algorithms with.
    """
    data = grid_data() if data is None else data
    with warnings.catch_warnings():  # tiny graphs: halos covering the graph, split parts are expected
        warnings.simplefilter("ignore", UserWarning)
        partition = build_partition(data.edge_index, data.num_nodes, contiguous_parts(data.num_nodes, parts),
                                    overlap)
    objective = Objective(data, partition)
    task = ForecastTask(data)
    batch = to_dtype(task.batch(np.arange(seed, seed + batch_size)), dtype)
    return data, partition, objective, task, batch


def least_squares_problem(parts: int = 2, overlap: int = 1, seed: int = 0):
    """A grid problem whose targets are made by a known :class:`LinearGNN`: ``(objective, task, true model,
    batch)``, the batch holding those targets.

    The inputs are random (so the least-squares matrix ``[mean_agg(x), x]`` has full column rank) and the
    loss is a least-squares function of the weights with unique minimiser = the true weights (loss 0).
    """
    data, partition, objective, task, b = problem(parts=parts, overlap=overlap, batch_size=3)
    torch.manual_seed(seed + 100)
    truth = LinearGNN(task.in_channels, task.out_channels).double()
    x = torch.randn(b.x.shape, dtype=torch.float64)
    with torch.no_grad():
        y = truth(x, objective.full_graph.astype(x.dtype))
    return objective, task, truth, Batch(x=x, y=y, w=b.w, base=b.base, truth=b.truth, valid=b.valid)


def comm_for(objective, alpha: float = 0.0, beta: float = 0.0) -> tuple[LocalComm, Accounting]:
    """A one-process communicator for the objective's partition, and its accounting."""
    accounting = Accounting(alpha=alpha, beta=beta)
    return LocalComm(objective.num_parts, accounting=accounting), accounting


# ---------------------------------------------------------------------------------------------------------
# shipped models


#: model options that need the joint grid + mesh graph with edge kinds (graph=icosahedral)
JOINT_GRAPH_MODELS = ("encode_process_decode",)


def real_models(joint: bool = False) -> dict[str, type]:
    """The model classes named by ``conf/model/*.yaml``, by option name: those that run on any graph, or
    (``joint``) those that need the typed joint graph of ``graph=icosahedral`` (:data:`JOINT_GRAPH_MODELS`).

    Raises
    ------
    ImportError
        When the class of an option cannot be imported: a test over the shipped models must not pass by
        collecting none of them.
    """
    from hydra.utils import get_class

    from gnnddm.config import config_dir, options

    out = {}
    for name in options("model"):
        if (name in JOINT_GRAPH_MODELS) != joint:
            continue
        target = yaml.safe_load((config_dir() / "model" / f"{name}.yaml").read_text())["_target_"]
        try:
            out[name] = get_class(target)
        except Exception as exc:
            raise ImportError(f"model={name}: cannot import its class {target} ({exc})") from exc
    return out
