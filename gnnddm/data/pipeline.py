"""From a composed config to a ready problem: load data, split, normalise, build the graph.

Shared by ``gnnddm train`` and ``gnnddm partition``; each component receives only its own config
section.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gnnddm.config import build
from gnnddm.data.normalise import TimeSplit, normalise, split_times
from gnnddm.data.weather_graph import WeatherGraphData


@dataclass(frozen=True, eq=False)
class Problem:
    """Normalised data with its graph, the time split, and the graph builder for coarse levels.

    ``rebuild(coarse_data)`` builds the graph of a coarser version of the data exactly as ``data``'s
    was built (same builder and options, data-dependent weights from the training steps).
    """

    data: WeatherGraphData
    split: TimeSplit
    rebuild: Callable | None = None


def load_data(data_cfg: DictConfig) -> tuple[WeatherGraphData, DictConfig]:
    """Instantiate the loader of the ``data`` group (all keys but ``split``)."""
    loader_cfg = OmegaConf.masked_copy(data_cfg, [k for k in data_cfg if k != "split"])
    return build(loader_cfg, "data"), data_cfg.get("split", {})


def build_problem(cfg: DictConfig) -> Problem:
    """Load ``cfg.data``, split and normalise it, and build the graph of ``cfg.graph``."""
    raw, split_cfg = load_data(cfg.data)
    split_kw = OmegaConf.to_container(split_cfg, resolve=True) if split_cfg else {}
    split = split_times(raw.times, **split_kw)
    data = normalise(raw, split.train)
    builder = build(cfg.graph, "graph")
    train = np.asarray(split.train)
    data = builder(data, train_index=train)
    return Problem(data=data, split=split, rebuild=functools.partial(builder, train_index=train))
