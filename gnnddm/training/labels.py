"""What a run is called: the short names of its components (tags, run names, report tables), and the
facts about the chosen algorithm that the set-up and the launcher need before building it."""

from __future__ import annotations

import os

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from gnnddm.errors import ConfigError


def run_labels(cfg: DictConfig) -> dict[str, str]:
    """Short names of the chosen components (Hydra's group choices where available), for tags and tables."""
    try:
        choices = dict(HydraConfig.get().runtime.choices)
    except ValueError:
        choices = {}

    def pick(group: str) -> str:
        c = choices.get(group)
        if c:
            return str(c)
        sec = cfg.get(group) or {}
        return str(sec.get("name") or str(sec.get("_target_", "?")).rsplit(".", 1)[-1]).lower()

    partition = partition_section(cfg)
    return {
        "algorithm": pick("ddm"),
        "num_parts": str(partition.num_parts),
        "overlap": str(partition.overlap),
        "partitioner": pick("partition"),
        "model": pick("model"),
        "data": pick("data"),
        "experiment": str(choices.get("experiment") or cfg.get("experiment_name") or "-"),
        "edge_weights": str(cfg.graph.get("weights", "distance")),
        "seed": str(cfg.seed),
        "backend": str(cfg.distributed.backend),
        "ranks": str(ranks(cfg)),
    }


def default_run_name(cfg: DictConfig) -> str:
    lab = run_labels(cfg)
    return f"{lab['algorithm']}-p{lab['num_parts']}-{lab['model']}"


def ranks(cfg: DictConfig) -> int:
    """The processes of the run: 1 without a backend, else the world's size (torchrun, SLURM, or the
    ranks the local launcher starts)."""
    if cfg.distributed.backend == "none":
        return 1
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(key):
            return int(os.environ[key])
    return cfg.distributed.nproc_per_node


def algorithm_class(cfg: DictConfig) -> type:
    """The class of ``ddm._target_``."""
    target = str(cfg.ddm.get("_target_", ""))
    try:
        return get_class(target)
    except Exception:  # noqa: BLE001 - named as the config error it is
        raise ConfigError(f"ddm._target_: cannot import {target!r}; choose one of the options in conf/ddm/") from None


def is_global(cfg: DictConfig) -> bool:
    """Whether the algorithm trains the whole graph in one process (its class's ``whole_graph``)."""
    return bool(getattr(algorithm_class(cfg), "whole_graph", False))


def partition_section(cfg: DictConfig) -> DictConfig:
    """The partition section; ``global`` works on the whole graph: one part, no overlap."""
    if not is_global(cfg):
        return cfg.partition
    section = OmegaConf.create(OmegaConf.to_container(cfg.partition, resolve=True))
    section.num_parts, section.overlap = 1, 0
    return section
