"""Checking a composed config against the schemas before any work starts."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gnnddm.errors import ConfigError
from gnnddm.schema.data import DATA
from gnnddm.schema.fields import check
from gnnddm.schema.graph import GRAPHS
from gnnddm.schema.model import MODELS
from gnnddm.schema.optimizer import OPTIMIZERS
from gnnddm.schema.partition import PARTITIONS
from gnnddm.schema.root import RootConfig
from gnnddm.schema.task import TASKS

#: group -> the schemas of its options, each found from a section's ``_target_`` (first match wins); the
#: ``ddm`` group's schemas are declared by the algorithm classes themselves (``Config``)
GROUPS: dict[str, tuple[type, ...]] = {
    "data": DATA,
    "graph": GRAPHS,
    "partition": PARTITIONS,
    "model": MODELS,
    "task": TASKS,
    "optimizer": OPTIMIZERS,
}
#: every group of the root config's defaults list: each section must name a ``_target_``
GROUP_NAMES = ("data", "graph", "partition", "model", "task", "optimizer", "ddm")


def validate(cfg: DictConfig | Mapping) -> None:
    """Raise the problem of a composed config as a :class:`ConfigError` (several: one listing them all)."""
    found = problems(cfg)
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigError(f"{len(found)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in found))


def problems(cfg: DictConfig | Mapping) -> list[ConfigError]:
    """Every problem of a composed config, in key order: unknown keys, wrong types, values out of range,
    unknown choices, a group without ``_target_`` or with one that no schema describes."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    except OmegaConfBaseException as exc:
        return [ConfigError(f"{getattr(exc, 'full_key', '') or 'config'}: cannot be resolved ({exc.msg})")]
    root = {k: v for k, v in tree.items() if k not in GROUP_NAMES and k != "hydra"}
    found = check(RootConfig, root, "", label="the root config (or a group: " + ", ".join(GROUP_NAMES) + ")")
    choices = group_choices()
    for group in GROUP_NAMES:
        section = tree.get(group)
        option = choices.get(group) or (section.get("name") if isinstance(section, Mapping) else None)
        found += _check_group(group, section, option)
    return found


def group_choices() -> dict[str, str]:
    """The option chosen in each group (``{"model": "sage", ...}``) when Hydra composed the running app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except ValueError:  # not inside a Hydra app (compose API, tests, a config loaded from a file)
        return {}


def schema_of(group: str, target: str) -> type | None:
    """The schema of the option of ``group`` whose ``_target_`` is ``target``; None if there is none."""
    return next((s for s in GROUPS.get(group, ()) if s.matches(target)), None)


def _check_group(group: str, section, option: str | None) -> list[ConfigError]:
    target = section.get("_target_") if isinstance(section, Mapping) else None
    if target is None:
        return [ConfigError(f"{group}: config group has no _target_; choose one of the options in conf/{group}/")]
    schema = _algorithm_schema(str(target)) if group == "ddm" else schema_of(group, str(target))
    if isinstance(schema, ConfigError):
        return [schema]
    if schema is None:
        known = ", ".join(s.__dataclass_fields__["_target_"].default for s in GROUPS[group])
        return [ConfigError(f"{group}._target_: no schema describes {target!r}; known: {known} (a new component "
                            f"needs its schema in gnnddm/schema/{group}.py)")]
    label = f"{group}={option} ({target})" if option else str(target)
    return check(schema, section, f"{group}.", label=label)


def _algorithm_schema(target: str):
    """The ``Config`` schema that an algorithm class declares (the ``ddm`` group: an algorithm is its module
    and its YAML file, with no table to extend); a ConfigError when the class cannot be found."""
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - named as the config error it is
        return ConfigError(f"ddm._target_: cannot import {target!r}; choose one of the options in conf/ddm/")
    schema = getattr(cls, "Config", None)
    if schema is None or not schema.matches(target):
        return ConfigError(f"ddm._target_: {target!r} declares no config schema (a Config dataclass whose "
                           "_target_ is the class; see gnnddm.ddm.base.AlgorithmConfig)")
    return schema
