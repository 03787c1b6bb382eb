"""Checking a composed config against the schemas before any work starts, and a config read from a file
(the one stored in ``model.pt``) before anything is built from it.

A section of a group is checked against the first schema of :data:`GROUPS` whose ``_target_`` matches its
own. :data:`GROUPS` is computed from the schemas that register themselves by being defined (a
:class:`~gnnddm.schema.fields.Component` subclass with a ``_target_`` in ``gnnddm/schema/<group>.py``), so
no table names them; the ``ddm``, ``model`` and ``partition`` sections' schema is the ``Config`` of what their
``_target_`` names (:data:`DECLARED`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gnnddm.errors import ConfigError
from gnnddm.schema.fields import DECLARED, _check, check, declared, registered_groups, schemas
from gnnddm.schema.root import RootConfig


@functools.cache
def group_names() -> tuple[str, ...]:
    """The config groups: those of the root config's defaults list (``conf/config.yaml``), in its order; each
    section must name a ``_target_``. A new group is its folder and its entry there, and nothing else."""
    import yaml

    from gnnddm.config import config_dir

    defaults = (yaml.safe_load((config_dir() / "config.yaml").read_text()) or {}).get("defaults", ())
    return tuple(next(iter(d)) for d in defaults
                 if isinstance(d, dict) and not next(iter(d)).startswith(("override", "hydra")))


class _Groups(Mapping):
    """group -> the schemas of its options, in the order a section's ``_target_`` is matched (the first
    match wins: :func:`~gnnddm.schema.fields.schemas`).

    Nothing is listed here: defining a :class:`~gnnddm.schema.fields.Component` subclass with a ``_target_``
    in ``gnnddm/schema/<group>.py`` registers it under ``<group>``, and every module of this package is
    imported before the first look-up, so a new option's schema (or a new group's module) needs no entry.
    The :data:`DECLARED` groups (``ddm``, ``model``, ``partition``) have none: their schemas are declared by
    what their ``_target_`` names (``Config``).
    """

    def _groups(self) -> tuple[str, ...]:
        _import_schema_modules()
        order = {g: i for i, g in enumerate(group_names())}
        return tuple(sorted(registered_groups(), key=lambda g: order.get(g, len(order))))

    def __getitem__(self, group: str) -> tuple[type, ...]:
        if group not in self._groups():
            raise KeyError(group)
        return schemas(group)

    def __iter__(self):
        return iter(self._groups())

    def __len__(self) -> int:
        return len(self._groups())

    def __repr__(self) -> str:
        return repr(dict(self))


@functools.cache
def _import_schema_modules() -> None:
    """Import every module of :mod:`gnnddm.schema`, so that each group's schemas are registered."""
    import importlib
    import pkgutil

    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")


#: group -> the schemas of its options (a read-only mapping computed from the registry, see :class:`_Groups`)
GROUPS: Mapping[str, tuple[type, ...]] = _Groups()


def validate(cfg: DictConfig | Mapping) -> RootConfig:
    """The validated root keys of a composed config (``seed``, ``trainer``, ``distributed``, ... as typed
    schema instances, defaults filled in); raise its problem as a :class:`ConfigError` (several: one
    listing them all)."""
    found, root = _examine(cfg)
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigError(f"{len(found)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in found))
    return root


def problems(cfg: DictConfig | Mapping) -> list[ConfigError]:
    """Every problem of a composed config, in key order: unknown keys, wrong types, values out of range,
    unknown choices, a group without ``_target_`` or with one that no schema describes."""
    return _examine(cfg)[0]


def _examine(cfg: DictConfig | Mapping) -> tuple[list[ConfigError], RootConfig | None]:
    """``(problems, the root keys' schema instance)``: the config resolved and its root checked once."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    except OmegaConfBaseException as exc:
        return [ConfigError(f"{getattr(exc, 'full_key', '') or 'config'}: cannot be resolved ({exc.msg})")], None
    label = "the root config (or a group: " + ", ".join(group_names()) + ")"
    found, root = _check(RootConfig, _root_keys(tree), "", label=label)
    choices = group_choices()
    for group in group_names():
        section = tree.get(group)
        option = choices.get(group) or (section.get("name") if isinstance(section, Mapping) else None)
        found += _check_group(group, section, option)
    return found, root


def _root_keys(tree: Mapping) -> dict:
    """The keys of the root config other than the groups (and Hydra's own section)."""
    return {k: v for k, v in tree.items() if k not in group_names() and k != "hydra"}


def group_choices() -> dict[str, str]:
    """The option chosen in each group (``{"model": "sage", ...}``) when Hydra composed the running app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except ValueError:  # not inside a Hydra app (compose API, tests, a config loaded from a file)
        return {}


def schema_of(group: str, target: str) -> type | None:
    """The schema of the option of ``group`` whose ``_target_`` is ``target``; None if there is none."""
    if group in DECLARED:
        found = declared_schema(group, target)
        return None if isinstance(found, ConfigError) else found
    return next((s for s in GROUPS.get(group, ()) if s.matches(target)), None)


def _check_group(group: str, section, option: str | None) -> list[ConfigError]:
    target = section.get("_target_") if isinstance(section, Mapping) else None
    if target is None:
        return [ConfigError(f"{group}: config group has no _target_; choose one of the options in conf/{group}/")]
    schema = declared_schema(group, str(target)) if group in DECLARED else schema_of(group, str(target))
    if isinstance(schema, ConfigError):
        return [schema]
    if schema is None:
        known = ", ".join(dict.fromkeys(s.__dataclass_fields__["_target_"].default for s in GROUPS[group]))
        return [ConfigError(f"{group}._target_: no schema describes {target!r}; known: {known} (a new component "
                            f"needs its schema in gnnddm/schema/{group}.py)")]
    label = f"{group}={option} ({target})" if option else str(target)
    return check(schema, section, f"{group}.", label=label)


def declared_schema(group: str, target: str):
    """The ``Config`` schema that the object ``target`` of a :data:`DECLARED` group names (an algorithm
    class, a model class, a partitioner; any class that names one, such as a task); a ConfigError, naming
    the shipped options' targets, when the object cannot be imported or declares none."""
    try:
        return declared(target)[1]
    except LookupError:
        known = ", ".join(sorted(component_targets().get(group, ())))
        return ConfigError(f"{group}._target_: cannot import {target!r}; known: {known} (the options in "
                           f"conf/{group}/)")
    except TypeError:
        base = {"ddm": "gnnddm.ddm.base.AlgorithmConfig", "model": "gnnddm.models.common.ModelConfig",
                "partition": "gnnddm.schema.partition.PartitionConfig"}.get(group)
        return ConfigError(f"{group}._target_: {target!r} declares no config schema (a Config dataclass whose "
                           f"_target_ is the class{f'; see {base}' if base else ''})")


# ------------------------------------------------------------------------------ configs read from files
#: Hydra's instantiation keys; gnnddm's configurations use ``_target_`` and ``_partial_`` only
HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
#: the local solver that gnnddm adds to the optimizer classes of ``torch.optim`` (gnnddm.ddm.solvers)
GNNDDM_SOLVERS = ("gnnddm.ddm.solvers.BoxAdagrad",)


def validate_file(cfg: DictConfig | Mapping, source) -> dict:
    """Check a configuration read from a file, ``source``, before anything is built from it; the resolved
    configuration as plain containers.

    Building a section calls its ``_target_``, so a file that names any callable would run it
    (``builtins.open`` truncating a file, ``torch.load`` of a pickle). A file's configuration may therefore
    name only gnnddm's components (:func:`component_targets`), and then it must pass :func:`validate`. The
    check runs on the resolved values, as Hydra builds them, and covers every ``_target_`` at any depth,
    lists included. The first problem is raised as a one-line :class:`ConfigError` that names ``source``
    and the key, e.g. ``model.pt: data._target_ 'torch.load' is not a gnnddm component; valid: ...``.
    """
    try:
        tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {getattr(exc, 'full_key', '') or 'config'}: cannot be resolved "
                          f"({exc.msg})") from None
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: the stored configuration is not a mapping of keys, got {type(tree).__name__}")
    allowed = component_targets()
    for key, path, value in _walk(tree, "", ()):
        name = path[-1]
        # the section the key sits in; a key that is not a plain name (a number, one with a dot) holds none
        plain = all(isinstance(part, str) and "." not in part for part in path)
        where = ".".join(path[:-1]) if plain else None
        if isinstance(value, str) and "${" in value:
            # a resolved configuration holds plain values; an escaped interpolation would resolve again later
            raise ConfigError(f"{source}: {key}: {value!r} is an interpolation in a resolved configuration")
        if name not in HYDRA_KEYS or name == "_partial_":
            continue
        if name != "_target_":
            raise ConfigError(f"{source}: {key}: not a key of a gnnddm configuration (components are built "
                              "from _target_, _partial_ and keyword arguments)")
        if isinstance(value, str) and value in allowed.get(where, ()):
            continue
        at = key.removesuffix("._target_") if path[:-1] else "the root"
        valid = ", ".join(sorted(allowed[where])) if where in allowed else \
            f"none at {at} (components are built at {', '.join(sorted(allowed))})"
        raise ConfigError(f"{source}: {key} {value!r} is not a gnnddm component; valid: {valid}")
    found = problems(tree)
    if found:
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        raise ConfigError(f"{source}: {found[0]}{more}")
    return tree


@functools.cache
def component_targets() -> dict[str, frozenset[str]]:
    """Where a configuration read from a file may name a ``_target_``, and which ones:
    ``{"model": {"gnnddm.models.sage.GraphSAGE", ...}, "ddm.local_solver": {...}, ...}``.

    The keys and targets are those that the shipped ``conf/`` tree declares: the ``_target_`` of each
    option of a group (``conf/<group>/*.yaml``), the nested ones of its keys (``ddm.local_solver``,
    including keys an option takes from its defaults list, ``/ddm_shared/schwarz@_here_``) and those the
    experiments set. A key that takes an optimizer (one of its declared targets is in ``torch.optim``) takes
    every optimizer class of ``torch.optim``, as the ``optimizer`` schema does, and gnnddm's own solvers
    (:data:`GNNDDM_SOLVERS`).
    """
    import torch
    import yaml

    from gnnddm.config import config_dir

    root = config_dir()
    found: dict[str, set[str]] = {}
    for group in group_names():
        for path in sorted((root / group).glob("*.yaml")):
            option = yaml.safe_load(path.read_text()) or {}
            _declared(option, group, found)
            for entry in option.get("defaults", ()):
                if isinstance(entry, str) and entry.endswith("@_here_"):
                    shared = root / f"{entry.removesuffix('@_here_').strip('/')}.yaml"
                    _declared(yaml.safe_load(shared.read_text()) or {}, group, found)
    for path in sorted((root / "experiment").glob("*.yaml")):  # ``# @package _global_``: keys from the root
        _declared(yaml.safe_load(path.read_text()) or {}, "", found)
    optimizers = {f"torch.optim.{name}" for name, obj in vars(torch.optim).items()
                  if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)
                  and obj is not torch.optim.Optimizer and not name.startswith("_")}
    optimizers.update(GNNDDM_SOLVERS)
    return {key: frozenset(targets | optimizers if any(t.startswith("torch.optim.") for t in targets) else targets)
            for key, targets in found.items()}


def _declared(node, key: str, found: dict[str, set[str]]) -> None:
    """Add the ``_target_`` of every mapping in the YAML ``node`` at ``key`` to ``found[its key]``."""
    if not isinstance(node, Mapping):
        return
    if isinstance(node.get("_target_"), str):
        found.setdefault(key, set()).add(node["_target_"])
    for name, value in node.items():
        if name != "defaults":
            _declared(value, f"{key}.{name}" if key else str(name), found)


def _walk(node, key: str, path: tuple):
    """``(full key, path, value)`` of every entry under ``node``, mappings and lists alike: the key as a
    message names it (``a.b[0].c``) and as the tuple of its parts (``("a", "b", 0, "c")``)."""
    if isinstance(node, Mapping):
        items = ((name, f"{key}.{name}" if key else str(name)) for name in node)
    elif isinstance(node, list | tuple):
        items = ((i, f"{key}[{i}]") for i in range(len(node)))
    else:
        return
    for name, sub in items:
        value = node[name]
        yield sub, (*path, name), value
        yield from _walk(value, sub, (*path, name))
