"""``task=assimilate``: observations and a background into an analysis (an OSSE, :mod:`gnnddm.assimilation.osse`).

The task turns the run's graph into a joint graph: the data's ``N`` nodes (grid, or grid and mesh), then
``O`` observation nodes at the sites, each grid node (each mesh node when the graph has a processor mesh,
``graph=icosahedral``) receiving an edge from its ``task.obs.neighbours`` nearest sites (and a site that no node
chose sending to its nearest node), with the same
geometric edge features (the displacement) as the graph's other edges. The partitioners, exact overlaps
and every algorithm then work on it unchanged; a partitioner keeps an observation node with the nodes it
informs because those are its only edges.

Input features per node: a value, its validity flag and an innovation, per variable (grid nodes: the
background, its flag, and 0, or OI's increment with ``task.oi_input``; observation nodes: the observation,
its flag, and the innovation
``y − H x_b`` divided by the background's error σ_b), the static features with a column ``obs_node``,
and the time features. The target is the
analysis increment ``x_t − x_b`` on the grid nodes; only they are scored. The reference method
(:meth:`AssimilateTask.baseline`) is optimal interpolation (:mod:`gnnddm.assimilation.oi`) from the same
innovations, with its error statistics fitted on the training split's background-minus-truth.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

from gnnddm.assimilation.background import forecast_background
from gnnddm.assimilation.oi import ErrorModel, OptimalInterpolation, fit_background_errors
from gnnddm.assimilation.osse import correlated_noise, grid_rows, inside_domain, interpolation_operator, uniform_sites
from gnnddm.data.stations import station_positions
from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError, DataError
from gnnddm.graph.features import EDGE_ATTR_NAMES, edge_features
from gnnddm.graph.icosahedral import ICOSAHEDRAL_EDGE_ATTR_NAMES, MESH_NODE
from gnnddm.graph.sphere import EARTH_RADIUS_KM, arc_to_chord, unit_vectors
from gnnddm.graph.weights import kernel_weights
from gnnddm.schema.fields import configured
from gnnddm.schema.task import AssimilateTaskConfig
from gnnddm.tasks import Batch, Task

log = logging.getLogger(__name__)

OBS_NODE = "obs_node"
"""Name of the static column that is 1 on observation nodes."""


class AssimilateTask(Task):
    """Analysis increments on the grid from observations at sites and a background (see module docstring).

    Attributes
    ----------
    num_grid : int
        Nodes of the run's graph before the observation nodes (``[num_grid, num_grid + O)`` are those).
    rows : int64 [G]
        The nodes that carry the truth and are scored (area > 0).
    observed : bool [G]
        Whether a row is read by some observation (in the stencil of ``H``).
    H : scipy CSR [O, num_grid]
        The observation operator.
    """

    name = "assimilate"
    baseline_name = "optimal_interpolation"

    Config = AssimilateTaskConfig

    def __init__(self, data: WeatherGraphData, *, config: AssimilateTaskConfig | None = None, **options):
        cfg = configured(self.Config, "task", config, options)
        seed = cfg.seed
        if data.kind == "stations" or data.lazy:
            raise ConfigError(f"task=assimilate: the truth must be a gridded data set held in memory; {data.source} "
                              f"is {'lazy (set data.lazy=false)' if data.lazy else 'a station network'}")
        self.config = cfg
        self.num_grid = data.num_nodes
        self.rows = grid_rows(data)
        rng = np.random.default_rng([int(seed), 0x0A55])
        lat, lon = self._sites(data, rng)
        self.H = interpolation_operator(data, lat, lon)
        self.observed = np.isin(self.rows, np.unique(self.H.indices))
        self.sigma_o = self._per_variable(data, cfg.obs.error, "task.obs.error") / data.std
        y, obs_valid = self._observations(data, rng)
        self._xb, self._xb_valid = self._backgrounds(data, rng)
        joint = self._joint(data, lat, lon, y, obs_valid)
        super().__init__(joint, config=cfg)
        self._given_weights = self.var_weights.clone()
        self._h = _torch_csr(self.H)
        self._h_reads_missing = _torch_csr(abs(self.H))
        self._row_mask = torch.zeros(joint.num_nodes, dtype=torch.bool)
        self._row_mask[torch.from_numpy(self.rows)] = True
        self.oi: OptimalInterpolation | None = None
        #: what the innovation inputs are multiplied by: 1 / σ_b once fitted, so that they are O(1) for every variable
        self.innovation_scale = torch.ones(self.data.num_vars)
        self.oi_statistics: dict = {}
        self._oi_increment: torch.Tensor | None = None  # [T, N, V] with task.oi_input (set with the OI reference)
        self._check_times()

    # ------------------------------------------------------------------------------ the OSSE
    def _sites(self, data: WeatherGraphData, rng) -> tuple[np.ndarray, np.ndarray]:
        obs = self.config.obs
        lat, lon = uniform_sites(obs.count, rng)
        if obs.stations is not None:
            s_lat, s_lon = station_positions(obs.stations)
            lat, lon = np.concatenate([lat, s_lat]), np.concatenate([lon, s_lon])
        if not len(lat):
            raise ConfigError("task.obs: no observation site; set task.obs.count > 0 or task.obs.stations")
        inside = inside_domain(data, lat, lon)
        if not inside.any():
            raise ConfigError(f"task.obs: none of the {len(lat)} observation sites lies in the domain of {data.source}"
                              f" (latitudes {data.lat.min():g}..{data.lat.max():g}, longitudes {data.lon.min():g}.."
                              f"{data.lon.max():g}); choose task.obs.stations inside it or use task.obs.count")
        if not inside.all():
            warnings.warn(f"task.obs: {int((~inside).sum())} of {len(lat)} observation sites lie outside the domain of "
                          f"{data.source} and were dropped", stacklevel=3)
        return lat[inside], lon[inside]

    @staticmethod
    def _per_variable(data: WeatherGraphData, values, key: str) -> np.ndarray:
        """float64 [V] of a per-variable mapping that must name every variable of the data."""
        values = dict(values or {})  # entries of variables the data does not hold are not used
        lacking = [v for v in data.variables if v not in values]
        if lacking:
            raise ConfigError(f"{key}: no value for {lacking} (one per variable of the data, in "
                              f"{', '.join(data.units)}); e.g. {key}={{"
                              + ", ".join(f"{v}: 1.0" for v in data.variables) + "}")
        return np.array([float(values[v]) for v in data.variables])

    def _observations(self, data: WeatherGraphData, rng) -> tuple[np.ndarray, np.ndarray]:
        """Normalised observations and their validity, ``[T, O, V]``: ``H x_t + ε`` where every node the site
        reads is valid and the site is not drawn missing at that time."""
        t, o, v = data.num_times, self.H.shape[0], data.num_vars
        reads_missing = abs(self.H)
        y = np.empty((t, o, v), dtype=np.float32)
        valid = np.empty((t, o, v), dtype=bool)
        for k in range(t):
            y[k] = self.H @ np.asarray(data.X[k], dtype=np.float64)
            valid[k] = (reads_missing @ (~np.asarray(data.mask[k])).astype(np.float64)) == 0
        valid &= (rng.random((t, o)) >= self.config.obs.missing)[..., None]
        y += (rng.standard_normal((t, o, v)) * self.sigma_o).astype(np.float32)
        return np.where(valid, y, 0.0).astype(np.float32), valid

    def _backgrounds(self, data: WeatherGraphData, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised background of every time step and its validity, ``[T, N, V]``."""
        bg = self.config.background
        x, m = np.asarray(data.X), np.asarray(data.mask)
        if bg.kind == "persistence":
            xb, valid = np.zeros_like(x), np.zeros_like(m)
            xb[bg.lead:], valid[bg.lead:] = x[:-bg.lead], m[:-bg.lead]
        elif bg.kind == "model":
            xb, valid = forecast_background(data, bg.model)
            valid &= m
        else:
            sigma_b = self._per_variable(data, bg.error, "task.background.error") / data.std
            noise = correlated_noise(data.lat, data.lon, bg.length_scale, (data.num_times, data.num_vars), rng,
                                     nodes=self.rows)
            xb, valid = (x + noise * sigma_b.astype(np.float32)).astype(np.float32), m.copy()
        return torch.from_numpy(np.where(valid, xb, 0.0).astype(np.float32)), torch.from_numpy(valid)

    def _joint(self, data: WeatherGraphData, lat, lon, y, obs_valid) -> WeatherGraphData:
        """The data with the observation nodes and their edges appended."""
        n, o = data.num_nodes, len(lat)
        all_lat, all_lon = np.concatenate([data.lat, lat]), np.concatenate([data.lon, lon])
        receivers = self._receivers(data)
        k = min(self.config.obs.neighbours, o)
        radius = self.config.obs.radius_km
        limit = np.inf if radius is None else float(arc_to_chord(radius / EARTH_RADIUS_KM))
        tree = cKDTree(unit_vectors(lat, lon))
        _, idx = tree.query(unit_vectors(data.lat[receivers], data.lon[receivers]), k=k, distance_upper_bound=limit)
        idx = idx.reshape(len(receivers), k)
        keep = idx < o
        new = np.stack([n + idx[keep], np.repeat(receivers, keep.sum(axis=1))]).astype(np.int64)
        if not new.shape[1]:
            raise ConfigError(f"task.obs.radius_km={self.config.obs.radius_km}: no observation site is that close to "
                              "any node; raise it or set it to null")
        # a site no receiver chose (where sites crowd) sends to its nearest receiver, as long as it is close enough
        unheard = np.setdiff1d(np.arange(o), idx[keep])
        if len(unheard):
            chord, nearest = cKDTree(unit_vectors(data.lat[receivers], data.lon[receivers])).query(
                unit_vectors(lat[unheard], lon[unheard]), k=1)
            close = chord <= limit
            new = np.concatenate([new, np.stack([n + unheard[close], receivers[nearest[close]]])], axis=1)
        geo = edge_features(all_lat, all_lon, new)
        names = tuple(data.edge_attr_names)
        if data.edge_attr is None:
            attr = None
        elif names == EDGE_ATTR_NAMES:
            attr = np.concatenate([data.edge_attr, geo])
        elif names == ICOSAHEDRAL_EDGE_ATTR_NAMES:  # the observation edges encode, as the grid -> mesh ones
            kind = np.zeros((new.shape[1], 3), dtype=np.float32)
            kind[:, 0] = 1.0
            attr = np.concatenate([data.edge_attr, np.concatenate([geo, kind], axis=1)])
        else:
            raise ConfigError(f"task=assimilate: cannot give observation edges the edge features {list(names)} of "
                              f"this graph; graphs with {list(EDGE_ATTR_NAMES)} (or the icosahedral ones) work")
        weights = kernel_weights(geo[:, 2], "gaussian")
        static_obs = (self.H @ data.static.astype(np.float64)).astype(np.float32)
        names_static = list(data.static_names)
        if MESH_NODE in names_static:
            static_obs[:, names_static.index(MESH_NODE)] = 0.0
        static = np.concatenate([data.static, static_obs])
        static = np.concatenate([static, np.r_[np.zeros(n), np.ones(o)].astype(np.float32)[:, None]], axis=1)
        joint = data.replace(
            lat=all_lat, lon=all_lon, area=np.concatenate([data.area, np.zeros(o)]),
            X=np.concatenate([np.asarray(data.X), y], axis=1), mask=np.concatenate([np.asarray(data.mask), obs_valid],
                                                                                   axis=1),
            static=static, static_names=(*data.static_names, OBS_NODE), node_ids=(),
        )
        return joint.with_graph(np.concatenate([data.edge_index, new], axis=1),
                                np.concatenate([data.edge_weight, weights]), attr, names)

    def _receivers(self, data: WeatherGraphData) -> np.ndarray:
        """The nodes observation edges end at: the mesh nodes of a joint mesh graph, else the grid nodes."""
        if data.edge_attr is not None and tuple(data.edge_attr_names) == ICOSAHEDRAL_EDGE_ATTR_NAMES:
            return np.flatnonzero(data.static[:, list(data.static_names).index(MESH_NODE)] > 0.5)
        return self.rows

    def _check_times(self) -> None:
        """Every time step needs a valid observation: an analysis without one is its background."""
        valid = self._M[:, self.num_grid:].any(dim=(1, 2)).numpy()
        if not valid.all():
            empty = np.flatnonzero(~valid)
            raise ConfigError(f"task.obs: no valid observation at {len(empty)} of {len(valid)} time steps (the first "
                              f"{str(self.data.times[empty[0]])[:16]}; {self.H.shape[0]} sites, missing "
                              f"{self.config.obs.missing:g}); raise task.obs.count or lower task.obs.missing")
        self._times_with_obs = valid

    # ------------------------------------------------------------------------------ samples
    @property
    def in_channels(self) -> int:
        return 3 * self.data.num_vars + self.data.static.shape[1] + 4

    def anchors(self, steps: np.ndarray) -> np.ndarray:
        """Steps with a valid observation (and, for persistence, the background's step within ``steps``)."""
        steps = np.asarray(steps, dtype=np.int64)
        s = set(steps.tolist())
        lead = self.config.background.lead if self.config.background.kind == "persistence" else 0
        return np.array([t for t in steps if (t - lead) in s and self._times_with_obs[t]
                         and bool(self._xb_valid[t].any())], dtype=np.int64)

    def split_anchors(self, split) -> dict[str, np.ndarray]:
        """As :meth:`Task.split_anchors`; the OI reference is set up here, from the training split."""
        out = super().split_anchors(split)
        if not len(out["train"]):
            raise DataError(f"{self.data.source}: task=assimilate has no training sample (a step with an "
                            "observation and its background in the training split)")
        self._setup_oi(out["train"])
        return out

    def _setup_oi(self, train: np.ndarray) -> None:
        cfg, data = self.config.oi, self.data
        t = torch.from_numpy(train)
        truth = self._X[t][:, : self.num_grid].numpy()
        valid = (self._M[t][:, : self.num_grid] & self._xb_valid[t]).numpy()
        errors = self._xb[t].numpy() - truth
        area = np.asarray(data.area[: self.num_grid])
        sigma_b, length, bias = fit_background_errors(errors, valid, data.lat[: self.num_grid],
                                                      data.lon[: self.num_grid], area, cfg.correlation,
                                                      seed=int(self.config.seed))
        if cfg.sigma_b is not None:
            sigma_b = self._per_variable(data, cfg.sigma_b, "task.oi.sigma_b") / data.std
        if cfg.length_scale is not None:
            length = self._per_variable(data, cfg.length_scale, "task.oi.length_scale")
        self.innovation_scale = torch.from_numpy((1.0 / np.maximum(sigma_b, 1e-12)).astype(np.float32))
        if self.config.balance_variables:  # each variable counts by the share of its background error corrected
            balance = 1.0 / np.maximum(sigma_b, 1e-12) ** 2
            self.var_weights = self._given_weights * torch.from_numpy((balance / balance.mean()).astype(np.float32))
        errors_model = ErrorModel(sigma_b=sigma_b, length_km=length, sigma_o=self.sigma_o, correlation=cfg.correlation)
        self.oi = OptimalInterpolation(self.H, data.lat[: self.num_grid], data.lon[: self.num_grid], errors_model,
                                       self.rows)
        self.oi_statistics = {
            v: {"sigma_b": float(sigma_b[i] * data.std[i]), "length_km": float(length[i]),
                "bias": float(bias[i] * data.std[i]), "sigma_o": float(self.sigma_o[i] * data.std[i]),
                "fitted": {"sigma_b": cfg.sigma_b is None, "length_km": cfg.length_scale is None}}
            for i, v in enumerate(data.variables)}
        if self.config.oi_input:  # OI's analysis of every step, computed once: what grid nodes read as an input
            steps = torch.arange(data.num_times)
            innovation, valid = self.innovations(steps)
            increment = torch.zeros(data.num_times, self.num_grid, data.num_vars)
            increment[:, torch.from_numpy(self.rows)] = torch.from_numpy(
                self.oi.increment(innovation.double().numpy(), valid.numpy())).float()
            self._oi_increment = increment
        for v, s in self.oi_statistics.items():
            log.info("OI statistics of %s: sigma_b %.4g, length scale %.0f km, background bias %.4g, sigma_o %.4g "
                     "(physical units)", v, s["sigma_b"], s["length_km"], s["bias"], s["sigma_o"])

    def summary(self) -> dict:
        """What the run's summary records of the task: the observing network and OI's statistics."""
        return {"observations": int(self.H.shape[0]), "observed_grid_nodes": int(self.observed.sum()),
                "grid_nodes": len(self.rows), "background": self.config.background.kind, "oi": self.oi_statistics}

    def valid_counts(self, anchors: np.ndarray, split: str = "train") -> np.ndarray:
        t = torch.from_numpy(np.asarray(anchors, dtype=np.int64))
        return self._scored(t).sum(dim=(0, 1)).numpy().astype(np.int64)

    def _scored(self, t: torch.Tensor) -> torch.Tensor:
        """bool [B, N, V]: grid entries whose truth and background are both valid."""
        grid = self._M[t][:, : self.num_grid] & self._xb_valid[t] & self._row_mask[None, : self.num_grid, None]
        return torch.cat([grid, torch.zeros(len(t), self.data.num_nodes - self.num_grid, self.data.num_vars,
                                            dtype=torch.bool)], dim=1)

    def read(self, anchors, nodes=None):
        """Nothing to read ahead: the truth, observations and backgrounds are in memory."""
        return None

    def innovations(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y − H x_b, valid)`` ``[B, O, V]`` at the times ``t`` (0 where not valid)."""
        xb, xb_valid = self._xb[t], self._xb_valid[t]
        y, valid = self._X[t][:, self.num_grid:], self._M[t][:, self.num_grid:]
        hxb = torch.stack([torch.sparse.mm(self._h, xb[i].double()).float() for i in range(len(t))])
        reads_missing = torch.stack([torch.sparse.mm(self._h_reads_missing, (~xb_valid[i]).double())
                                     for i in range(len(t))])
        valid = valid & (reads_missing == 0)
        return torch.where(valid, y - hxb, 0.0), valid

    def batch(self, anchors: np.ndarray, rng=None, nodes=None, split: str = "train", fields=None) -> Batch:
        t = torch.as_tensor(np.asarray(anchors), dtype=torch.long)
        b, o, v = len(t), self.data.num_nodes - self.num_grid, self.data.num_vars
        xb, xb_valid = self._xb[t], self._xb_valid[t]
        innovation, obs_valid = self.innovations(t)
        y = self._X[t][:, self.num_grid:]
        zeros = torch.zeros(b, o, v)
        value = torch.cat([xb, torch.where(obs_valid, y, 0.0)], dim=1)
        flag = torch.cat([xb_valid, obs_valid], dim=1).float()
        grid_input = torch.zeros_like(xb) if self._oi_increment is None else self._oi_increment[t]
        innov = torch.cat([grid_input, innovation], dim=1) * self.innovation_scale
        base = torch.cat([xb, zeros], dim=1)
        truth = self._X[t]
        valid = self._scored(t)
        count = valid.sum()
        x = torch.cat([value, flag, innov, self._static.expand(b, -1, -1), self.time_features(t)], dim=-1)
        target = torch.where(valid, truth - base, 0.0)
        if nodes is not None:
            x, target, base, truth, valid = (a[:, nodes] for a in (x, target, base, truth, valid))
        return Batch(x=x, y=target, w=self._weights(valid, count, nodes), base=base, truth=truth, valid=valid,
                     nodes=nodes)

    def baseline(self, batch: Batch) -> torch.Tensor:
        """Optimal interpolation of the batch's innovations (on the whole graph), as an increment."""
        if batch.nodes is not None:
            raise ValueError("the OI baseline works on whole-graph batches")
        if self.oi is None:
            raise RuntimeError("the OI reference is set up by split_anchors (from the training split)")
        v = self.data.num_vars
        obs = slice(self.num_grid, None)
        innovation = (batch.x[:, obs, 2 * v: 3 * v] / self.innovation_scale.to(batch.x.device)).double().cpu().numpy()
        valid = batch.x[:, obs, v: 2 * v].cpu().numpy() > 0.5
        out = torch.zeros_like(batch.y)
        increment = torch.from_numpy(self.oi.increment(innovation, valid)).to(out)
        out[:, torch.from_numpy(self.rows).to(out.device)] = increment
        return out


def _torch_csr(matrix) -> torch.Tensor:
    """A scipy sparse matrix as a float64 torch sparse COO tensor (for ``torch.sparse.mm``)."""
    coo = sp.coo_matrix(matrix)
    index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float64))
    return torch.sparse_coo_tensor(index, values, coo.shape, check_invariants=True).coalesce()
