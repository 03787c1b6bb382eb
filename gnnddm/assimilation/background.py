"""A trained forecast model as the background of ``task=assimilate`` (``task.background.kind: model``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError


@torch.no_grad()
def forecast_background(data: WeatherGraphData, run_dir) -> tuple[np.ndarray, np.ndarray]:
    """The forecast of the model in ``run_dir/model.pt`` for every step it can reach: ``(x_b, valid)``
    ``[T, N, V]`` in the data's normalised units; ``x_b[t]`` is its one-step forecast from ``t − lead`` (and
    the history before it), invalid where no forecast reaches ``t``.

    The model must have been trained on this data (variables, normalisation, graph) by ``task=forecast``;
    otherwise a :class:`ConfigError` naming ``task.background.model`` and what differs.
    """
    from gnnddm.bundle import load_model
    from gnnddm.config import build_component
    from gnnddm.models.graph import prepare_graph

    key = "task.background.model"
    path = Path(run_dir)
    bundle = load_model(path / "model.pt" if path.is_dir() else path)
    # variables and graph first: they say "another data set" more plainly than its statistics
    diffs = sorted(bundle.differences(data), key=lambda d: not d.startswith(("variables", "graph")))
    if diffs:
        raise ConfigError(f"{key}={run_dir}: the model was trained on other data: {'; '.join(diffs[:4])}; give a "
                          "forecast model trained on this data set, variables and graph")
    task = build_component(bundle.cfg.task, "task", data)
    if task.name != "forecast":
        raise ConfigError(f"{key}={run_dir}: a model trained by task={task.name}; the background needs a forecast "
                          "model (task=forecast)")
    model = build_component(bundle.cfg.model, "model", task.in_channels, task.out_channels,
                            int(bundle.graph["edge_dim"]))
    model.load_state_dict(bundle.state_dict)
    model.eval()
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    xb = np.zeros(np.shape(data.X), dtype=np.float32)
    valid = np.zeros(np.shape(data.mask), dtype=bool)
    for t in task.anchors(np.arange(data.num_times - task.lead)):
        batch = task.batch(np.array([t]))
        xb[t + task.lead] = (batch.base + model(batch.x, graph))[0].numpy()
        valid[t + task.lead] = np.asarray(data.mask[t])
    return xb, valid
