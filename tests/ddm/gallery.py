"""Tiny problems for the training-algorithm tests.

- :func:`grid_data`: a 4 x 8 lat-lon grid (periodic in longitude), 4-neighbour edges, cos-latitude areas.
- :func:`regular_grid`: a global lat-lon grid with ``grid_shape`` and the 8-neighbour graph of
  ``graph=grid8`` (what the grid hierarchy coarsens).
- :func:`station_data`: 12 scattered stations joined to their 3 nearest neighbours (both directions),
  with some missing observations.
- :class:`LinearGNN`: out = mean_{j -> i}(x_j) W1 + x_i W2, one message-passing layer; its squared loss
  is a linear least-squares problem, so targets made by a known ``LinearGNN`` have that model's weights
  as exact minimiser (loss 0).
- :class:`EdgeGNN`: L layers of h_i ← tanh(Σ_{j -> i} w_ji · φ([h_j, e_ji]) + h_i U), using edge
  features and weights, to check that subdomains slice them correctly.
- :func:`problem`: data, contiguous partition with the given overlap, objective with a forecast batch.
- :func:`real_models`: the model classes of conf/model/*.yaml, for the exactness tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.ddm.objective import Objective
from gnnddm.distributed.accounting import Accounting
from gnnddm.distributed.comm import LocalComm
from gnnddm.graph.features import edge_features
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import Batch, ForecastTask

ROOT = Path(__file__).resolve().parents[2]


def _data(kind, lat, lon, area, edges, times=6, variables=2, seed=0, missing=0.0) -> WeatherGraphData:
    rng = np.random.default_rng(seed)
    n = lat.shape[0]
    x = rng.standard_normal((times, n, variables)).astype(np.float32)
    mask = rng.random((times, n, variables)) >= missing
    x[~mask] = 0.0
    static = np.stack([np.sin(np.deg2rad(lat)), np.cos(np.deg2rad(lon))], axis=1).astype(np.float32)
    data = WeatherGraphData(
        kind=kind, lat=lat, lon=lon, area=area / area.mean(), X=x, mask=mask,
        times=np.arange(times).astype("datetime64[h]").astype("datetime64[ns]"),
        variables=tuple(f"v{i}" for i in range(variables)), units=("1",) * variables,
        static=static, static_names=("sin_lat", "cos_lon"), normalised=True,
    )
    edges = np.asarray(edges, dtype=np.int64)
    weight = 0.5 + rng.random(edges.shape[1]).astype(np.float32)
    return data.with_graph(edges, weight, edge_features(lat, lon, edges), ("dx", "dy", "distance"))


def grid_data(nlat: int = 4, nlon: int = 8, **kw) -> WeatherGraphData:
    """A regular grid, node id = i_lat * nlon + i_lon, with both directions of every grid edge."""
    lats = np.linspace(60, -60, nlat)
    lons = np.arange(nlon) * 360.0 / nlon - 180.0
    lat, lon = (a.ravel() for a in np.meshgrid(lats, lons, indexing="ij"))
    edges = []
    for i in range(nlat):
        for j in range(nlon):
            a = i * nlon + j
            edges.append((a, i * nlon + (j + 1) % nlon))
            if i + 1 < nlat:
                edges.append((a, (i + 1) * nlon + j))
    e = np.array(edges).T
    return _data("grid", lat, lon, np.cos(np.deg2rad(lat)), np.hstack([e, e[::-1]]), **kw)


def regular_grid(nlat: int = 8, nlon: int = 16, times: int = 6, variables: int = 2, seed: int = 0) -> WeatherGraphData:
    """A global grid (latitudes centred in their rows, north first), with ``graph=grid8``'s graph."""
    from gnnddm.graph.build import grid_graph

    res = 180.0 / nlat
    lats = 90.0 - res / 2 - res * np.arange(nlat)
    lons = np.arange(nlon) * 360.0 / nlon - 180.0
    lat, lon = (a.ravel() for a in np.meshgrid(lats, lons, indexing="ij"))
    data = _data("grid", lat, lon, np.cos(np.deg2rad(lat)), np.zeros((2, 0)), times=times, variables=variables,
                 seed=seed)
    return grid_graph(data.replace(grid_shape=(nlat, nlon), edge_index=None, edge_weight=None, edge_attr=None))


def station_data(n: int = 12, k: int = 3, **kw) -> WeatherGraphData:
    """Scattered stations, each linked with its k nearest neighbours (symmetrised)."""
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(50, 56, n), rng.uniform(-10, -5, n)
    d = (lat[:, None] - lat[None]) ** 2 + (lon[:, None] - lon[None]) ** 2
    np.fill_diagonal(d, np.inf)
    pairs = {(int(j), i) for i in range(n) for j in np.argsort(d[i])[:k]}
    pairs |= {(b, a) for a, b in pairs}
    kw.setdefault("missing", 0.1)
    return _data("stations", lat, lon, np.ones(n), np.array(sorted(pairs)).T, **kw)


class LinearGNN(nn.Module):
    """out[b, i] = (mean_{j -> i} x[b, j]) W1 + x[b, i] W2 (no bias); L = 1."""

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
    """L layers h_i ← tanh(Σ_{j -> i} w_ji φ([h_j, e_ji]) + h_i U) and a linear read-out."""

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


def contiguous_parts(n: int, p: int) -> np.ndarray:
    return (np.arange(n) * p // n).astype(np.int64)


def problem(data=None, parts: int = 3, overlap: int = 2, dtype=torch.float64, batch_size: int = 2, seed: int = 0):
    """(data, partition, objective, task) with the objective's batch set (forecast task)."""
    data = grid_data() if data is None else data
    with warnings.catch_warnings():  # tiny graphs: halos covering the graph, split parts are expected
        warnings.simplefilter("ignore", UserWarning)
        partition = build_partition(data.edge_index, data.num_nodes, contiguous_parts(data.num_nodes, parts),
                                    overlap)
    objective = Objective(data, partition)
    task = ForecastTask(data)
    objective.set_batch(to_dtype(task.batch(np.arange(seed, seed + batch_size)), dtype))
    return data, partition, objective, task


def to_dtype(batch: Batch, dtype) -> Batch:
    return Batch(*(getattr(batch, f).to(dtype) if getattr(batch, f).is_floating_point() else getattr(batch, f)
                   for f in ("x", "y", "w", "base", "truth", "valid")))


def least_squares_problem(parts: int = 2, overlap: int = 1, seed: int = 0):
    """A grid problem whose targets are made by a known LinearGNN: returns (objective, task, true model).

    The inputs are random (so the least-squares matrix [mean_agg(x), x] has full column rank) and the loss
    is a least-squares function of the weights with unique minimiser = the true weights (loss 0).
    """
    data, partition, objective, task = problem(parts=parts, overlap=overlap, batch_size=3)
    torch.manual_seed(seed + 100)
    truth = LinearGNN(task.in_channels, task.out_channels).double()
    b = objective.batch
    x = torch.randn(b.x.shape, dtype=torch.float64)
    with torch.no_grad():
        y = truth(x, objective.full_graph)
    objective.set_batch(Batch(x=x, y=y, w=b.w, base=b.base, truth=b.truth, valid=b.valid))
    return objective, task, truth


def comm_for(objective, alpha: float = 0.0, beta: float = 0.0) -> tuple[LocalComm, Accounting]:
    """A one-process communicator for the objective's partition and its accounting."""
    accounting = Accounting(alpha=alpha, beta=beta)
    return LocalComm(objective.num_parts, accounting=accounting), accounting


def real_models() -> dict[str, type]:
    """Model classes named by conf/model/*.yaml (empty while none exist)."""
    from hydra.utils import get_class

    out = {}
    for path in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
        if target:
            try:
                out[path.stem] = get_class(target)
            except Exception:  # an option whose class cannot be imported is covered by the model tests
                continue
    return out
