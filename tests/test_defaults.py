"""Each key is defined once (STYLE.md 18): a key's default in its schema, the value an option file gives it
and the default of the component's parameter of that name agree.

Nothing is listed by hand. The schemas are those the groups register (:data:`gnnddm.schema.GROUPS`), the
``Config`` of every algorithm and model a ``conf/ddm/*.yaml`` or ``conf/model/*.yaml`` names, and the root
config's sections (:class:`~gnnddm.schema.root.RootConfig`); the option files are every
``conf/<group>/*.yaml``, with the keys its defaults list pulls in (``/ddm_shared/schwarz@_here_``, or another
option of the group), and ``conf/config.yaml``. Three checks:

* an option file gives a key a value other than the default of its schema (nested sections such as
  ``local_solver`` key by key); keys the schema marks required (``???``) aside;
* a component's function (a loader, a graph builder, a partitioner) gives a key of its schema a default
  other than the schema's, or a default to a key the schema marks required;
* a class that names its schema in ``Config`` (an algorithm, a model, a task) does not take its validated
  section as ``config`` (and the keys as ``**options``), or names a key of its schema in a constructor.

An option file's value is its own, not a copy of a default, in two cases only, both read from the files:
the option is one of several *presets* of one component (``graph=grid4`` and ``graph=grid8`` both build
``grid_graph``) and the key is one they set differently, the schema's default being one preset's value; or
the option is one *dataset* (it fills a key its schema requires, ``data.path``) and the key is one its
schema leaves null, to be read from the data (``variables``, ``units``, ``stations_path``). Options that
differ otherwise have a schema of their own (an algorithm's ``Config`` subclass,
``gnnddm.partition.metis.MetisPartitionConfig``).

Numbers compare as numbers (``10`` equals ``10.0``; ``inf`` is not ``10.0``), lists and tuples alike.
A message names the file or the component, the key and both values.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from gnnddm.config import config_dir
from gnnddm.schema import GROUPS, schema_of
from gnnddm.schema.fields import REQUIRED, spec
from gnnddm.schema.root import RootConfig
from gnnddm.schema.validate import DECLARED, group_names

CONF = config_dir()
#: keys of an option that choose or label its schema rather than set a value of it
NOT_VALUES = ("_target_", "_partial_", "name", "defaults")


# ---------------------------------------------------------------------------------------- comparison
def same(a, b) -> bool:
    """Equality of config values: numbers as numbers (bools apart), lists and tuples alike, mappings key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b or (math.isnan(a) and math.isnan(b))
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _is_list(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_required(default) -> bool:
    return isinstance(default, str) and default == REQUIRED


def _section_schema(hint) -> type | None:
    """The schema of a nested section (``local_solver: SolverConfig``), or None for a plain value."""
    if dataclasses.is_dataclass(hint):
        return hint
    nested = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return nested[0] if len(nested) == 1 else None


def _locate(target: str):
    try:
        return get_object(target)
    except Exception:  # noqa: BLE001 - a target that does not import matches nothing
        return None


# ---------------------------------------------------------------------------------------- option files
@dataclasses.dataclass
class Option:
    """One option file with what its defaults list pulls in: ``values``, and ``sources[key]`` the file that
    set each (dotted) key."""

    group: str
    path: Path
    values: dict
    sources: dict[str, str]

    @property
    def target(self) -> str:
        return self.values["_target_"]

    @property
    def schema(self) -> type | None:
        return schema_of(self.group, self.target)  # an algorithm's or a model's: its class's Config


def _load(path: Path) -> dict:
    """A YAML file as Hydra reads it (OmegaConf: ``1.0e6`` is a number, not a string as in PyYAML)."""
    return OmegaConf.to_container(OmegaConf.load(path)) or {}


def _merge(into: dict, sources: dict, node: Mapping, source: str, prefix: str = "") -> None:
    """Deep-merge ``node`` into ``into`` as Hydra does, recording the file each (dotted) key came from."""
    for key, value in node.items():
        if key == "defaults":
            continue
        sources[f"{prefix}{key}"] = source
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            _merge(into[key], sources, value, source, f"{prefix}{key}.")
        else:
            into[key] = _copy(value)
            if isinstance(value, Mapping):  # every key of a new section comes from this file
                _merge({}, sources, value, source, f"{prefix}{key}.")


def _copy(value):
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def compose_option(group: str, path: Path) -> tuple[dict, dict[str, str]]:
    """The keys of ``path`` with those its defaults list pulls in (``/ddm_shared/schwarz@_here_``, or an
    option of the same group such as two_level's ``asm``), and the file each key came from."""
    merged: dict = {}
    sources: dict[str, str] = {}
    own = _load(path)
    entries = list(own.get("defaults", ()))
    if "_self_" not in entries:  # Hydra 1.1+: _self_ comes last unless placed
        entries.append("_self_")
    for entry in entries:
        if entry == "_self_":
            _merge(merged, sources, own, str(path.relative_to(CONF.parent)))
            continue
        assert isinstance(entry, str), f"{path}: a defaults entry this test cannot follow: {entry!r}"
        name = entry.split("@")[0]
        other = CONF / f"{name.strip('/')}.yaml" if name.startswith("/") else CONF / group / f"{name}.yaml"
        assert other.is_file(), f"{path}: defaults entry {entry!r}: no file {other}"
        sub, sub_sources = compose_option(group, other)
        _merge(merged, sources, sub, "")
        sources.update(sub_sources)
    return merged, sources


@functools.cache
def options() -> tuple[Option, ...]:
    """Every option file of every group of the root config."""
    return tuple(Option(group, path, *compose_option(group, path))
                 for group in group_names() for path in sorted((CONF / group).glob("*.yaml")))


def _get(values: Mapping, dotted: str, default):
    for part in dotted.split("."):
        if not isinstance(values, Mapping) or part not in values:
            return default
        values = values[part]
    return values


def yaml_disagreements(schema: type, values: Mapping, prefix: str = "", top: bool = True):
    """``(key, YAML value, schema default, schema)`` of every key of ``values`` whose schema default differs."""
    found = []
    fields = spec(schema)
    for key, value in values.items():
        if (top and key in NOT_VALUES) or key not in fields:  # an unknown key is tests/test_schema.py's
            continue
        hint, _, default = fields[key]
        if _is_required(default):
            continue
        nested = _section_schema(hint)
        if nested is not None and isinstance(value, Mapping):
            found += yaml_disagreements(nested, value, f"{prefix}{key}.", top=False)
        elif not same(value, default):
            found.append((f"{prefix}{key}", value, default, schema))
    return found


def is_own_value(option: Option, key: str, default) -> bool:
    """Whether ``option``'s value of ``key`` (other than the schema's ``default``) is the option's own: a
    preset's distinguishing key, or a dataset's key that the schema leaves to the data (module docstring)."""
    presets = [o for o in options() if o.group == option.group and o.target == option.target]
    if len(presets) > 1:
        given = [_get(o.values, key, default) for o in presets]
        if any(not same(v, given[0]) for v in given) and any(same(v, default) for v in given):
            return True
    fills_required = any(_is_required(d) and k in option.values and not _is_required(option.values[k])
                         for k, (_, _, d) in spec(option.schema).items())
    return fills_required and default is None


def _message(source: str, key: str, value, default, schema: type) -> str:
    return f"{source}: {key}: the YAML gives {value!r}, the schema {schema.__qualname__} defaults to {default!r}"


@pytest.mark.parametrize("option", options(), ids=lambda o: f"{o.group}-{o.path.stem}")
def test_every_option_file_agrees_with_its_schema(option):
    assert option.schema is not None, f"{option.path}: no schema describes {option.target}"
    found = [_message(option.sources.get(key, str(option.path)), key, value, default, schema)
             for key, value, default, schema in yaml_disagreements(option.schema, option.values)
             if not is_own_value(option, key, default)]
    assert not found, "\n".join(found)


def test_the_root_config_agrees_with_its_schema():
    values = _load(CONF / "config.yaml")
    values.pop("hydra", None)
    found = [_message("conf/config.yaml", *d) for d in yaml_disagreements(RootConfig, values)]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------------------------------- constructors
def components() -> list[tuple[type, str]]:
    """``(schema, target)`` of every component that a schema describes: each registered schema's own
    ``_target_`` (where that schema is the one found for it: ``PartitionConfig``'s default target is
    ``MetisPartitionConfig``'s) and each option file's. Only gnnddm's components: a ``torch.optim`` class's
    defaults are torch's (``SGD``'s ``lr`` is 1e-3, the schema's and conf/optimizer/sgd.yaml's 1e-2; the
    YAML gives it, so a configured run takes the schema's)."""
    found: dict[tuple[type, str], None] = {}
    for group, schemas in GROUPS.items():
        for schema in schemas:
            target = spec(schema)["_target_"][2]
            if schema_of(group, target) is schema:
                found[schema, target] = None
    for option in options():
        found[option.schema, option.target] = None
    return [(s, t) for s, t in found if t.startswith("gnnddm.")]


def parameter_defaults(obj) -> dict[str, object]:
    """``{parameter: default}`` of what builds the component ``obj``: a class's ``__init__`` (following a
    ``**kwargs`` that is passed on to the base class's), a function, or a partitioner."""
    from gnnddm.partition.partitioners import Partitioner

    out: dict[str, object] = {}

    def add(signature) -> bool:
        """Add the defaults; True when the callable takes ``**kwargs`` (passed on)."""
        for name, p in signature.parameters.items():
            if p.default is not p.empty:
                out.setdefault(name, p.default)
        return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())

    if isinstance(obj, type):
        for cls in obj.__mro__:
            if "__init__" in vars(cls) and not add(inspect.signature(cls.__init__)):
                break
    elif isinstance(obj, Partitioner):
        # the section's own keys are the call's, whose defaults are the schema's by construction
        # (Partitioner.defaults); the partitioner's options are the function's keyword-only arguments
        add(inspect.signature(obj.__call__))
        add(inspect.signature(obj.fn))
    else:
        # a function's **kwargs (load_synthetic's keywords of the field generator) go to another function
        # with its own signature; those keys are not compared here
        add(inspect.signature(obj))
    return out


def constructor_disagreements(schema: type, defaults: Mapping, where: str) -> list[str]:
    found = []
    for key, (hint, _, default) in spec(schema).items():
        if key not in defaults:
            continue
        given = defaults[key]
        nested = _section_schema(hint)
        if _is_required(default):
            found.append(f"{where}: {key}: the constructor defaults to {given!r}, the schema "
                         f"{schema.__qualname__} requires it")
        elif nested is not None:
            found += section_disagreements(nested, default, given, where, key)
        elif not same(given, default):
            found.append(f"{where}: {key}: the constructor defaults to {given!r}, the schema "
                         f"{schema.__qualname__} to {default!r}")
    return found


def section_disagreements(schema: type, default, given, where: str, key: str) -> list[str]:
    """A nested section's default in a constructor. None stands for a fallback inside the component, which
    no signature shows (``local_solver=None``: :data:`gnnddm.ddm.base.DEFAULT_SOLVER`, compared in a test
    of its own; ``coarse_solver=None``: Adam at the global optimizer's rate, as ``CoarseSolverConfig``; a
    task's ``obs=None``: the schema's instance), so it is not compared. A ``functools.partial`` is compared
    by its callable (against ``_target_``) and keywords; a mapping or a schema instance key by key."""
    if given is None:
        return []
    expected = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else dict(default)
    if isinstance(given, functools.partial):
        target = expected.get("_target_")
        values = {"_target_": target if _locate(str(target)) is given.func else given.func, **given.keywords}
    elif dataclasses.is_dataclass(given):
        values = dataclasses.asdict(given)
    elif isinstance(given, Mapping):
        values = dict(given)
    else:
        return [f"{where}: {key}: the constructor defaults to {given!r}, the schema {schema.__qualname__} "
                "describes a section"]
    return [f"{where}: {key}.{k}: the constructor defaults to {v!r}, the schema {schema.__qualname__} to "
            f"{expected[k]!r}" for k, v in values.items() if k in expected and not same(v, expected[k])]


@pytest.mark.parametrize(("schema", "target"), components(), ids=lambda v: getattr(v, "__qualname__", v))
def test_every_constructor_default_is_the_schemas(schema, target):
    found = constructor_disagreements(schema, parameter_defaults(get_object(target)), target)
    assert not found, "\n".join(found)


def configured_classes() -> list[type]:
    """Every component class that receives its validated section: the ``_target_`` classes of the option
    files that name their schema in ``Config`` (algorithms, models, tasks)."""
    found = {}
    for option in options():
        cls = _locate(option.target)
        if isinstance(cls, type) and isinstance(getattr(cls, "Config", None), type):
            found[cls] = None
    return list(found)


@pytest.mark.parametrize("cls", configured_classes(), ids=lambda c: c.__qualname__)
def test_a_configured_class_receives_its_config_and_writes_no_default_of_its_own(cls):
    """Its constructors (the class's and its bases') take ``config`` (an instance of ``Config``) and the same
    keys as ``**options``, and name no key of the schema, but for the built nodes of nested ``_target_``
    sections (``local_solver``: the factory, default None, built from the config node when not given)."""
    fields = spec(cls.Config)
    nodes = {k for k, (hint, _, _) in fields.items() if _section_schema(hint) is not None
             and "_target_" in spec(_section_schema(hint))}
    for base in cls.__mro__:
        if "__init__" not in vars(base) or not base.__module__.startswith("gnnddm."):
            continue
        params = inspect.signature(base.__init__).parameters
        assert "config" in params and params["config"].kind is params["config"].KEYWORD_ONLY, base
        assert any(p.kind is p.VAR_KEYWORD for p in params.values()), base
        named = {n for n in params if n in fields and n not in ("config",)}
        assert named <= nodes, f"{base.__qualname__}.__init__ names schema keys {sorted(named - nodes)}"
        assert all(params[n].default is None for n in named), base


def test_an_algorithm_without_a_solver_builds_the_config_nodes():
    """``local_solver`` not given: the algorithm's solvers are the config node's class with its ``lr`` (the
    schema's Adam at 1e-3 when the node is not given either)."""
    from gnnddm.ddm.base import SolverConfig
    from gnnddm.ddm.local_avg import LocalAvg
    from gnnddm.testing.algorithms import make_algorithm, seeded_problem

    objective, model, _ = seeded_problem(parts=2)
    config = LocalAvg.Config(local_solver=SolverConfig(_target_="torch.optim.SGD", lr=0.5))
    sgd = make_algorithm(LocalAvg, objective, model, config=config)
    assert {type(s).__name__ for s in sgd.solvers.values()} == {"SGD"}
    assert {s.param_groups[0]["lr"] for s in sgd.solvers.values()} == {0.5}
    plain = make_algorithm(LocalAvg, objective, model)
    assert {(type(s).__name__, s.param_groups[0]["lr"]) for s in plain.solvers.values()} == {("Adam", 1e-3)}
    assert plain.config == LocalAvg.Config() and sgd.config.local_steps == LocalAvg.Config().local_steps


def test_config_and_options_are_exclusive_and_typed():
    from gnnddm.models.gcn import GCN
    from gnnddm.models.sage import GraphSAGE

    with pytest.raises(TypeError, match="not both"):
        GraphSAGE(3, 2, config=GraphSAGE.Config(), hidden=8)
    with pytest.raises(TypeError, match="expected a GraphSAGEConfig, got GCNConfig"):
        GraphSAGE(3, 2, config=GCN.Config())


def test_a_partitioner_takes_its_defaults_from_its_schema():
    from gnnddm.partition.partitioners import CALL_KEYS
    from gnnddm.schema.partition import PartitionConfig

    for option in options():
        if option.group == "partition":
            fields = spec(option.schema)
            assert get_object(option.target).defaults == {k: fields[k][2] for k in CALL_KEYS}
    assert set(CALL_KEYS) < set(spec(PartitionConfig))


# ---------------------------------------------------------------------------------------- the enumeration
def test_the_enumeration_reaches_every_group_schema_and_algorithm():
    """A guard on this test: every group of the root config has option files, every option a schema, and
    every registered schema of a gnnddm component is compared with its constructor."""
    assert {o.group for o in options()} == set(group_names()) == set(GROUPS) | set(DECLARED)
    assert all(o.schema is not None and o.schema.matches(o.target) for o in options())
    compared = {s for s, _ in components()}
    assert compared >= {s for schemas in GROUPS.values() for s in schemas if s.__module__.startswith("gnnddm.")
                        and spec(s)["_target_"][2].startswith("gnnddm.")}
    assert {o.schema for o in options() if o.group in DECLARED} <= compared
    # the classes that receive their config: every algorithm, model and task (a partitioner is a function)
    assert {c.Config for c in configured_classes()} == {o.schema for o in options()
                                                       if o.group in ("ddm", "model", "task")}


# ---------------------------------------------------------------------------------------- the checker
def test_same_is_math_aware():
    assert same(10, 10.0) and same(1e-3, 0.001) and same([0.9, 0.999], (0.9, 0.999)) and same(None, None)
    assert not same(float("inf"), 10.0) and not same(True, 1) and not same(None, 0) and not same(1, 3)
    assert same({"a": 1}, {"a": 1.0}) and not same({"a": 1}, {"a": 1, "b": 2})


def test_a_broken_default_is_named_with_file_key_and_both_values():
    from gnnddm.ddm.base import TrustRegionConfig

    found = [_message("conf/ddm/x.yaml", *d) for d in yaml_disagreements(TrustRegionConfig, {"radius_max": 3.0})]
    assert found == ["conf/ddm/x.yaml: radius_max: the YAML gives 3.0, the schema TrustRegionConfig defaults to 10.0"]
    found = constructor_disagreements(TrustRegionConfig, {"radius_max": float("inf")}, "x.X")
    assert found == ["x.X: radius_max: the constructor defaults to inf, the schema TrustRegionConfig to 10.0"]


# ------------------------------------------------------------------------------------ the root sections
def test_the_root_sections_configure_their_consumers_with_their_defaults():
    """The consumers of the root sections take their defaults from them: the tracker is built from a
    TrackingConfig, the accounting's network model from AccountingConfig's."""
    from gnnddm.distributed.accounting import Accounting
    from gnnddm.schema.root import AccountingConfig, TrackingConfig
    from gnnddm.training.tracking import Tracker, tracker_from_config

    accounting, defaults = Accounting(), AccountingConfig()
    assert (accounting.alpha, accounting.beta) == (defaults.alpha, defaults.beta)
    tracker, config = Tracker(), TrackingConfig()
    assert (tracker.enabled, tracker.uri, tracker.experiment, tracker.timeout, tracker.flush_seconds,
            tracker.required) == (config.enabled, config.uri, config.experiment, config.timeout,
                                  config.flush_seconds, config.required)
    made = tracker_from_config({"experiment": "x"}, run_name="r")
    assert (made.experiment, made.run_name, made.uri) == ("x", "r", config.uri)


def test_the_training_run_casts_no_config_value():
    """The run reads the validated root keys (``validate(cfg)`` returns them typed): no ``int(cfg.x)``."""
    import re

    import gnnddm.training

    cast = re.compile(r"\b(int|float|bool)\(cfg\.")
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted(Path(gnnddm.training.__file__).parent.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if cast.search(line)]
    assert found == []
