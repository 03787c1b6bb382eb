"""Forecasting: predict the state ``lead`` steps ahead from the state(s) before it (``task=forecast``), and the
rollout schedule of rollout training."""

from __future__ import annotations

import numpy as np
import torch

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError
from gnnddm.schema.task import ForecastTaskConfig
from gnnddm.tasks.base import Batch, Task


class ForecastTask(Task):
    """Predict the state at t + lead from the state at t (and t − lead if ``history=2``), as an increment.

    Input features per node: the state(s) (0 where missing), their validity flags, the static features,
    and the time features (:meth:`Task.time_features`) of the input time t and of the target time t + lead.
    """

    name = "forecast"
    baseline_name = "persistence"

    Config = ForecastTaskConfig

    def __init__(self, data: WeatherGraphData, *, config: ForecastTaskConfig | None = None, **options):
        super().__init__(data, config=config, **options)
        c = self.config
        self.history, self.lead = c.history, c.lead
        self.schedule = rollout_phases(c.rollout, c.rollout_schedule)
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


