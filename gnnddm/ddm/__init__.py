"""Domain-decomposition training algorithms and their communication accounting (docs/algorithms.md).

``build_algorithm`` turns the ``ddm`` and ``optimizer`` config groups into an :class:`Algorithm` whose
``step(batch)`` performs one outer iteration; the algorithm receives its validated section, an instance
of its class's ``Config`` schema. An algorithm is registered by its YAML file alone:
``conf/ddm/<name>.yaml`` names its class in ``_target_`` (``gnnddm.config.options("ddm")`` lists them).
"""

from __future__ import annotations

from gnnddm.config import build, build_component, section_config
from gnnddm.ddm.base import Algorithm
from gnnddm.errors import ConfigError


def build_algorithm(ddm_cfg, optimizer_cfg, model, objective, comm) -> Algorithm:
    """The algorithm of ``ddm_cfg`` (its ``_target_`` and parameters) on ``model`` and ``objective``.

    Parameters
    ----------
    ddm_cfg : DictConfig
        The ``ddm`` group: ``_target_: gnnddm.ddm.<module>.<Class>``, ``_partial_: true``, ``name`` and
        the algorithm's parameters (see conf/ddm/*.yaml and docs/algorithms.md).
    optimizer_cfg : DictConfig or None
        The ``optimizer`` group (the global optimizer), e.g. ``_target_: torch.optim.Adam``, ``lr``.
    model, objective, comm
        See :class:`gnnddm.ddm.base.Algorithm`.
    """
    optimizer = None if optimizer_cfg is None else build(optimizer_cfg, "optimizer", partial=True)
    algorithm = build_component(ddm_cfg, "ddm", model, objective, comm, optimizer=optimizer)
    if not isinstance(algorithm, Algorithm):
        raise ConfigError(f"ddm._target_: {type(algorithm).__name__} is not a gnnddm.ddm algorithm")
    return algorithm


def build_objective(ddm_cfg, data, partition, device="cpu", parts=None, graph_builder=None):
    """The objective of the algorithm of ``ddm_cfg``, built once with the coarse levels it needs
    (``Algorithm.coarse_levels`` of its class, from its validated section)."""
    from gnnddm.ddm.objective import Objective

    cls, config = section_config(ddm_cfg, "ddm")  # checked before the levels are built from it
    levels = cls.coarse_levels(data, config, graph_builder)
    return Objective(data, partition, device=device, coarse_levels=levels, parts=parts, graph_builder=graph_builder)


__all__ = ["Algorithm", "build_algorithm", "build_objective"]
