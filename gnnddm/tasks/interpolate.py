"""Interpolation: fill in hidden nodes from their neighbours (``task=interpolate``), held out by time or, on
a single snapshot, by node."""

from __future__ import annotations

import numpy as np
import torch

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError
from gnnddm.schema.task import InterpolateTaskConfig, NodeSplitConfig
from gnnddm.tasks.base import Batch, Task


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

    Config = InterpolateTaskConfig

    def __init__(self, data: WeatherGraphData, *, config: InterpolateTaskConfig | None = None, **options):
        super().__init__(data, config=config, **options)
        c = self.config
        self.hide_fraction = float(c.hide_fraction)
        self.split_by = c.split_by if c.split_by != "auto" else ("nodes" if data.num_times == 1 else "time")
        self.node_role = _node_roles(data.num_nodes, c.node_split, c.node_seed) if self.split_by == "nodes" \
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


