"""Learning tasks: turn a :class:`WeatherGraphData` into mini-batches ``(input, target, loss weights)``.

Loss: area-weighted MSE over valid (node, variable) entries, normalised by the global
number of valid entries of the mini-batch. The weights ``w`` of a :class:`Batch` already carry the area,
the validity mask, the per-variable weights and that normalisation, so that for any set of nodes S

    f_S = Σ_{b, i ∈ S, v} w[b, i, v] · (out[b, i, v] − y[b, i, v])²

and the loss of a subdomain's owned nodes sums over subdomains to the global loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError
from gnnddm.schema.fields import check_args
from gnnddm.schema.task import ForecastTaskConfig, InterpolateTaskConfig, NodeSplitConfig


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

    def __init__(self, data: WeatherGraphData, var_weights: dict | None = None):
        if not data.normalised:
            raise ValueError("tasks work on normalised data (gnnddm.data.normalise)")
        self.data = data
        vw = np.ones(data.num_vars, dtype=np.float32)
        for name, value in (var_weights or {}).items():
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


class ForecastTask(Task):
    """Predict the state at t + lead from the state at t (and t − lead if ``history=2``), as an increment.

    Input features per node: the state(s) (0 where missing), their validity flags, the static features,
    and the time features (:meth:`Task.time_features`) of the input time t and of the target time t + lead.
    """

    name = "forecast"
    baseline_name = "persistence"

    def __init__(self, data: WeatherGraphData, history: int = 1, lead: int = 1, var_weights=None, rollout: int = 1,
                 rollout_schedule: list | None = None):
        check_args(ForecastTaskConfig, "task", history=history, lead=lead, var_weights=var_weights, rollout=rollout,
                   rollout_schedule=rollout_schedule)
        super().__init__(data, var_weights)
        self.history, self.lead = history, lead
        self.schedule = rollout_phases(rollout, rollout_schedule)
        #: the longest rollout of training (autoregressive steps per sample; 1: one-step training)
        self.rollout = max(k for _, k in self.schedule)
        self._pair_counts: dict[tuple[int, int], int] = {}

    def rollout_at(self, iteration: int) -> int:
        """The autoregressive steps of training at ``iteration`` (from 1) under the schedule."""
        return next(k for first, k in reversed(self.schedule) if iteration >= first)

    @property
    def in_channels(self) -> int:
        return 2 * self.history * self.data.num_vars + self.data.static.shape[1] + 8

    def anchors(self, steps: np.ndarray, ahead: int = 1) -> np.ndarray:
        """The steps of ``steps`` with the history behind them and ``ahead`` leads after them in ``steps``."""
        steps = np.asarray(steps)
        s = set(steps.tolist())
        back = (self.history - 1) * self.lead
        return np.array([t for t in steps if (t - back) in s and all(t + j * self.lead in s
                                                                      for j in range(1, ahead + 1))],
                        dtype=np.int64)

    def split_anchors(self, split) -> dict[str, np.ndarray]:
        """As :meth:`Task.split_anchors`; a training sample also needs the leads of the longest rollout."""
        out = super().split_anchors(split)
        if self.rollout > 1:
            out["train"] = self.anchors(split.train, ahead=self.rollout)
        return out

    def valid_counts(self, anchors: np.ndarray, split: str = "train") -> np.ndarray:
        anchors = np.asarray(anchors, dtype=np.int64)
        if self._M is not None:
            t = torch.from_numpy(anchors)
            return (self._M[t] & self._M[t + self.lead]).sum(dim=(0, 1)).numpy().astype(np.int64)
        if self._complete(anchors) and self._complete(anchors + self.lead):
            return np.full(self.data.num_vars, anchors.size * self.data.num_nodes, dtype=np.int64)
        return sum((self._step_mask(int(a)) & self._step_mask(int(a) + self.lead)).sum(dim=0).numpy()
                   for a in anchors).astype(np.int64) if anchors.size else np.zeros(self.data.num_vars, np.int64)

    def steps_of(self, t: torch.Tensor) -> torch.Tensor:
        """t, t + lead, then t - lead, t - 2 lead, ... for the history."""
        return torch.cat([t, t + self.lead, *(t - h * self.lead for h in range(1, self.history))])

    def inputs(self, states, t: torch.Tensor, nodes=None) -> torch.Tensor:
        """The model input [B, n, F] at the times ``t``: ``states``, the (state, validity) pairs it reads newest
        first (t, t − lead, ...), then the static features and the time features of t and t + lead; on the
        device of the states. One definition for training batches and rollouts alike."""
        device = states[0][0].device
        static = self._static if nodes is None else self._static[nodes]
        feats = [f for state, valid in states for f in (state, valid.float())]
        feats += [static.to(device).expand(len(t), -1, -1), self.time_features(t, nodes).to(device),
                  self.time_features(t + self.lead, nodes).to(device)]
        return torch.cat(feats, dim=-1)

    def batch(self, anchors: np.ndarray, rng=None, nodes=None, split: str = "train", fields=None) -> Batch:
        t = torch.as_tensor(np.asarray(anchors), dtype=torch.long)
        b = len(t)
        xs, ms = self.read(anchors, nodes) if fields is None else fields
        cur, m_cur, nxt, m_nxt = xs[:b], ms[:b], xs[b:2 * b], ms[b:2 * b]
        states = [(cur, m_cur), *((xs[(h + 1) * b:(h + 2) * b], ms[(h + 1) * b:(h + 2) * b])
                                  for h in range(1, self.history))]
        x = self.inputs(states, t, nodes)
        valid = m_cur & m_nxt
        # the normalisation is that of the full batch, also when only some rows are assembled
        count = valid.sum() if nodes is None else torch.tensor(sum(self._pair_count(int(a)) for a in t))
        y = torch.where(valid, nxt - cur, torch.zeros_like(cur))
        return Batch(x=x, y=y, w=self._weights(valid, count, nodes), base=cur, truth=nxt, valid=valid, nodes=nodes)

    def _pair_count(self, t: int, ahead: int = 1) -> int:
        """Valid (node, variable) entries at both t and t + ahead·lead on the whole graph (cached)."""
        key, later = (t, ahead), t + ahead * self.lead
        if key not in self._pair_counts:
            if self._complete([t, later]):
                self._pair_counts[key] = self.data.num_nodes * self.data.num_vars
            else:
                self._pair_counts[key] = int((self._step_mask(t) & self._step_mask(later)).sum())
        return self._pair_counts[key]

    def baseline(self, batch: Batch) -> torch.Tensor:
        return torch.zeros_like(batch.y)


def rollout_phases(rollout: int = 1, schedule=None) -> list[tuple[int, int]]:
    """``[(first iteration, steps), ...]`` of rollout training, by first iteration (the first is 1).

    Without ``schedule`` every iteration trains ``rollout`` steps. ``schedule`` lists the phases as
    ``[first iteration, steps]`` pairs (``[[1, 1], [300, 2], [600, 4]]``, as GraphCast lengthens its
    rollouts in fine-tuning); before its first phase a run trains one step. ``rollout`` is then the
    schedule's longest or left at 1. (Pairs, not a mapping: a list given on the command line replaces the
    configured one, where a mapping would be merged with it.)
    """
    if not schedule:
        return [(1, int(rollout))]
    example = "e.g. task.rollout_schedule=[[1,1],[300,2],[600,4]]"
    if any(len(pair) != 2 for pair in schedule):
        raise ConfigError(f"task.rollout_schedule: expected [first iteration, steps] pairs, got {list(schedule)}; "
                          f"{example}")
    phases = sorted((int(first), int(k)) for first, k in schedule)
    for first, k in phases:
        if first < 1 or k < 1:
            raise ConfigError(f"task.rollout_schedule: [{first}, {k}]: iterations count from 1 and a rollout has "
                              f"at least 1 step; {example}")
    firsts = [first for first, _ in phases]
    if len(set(firsts)) < len(firsts):
        raise ConfigError(f"task.rollout_schedule: two phases start at the same iteration ({firsts}); {example}")
    longest = max(k for _, k in phases)
    if int(rollout) not in (1, longest):
        raise ConfigError(f"task.rollout={rollout}: with task.rollout_schedule the schedule sets the rollout (its "
                          f"longest is {longest}); set task.rollout={longest} or leave it at 1")
    return phases if phases[0][0] == 1 else [(1, 1), *phases]


class InterpolateTask(Task):
    """Hide a random fraction of the nodes of each sample and predict their state from the rest.

    Input features per node: the state where visible (0 where hidden or missing), a visibility flag per
    variable, the static features, the time features. Only hidden valid entries are scored.

    Splits (``split_by``): ``time`` takes the samples of each split from its time steps (``data.split``);
    ``nodes`` holds out nodes instead (held-out stations or cells, as in sensor fusion), so that a single
    snapshot can be trained on: a fixed random ``node_split`` fraction of the nodes is the validation set,
    another the test set; they are never visible nor scored in training, and every time step is a sample
    of every split. A validation (test) sample shows all training nodes and scores the validation (test)
    nodes. ``auto`` is ``nodes`` when the data holds a single time step, ``time`` otherwise.
    """

    name = "interpolate"
    baseline_name = "inverse_distance"

    def __init__(self, data: WeatherGraphData, hide_fraction: float = 0.3, var_weights=None,
                 split_by: str = "auto", node_split: dict | None = None, node_seed: int = 0):
        config = check_args(InterpolateTaskConfig, "task", hide_fraction=hide_fraction, var_weights=var_weights,
                            split_by=split_by, node_split=node_split or {}, node_seed=node_seed)
        super().__init__(data, var_weights)
        self.hide_fraction = float(hide_fraction)
        self.split_by = split_by if split_by != "auto" else ("nodes" if data.num_times == 1 else "time")
        self.node_role = _node_roles(data.num_nodes, config.node_split, node_seed) if self.split_by == "nodes" \
            else None
        self._idw = None

    @property
    def in_channels(self) -> int:
        return 2 * self.data.num_vars + self.data.static.shape[1] + 4

    def anchors(self, steps: np.ndarray) -> np.ndarray:
        return np.asarray(steps, dtype=np.int64)

    def split_anchors(self, split) -> dict[str, np.ndarray]:
        if self.split_by == "time":
            return super().split_anchors(split)
        every = np.arange(self.data.num_times, dtype=np.int64)
        return {"train": every, "val": every, "test": every}

    def valid_counts(self, anchors: np.ndarray, split: str = "train") -> np.ndarray:
        anchors = np.asarray(anchors, dtype=np.int64)
        keep = None if self.node_role is None else torch.from_numpy(self.node_role == SPLITS.index(split))
        if self._M is None and self._complete(anchors):
            n = self.data.num_nodes if keep is None else int(keep.sum())
            return np.full(self.data.num_vars, anchors.size * n, dtype=np.int64)
        total = np.zeros(self.data.num_vars, dtype=np.int64)
        for a in anchors:
            m = self._step_mask(int(a))
            total += (m if keep is None else m[keep]).sum(dim=0).numpy().astype(np.int64)
        return total

    def _hidden(self, rng, b: int, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """bool [B, N]: the nodes scored; bool [N] or None: the nodes never shown (other held-out sets)."""
        n = self.data.num_nodes
        if self.node_role is None:
            return torch.from_numpy(rng.random((b, n)) < self.hide_fraction), None
        role = torch.from_numpy(self.node_role)
        if split == "train":
            draw = torch.from_numpy(rng.random((b, n)) < self.hide_fraction)
            return draw & (role == 0)[None, :], role != 0
        scored = role == SPLITS.index(split)
        return scored[None, :].expand(b, n).clone(), (role != 0) & ~scored

    def batch(self, anchors: np.ndarray, rng: np.random.Generator | None = None, nodes=None,
              split: str = "train", fields=None) -> Batch:
        rng = rng if rng is not None else np.random.default_rng(0)
        t = torch.as_tensor(np.asarray(anchors), dtype=torch.long)
        b = len(t)
        hidden, unseen = self._hidden(rng, b, split)  # all nodes: the same draws on every rank
        count = self._hidden_count(t, hidden)
        if nodes is not None:
            hidden = hidden[:, nodes]
            unseen = None if unseen is None else unseen[nodes]
        state, m = self.read(anchors, nodes) if fields is None else fields
        static = self._static if nodes is None else self._static[nodes]
        visible = m & ~hidden[..., None]
        if unseen is not None:
            visible = visible & ~unseen[None, :, None]
        x = torch.cat([torch.where(visible, state, 0.0), visible.float(), static.expand(b, -1, -1),
                       self.time_features(t, nodes)], -1)
        valid = m & hidden[..., None]
        return Batch(x=x, y=state, w=self._weights(valid, count, nodes), base=torch.zeros_like(state),
                     truth=state, valid=valid, nodes=nodes)

    def draw(self, anchors: np.ndarray, rng: np.random.Generator | None, split: str = "train") -> None:
        self._hidden(rng if rng is not None else np.random.default_rng(0), len(anchors), split)

    def _hidden_count(self, t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Valid entries of the hidden nodes of the whole batch (its loss normalisation)."""
        if self._M is not None:
            return (self._M[t] & hidden[..., None]).sum()
        if self._complete(t.numpy()):
            return hidden.sum() * self.data.num_vars
        return sum((self._step_mask(int(a)) & hidden[i, :, None]).sum() for i, a in enumerate(t))

    def baseline(self, batch: Batch) -> torch.Tensor:
        """Inverse-distance weighting over the visible graph neighbours (great-circle distance)."""
        data = self.data
        if data.edge_index is None:
            raise ValueError("the interpolation baseline needs the graph")
        dev = batch.x.device
        src, dst = (torch.from_numpy(a).to(dev) for a in data.edge_index)
        dist = _edge_distance(data).to(dev)
        inv = 1.0 / torch.clamp(dist, min=1e-6) ** 2
        v = data.num_vars
        vis = batch.x[..., v : 2 * v]
        vals = batch.x[..., :v]
        wsum = torch.zeros_like(vals).index_add_(1, dst, vis[:, src] * inv[None, :, None])
        num = torch.zeros_like(vals).index_add_(1, dst, (vis * vals)[:, src] * inv[None, :, None])
        return torch.where(wsum > 0, num / wsum.clamp_min(1e-12), torch.zeros_like(num))


SPLITS = ("train", "val", "test")


def _node_roles(n: int, node_split: NodeSplitConfig, seed: int) -> np.ndarray:
    """int8 [n]: 0 training, 1 validation, 2 test node; a fixed random draw of the ``node_split`` fractions."""
    fv, ft = node_split.val, node_split.test
    n_val, n_test = max(1, int(round(fv * n))), int(round(ft * n))
    if n_val + n_test >= n:
        raise ConfigError(f"task.node_split: {n} nodes leave none for training with val={fv}, test={ft}")
    order = np.random.default_rng(seed).permutation(n)
    role = np.zeros(n, dtype=np.int8)
    role[order[:n_val]], role[order[n_val:n_val + n_test]] = 1, 2
    return role


def _edge_distance(data: WeatherGraphData) -> torch.Tensor:
    if data.edge_attr is not None and "distance" in data.edge_attr_names:
        return torch.from_numpy(data.edge_attr[:, data.edge_attr_names.index("distance")]).float()
    from gnnddm.graph.sphere import haversine

    s, d = data.edge_index
    return torch.from_numpy(haversine(data.lat[s], data.lon[s], data.lat[d], data.lon[d])).float()


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
