"""The base of the learning tasks: turn a :class:`WeatherGraphData` into mini-batches ``(input, target, loss weights)``.

Loss: area-weighted MSE over valid (node, variable) entries, normalised by the global
number of valid entries of the mini-batch. The weights ``w`` of a :class:`Batch` already carry the area,
the validity mask, the per-variable weights and that normalisation, so that for any set of nodes S

    f_S = Σ_{b, i ∈ S, v} w[b, i, v] · (out[b, i, v] − y[b, i, v])²

and the loss of a subdomain's owned nodes sums over subdomains to the global loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError
from gnnddm.schema.fields import configured
from gnnddm.schema.task import TaskConfig


@dataclass(frozen=True, eq=False)
class Batch:
    """One mini-batch of B time samples on the full graph (all tensors float32 unless noted).

    x : [B, N, F_in]   model input (dynamic state(s), visibility flags, static features)
    y : [B, N, V]      model target (forecast: the increment to ``base``; interpolate: the state)
    w : [B, N, V]      loss weights, normalised by the batch's count of valid entries (see module docstring)
    base : [B, N, V]   what the model output is added to, to give the predicted state
    truth : [B, N, V]  the true state (normalised)
    valid : bool [B, N, V] where ``truth`` is valid and scored
    nodes : int64 [n] or None
        None: the rows are all N nodes. Otherwise the rows are these nodes only (a rank's subdomains),
        every tensor has n instead of N rows, and ``w`` keeps the normalisation of the full batch.
    """

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    base: torch.Tensor
    truth: torch.Tensor
    valid: torch.Tensor
    nodes: torch.Tensor | None = None

    def to(self, device) -> Batch:
        moved = (getattr(self, f).to(device) for f in ("x", "y", "w", "base", "truth", "valid"))
        return Batch(*moved, nodes=None if self.nodes is None else self.nodes.to(device))


def weighted_sq_error(out: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ w · (out − y)²: the loss of every task and every (global, subdomain, coarse) problem (scalar)."""
    return (w * (out - y) ** 2).sum()


def loss(out: torch.Tensor, batch: Batch, nodes=None) -> torch.Tensor:
    """Weighted squared error of ``out`` on ``nodes`` (all nodes when None); see module docstring."""
    if nodes is None:
        return weighted_sq_error(out, batch.y, batch.w)
    return weighted_sq_error(out, batch.y[:, nodes], batch.w[:, nodes])


class Task:
    """Base class: the variables a task reads and predicts, and how batches are made."""

    name = "task"
    baseline_name = "baseline"  # the reference method of :meth:`baseline`, named in summaries

    #: the schema of the task's ``task`` section (each task names its own, :mod:`gnnddm.schema.task`)
    Config: ClassVar[type] = TaskConfig

    def __init__(self, data: WeatherGraphData, *, config: TaskConfig | None = None, **options):
        """``data`` normalised; ``config`` the validated ``task`` section (an instance of :attr:`Config`), or
        its keys as keyword ``**options`` (the schema's defaults for the rest)."""
        #: the validated ``task`` section
        self.config = configured(self.Config, "task", config, options)
        if not data.normalised:
            raise ValueError("tasks work on normalised data (gnnddm.data.normalise)")
        self.data = data
        vw = np.ones(data.num_vars, dtype=np.float32)
        for name, value in (self.config.var_weights or {}).items():
            if name not in data.variables:
                raise ConfigError(f"task.var_weights: unknown variable {name!r}; valid: {list(data.variables)}")
            vw[data.variables.index(name)] = float(value)
        self.var_weights = torch.from_numpy(vw)
        # fields in memory as tensors; lazily read ones (gnnddm.data.lazy) stay in their file
        self._X = None if data.lazy else torch.from_numpy(np.ascontiguousarray(data.X))
        self._M = None if data.lazy else torch.from_numpy(np.ascontiguousarray(data.mask))
        self._area = torch.from_numpy(data.area.astype(np.float32))
        self._static = torch.from_numpy(data.static.astype(np.float32))
        # hours since the epoch and year fraction of every time step, for the time features
        times = np.asarray(data.times, dtype="datetime64[s]").astype(np.int64)
        self._hours = torch.from_numpy((times / 3600.0).astype(np.float64))
        self._lon_hours = torch.from_numpy(np.asarray(data.lon, dtype=np.float64) / 15.0)

    def time_features(self, t: torch.Tensor, nodes: torch.Tensor | None = None) -> torch.Tensor:
        """sin/cos of the local solar time of day and of the fraction of the year: [B, N, 4].

        Local solar time = UTC hour + longitude / 15, so the diurnal cycle at each node (and the length
        of irregular time steps, through the target time's features) is visible to the model, as in
        GraphCast's local-time inputs.
        """
        lon_hours = self._lon_hours if nodes is None else self._lon_hours[nodes]
        hours = self._hours[t]
        local = (hours[:, None] + lon_hours[None, :]) * (2 * np.pi / 24.0)
        year = (hours / (24.0 * 365.2425)) * (2 * np.pi)
        n = lon_hours.shape[0]
        feats = torch.stack(
            [torch.sin(local), torch.cos(local),
             torch.sin(year)[:, None].expand(-1, n), torch.cos(year)[:, None].expand(-1, n)], dim=-1
        )
        return feats.float()

    @property
    def out_channels(self) -> int:
        return self.data.num_vars

    def summary(self) -> dict:
        """What the run's summary records of the task beyond its samples (empty for most tasks)."""
        return {}

    def anchors(self, steps: np.ndarray) -> np.ndarray:
        """The time indices within ``steps`` that can anchor a sample."""
        raise NotImplementedError

    def split_anchors(self, split) -> dict[str, np.ndarray]:
        """Anchors of the ``train``, ``val`` and ``test`` samples of a :class:`~gnnddm.data.normalise.TimeSplit`."""
        return {name: self.anchors(getattr(split, name)) for name in ("train", "val", "test")}

    def valid_counts(self, anchors: np.ndarray, split: str = "train") -> np.ndarray:
        """int64 [V]: valid target entries that the samples at ``anchors`` of ``split`` can score."""
        raise NotImplementedError

    def batch(self, anchors: np.ndarray, rng: np.random.Generator | None = None, nodes=None,
              split: str = "train", fields=None) -> Batch:
        """A mini-batch anchored at ``anchors`` for ``split`` (train, val or test); with ``nodes``, only those
        rows (see :class:`Batch`). ``fields``: what :meth:`read` returned for these anchors and nodes (read
        ahead by a prefetcher); read here when None."""
        raise NotImplementedError

    def draw(self, anchors: np.ndarray, rng: np.random.Generator | None, split: str = "train") -> None:
        """Advance ``rng`` as :meth:`batch` would for these anchors, without assembling the batch (the
        samples another rank evaluates). Forecast batches draw nothing."""

    def steps_of(self, t: torch.Tensor) -> torch.Tensor:
        """The time steps a batch anchored at ``t`` reads, in blocks of ``len(t)`` (see :meth:`read`)."""
        return t

    def read(self, anchors, nodes=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, mask)`` [K * B, n, V] of the steps :meth:`steps_of` the anchors (all nodes, or ``nodes``):
        the only part of a batch that touches the data, so that it can be read ahead."""
        return self.fields(self.steps_of(torch.as_tensor(np.asarray(anchors), dtype=torch.long)), nodes)

    def fields(self, steps, nodes=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, mask)`` [len(steps), n, V] of the time steps ``steps`` (normalised; 0 where missing)."""
        t = torch.as_tensor(np.asarray(steps), dtype=torch.long)
        if self._X is not None:
            return self._rows(self._X, t, nodes), self._rows(self._M, t, nodes)
        x, m = self.data.X.reader.fields(t.numpy(), None if nodes is None else np.asarray(nodes))
        return torch.from_numpy(x), torch.from_numpy(m)

    def _step_mask(self, t: int) -> torch.Tensor:
        """bool [N, V]: the valid entries of step ``t`` on the whole graph."""
        if self._M is not None:
            return self._M[t]
        return torch.from_numpy(self.data.X.reader.fields(np.array([t]))[1][0])

    def _complete(self, t) -> bool:
        """Whether every entry of the steps ``t`` is valid (known without reading them for lazy data)."""
        counts = self.data.X.reader.step_counts if self.data.lazy else None
        if counts is None:
            return False
        return bool((counts[np.asarray(t)] == self.data.num_nodes).all())

    def _rows(self, a: torch.Tensor, t: torch.Tensor, nodes) -> torch.Tensor:
        """``a[t]`` ([B, N, ...]) restricted to ``nodes`` without copying the other rows.

        One ``index_select`` over the flattened (time, node) rows: its cost is proportional to the rows
        taken, so a rank that reads half of the nodes pays half.
        """
        if nodes is None:
            return a.index_select(0, t)
        n_all = a.shape[1]
        flat = (t[:, None] * n_all + nodes[None, :]).reshape(-1)
        return a.reshape(a.shape[0] * n_all, -1).index_select(0, flat).view(len(t), len(nodes), *a.shape[2:])

    def baseline(self, batch: Batch) -> torch.Tensor:
        """Prediction of the reference method in model-output space (forecast: persistence = 0)."""
        raise NotImplementedError

    def _weights(self, valid: torch.Tensor, count: torch.Tensor, nodes=None) -> torch.Tensor:
        """Loss weights of the rows of ``valid``; ``count`` is the number of valid entries of the full batch."""
        area = self._area if nodes is None else self._area[nodes]
        w = valid.float() * area[None, :, None] * self.var_weights[None, None, :]
        return w / count.clamp_min(1)



def squared_errors(pred_state: torch.Tensor, batch: Batch, data: WeatherGraphData) -> torch.Tensor:
    """Area-weighted sums over the valid entries, per variable: float64 [2, V] = (Σ m·err², Σ m).

    Sums, so that the shares of several batches (or ranks) add up; :func:`rmse_from_sums` gives the RMSE.
    """
    dev = pred_state.device
    a = torch.from_numpy(data.area.astype(np.float64)).to(dev)[None, :, None]
    m = batch.valid.double() * a
    se = ((pred_state.double() - batch.truth.double()) ** 2 * m).sum(dim=(0, 1))
    return torch.stack([se, m.sum(dim=(0, 1))])


def rmse_from_sums(sums: torch.Tensor, data: WeatherGraphData) -> dict[str, float]:
    """RMSE of each variable in physical units from :func:`squared_errors` sums (NaN without a valid entry)."""
    std = torch.from_numpy(np.asarray(data.std, dtype=np.float64)).to(sums.device)
    rmse = torch.sqrt(sums[0] / sums[1].clamp_min(1e-12)) * std
    rmse = torch.where(sums[1] > 0, rmse, torch.full_like(rmse, float("nan")))  # no valid entry: no RMSE
    return {name: float(rmse[i]) for i, name in enumerate(data.variables)}


def rmse_per_variable(pred_state: torch.Tensor, batch: Batch, data: WeatherGraphData) -> dict[str, float]:
    """RMSE of each variable in physical units over valid entries, area (latitude) weighted."""
    return rmse_from_sums(squared_errors(pred_state, batch, data), data)
