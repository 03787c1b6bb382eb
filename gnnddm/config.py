"""Locating and composing the Hydra config tree.

The tree is the top-level ``conf/`` folder of the repository; wheels ship it as the package
``gnnddm.conf`` (see ``pyproject.toml``), so the same lookup works from a source checkout, an editable
install and a regular install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gnnddm.errors import ConfigError


def config_dir() -> Path:
    """Absolute path of the config tree: the one beside the code that runs.

    First the tree next to this package (``gnnddm/conf`` in an installed wheel, ``conf/`` of the checkout
    the package was imported from), then the package ``gnnddm.conf`` wherever the import system finds it.
    In that order, code imported from another checkout (``PYTHONPATH=/path/to/worktree``) reads that
    checkout's defaults, not those of the checkout an editable install points at."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    spec = importlib.util.find_spec("gnnddm.conf")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if (Path(loc) / "config.yaml").is_file():
                return Path(loc).resolve()
    raise ConfigError("cannot find the gnnddm config tree (conf/config.yaml); reinstall gnnddm")


def options(group: str) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml`` (registration is a YAML file)."""
    folder = config_dir() / group
    if not folder.is_dir():
        raise ConfigError(f"{group}: no such config group in {config_dir()}")
    return sorted(p.stem for p in folder.glob("*.yaml"))


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the config as the command line would, without running anything (for tests and scripts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []), return_hydra_config=False)
    return cfg


def select(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default)


def build(section, group: str, *args, partial: bool = False, **kwargs):
    """``hydra.utils.instantiate(section, *args, **kwargs)``: the one way a config section becomes an object.

    ``partial``: a factory (``functools.partial``) whatever the section says, without its ``name`` key (the
    label of the option, not an argument). Hydra wraps exceptions raised by a ``_target_`` in
    ``InstantiationException``; a :class:`~gnnddm.errors.GnnddmError` from the component is re-raised as
    itself so the user sees its message, and any other failure becomes a :class:`ConfigError` naming the
    key (a nested node's own ``_target_``, e.g. ``ddm.local_solver._target_``).
    """
    import re

    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from gnnddm.errors import GnnddmError

    if partial:
        section = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
        section.pop("name", None)
        section["_partial_"] = True
    if section.get("_target_") is None:
        raise ConfigError(f"{group}._target_: missing; each {group} option names its class in _target_")
    try:
        return instantiate(section, *args, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, GnnddmError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        nested = re.search(r"full_key: (\S+)", str(exc))  # Hydra names a nested node "full_key: local_solver"
        key = f"{group}.{nested.group(1)}._target_" if nested else f"{group}._target_"
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{key}: cannot build {section.get('_target_')!r}: {first}") from None


def _tree(section) -> dict:
    """A config section as plain, resolved containers."""
    return OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)


def section_config(section, group: str):
    """``(class, config)`` of the section of a group whose class declares its schema in ``Config`` (an
    algorithm, a model, a task): the ``_target_`` class and the section parsed into that schema (the
    validated object the class receives; :func:`gnnddm.schema.fields.parse`). Raises a ConfigError naming
    the key of the first problem."""
    from gnnddm.schema.fields import declared, parse

    tree = _tree(section)
    target = tree.get("_target_")
    if target is None:
        raise ConfigError(f"{group}._target_: missing; each {group} option names its class in _target_")
    try:
        cls, schema = declared(str(target))
    except LookupError:
        raise ConfigError(f"{group}._target_: cannot import {target!r}; choose one of the options in "
                          f"conf/{group}/") from None
    except TypeError:
        raise ConfigError(f"{group}._target_: {target!r} declares no config schema (a Config dataclass whose "
                          "_target_ is the class)") from None
    return cls, parse(schema, tree, f"{group}.")


def build_component(section, group: str, *args, **runtime):
    """``cls(*args, config=<its validated section>, **nodes, **runtime)``: the component of a section whose
    class declares its schema (:func:`section_config`). The section's nested ``_target_`` nodes (an
    algorithm's ``local_solver``) are built as factories (:func:`build`, ``partial``) and passed by their key:
    the schema holds their keys for checking, the class receives what they build. ``runtime`` are the
    arguments that come from the data or the run (``in_channels``, ``comm``), not from the config."""
    tree = _tree(section)
    cls, config = section_config(tree, group)
    nodes = {key: build(value, f"{group}.{key}", partial=True) for key, value in tree.items()
             if isinstance(value, dict) and "_target_" in value}
    return cls(*args, config=config, **nodes, **runtime)
