"""Domain-decomposition training algorithms and their communication accounting (docs/algorithms.md).

``build_algorithm`` turns the ``ddm`` and ``optimizer`` config groups into an :class:`Algorithm` whose
``step(batch)`` performs one outer iteration. An algorithm is registered by its YAML file alone:
``conf/ddm/<name>.yaml`` names its class in ``_target_`` (``gnnddm.config.options("ddm")`` lists them).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from gnnddm.config import build
from gnnddm.ddm.base import Algorithm
from gnnddm.errors import ConfigError
from gnnddm.schema.fields import check_args


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
    factory = build(ddm_cfg, "ddm", partial=True)
    optimizer = None if optimizer_cfg is None else build(optimizer_cfg, "optimizer", partial=True)
    try:
        algorithm = factory(model=model, objective=objective, comm=comm, optimizer=optimizer)
    except TypeError as exc:
        raise ConfigError(f"ddm: unknown or missing option for {factory.func.__name__} ({exc})") from None
    if not isinstance(algorithm, Algorithm):
        raise ConfigError(f"ddm._target_: {type(algorithm).__name__} is not a gnnddm.ddm algorithm")
    return algorithm


def build_objective(ddm_cfg, data, partition, device="cpu", parts=None, graph_builder=None):
    """The objective of the algorithm of ``ddm_cfg``, built once with the coarse levels it needs
    (``Algorithm.coarse_levels`` of its class, from its options)."""
    from hydra.utils import get_class

    from gnnddm.ddm.objective import Objective

    options = OmegaConf.to_container(ddm_cfg, resolve=True) if isinstance(ddm_cfg, DictConfig) else dict(ddm_cfg)
    cls = get_class(options.pop("_target_"))
    options = {k: v for k, v in options.items() if k not in ("_partial_", "name")}
    check_args(cls.Config, "ddm", **options)  # before the levels are built from them
    levels = cls.coarse_levels(data, graph_builder, **options)
    return Objective(data, partition, device=device, coarse_levels=levels, parts=parts, graph_builder=graph_builder)


__all__ = ["Algorithm", "build_algorithm", "build_objective"]
