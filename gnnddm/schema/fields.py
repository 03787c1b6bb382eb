"""The building blocks of a schema: a typed dataclass field with its bounds or choices, and the checker.

A schema is a dataclass whose fields are the keys of one config section; the annotation is the type
(``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[X]``, ``dict[str, X]``, a nested schema) and
the field's metadata holds what else is valid::

    @dataclass
    class TrainerConfig:
        max_iterations: int = field(default=200, metadata=at_least(1))
        device: str = field(default="cpu", metadata=one_of("cpu", "cuda"))

Rules that join several keys go in ``__post_init__``, which raises :class:`Invalid` naming the key
relative to the section; it runs only once every field has the right type. :func:`check` turns every
problem into a :class:`~gnnddm.errors.ConfigError` whose message names the full key, the bad value and
what is valid.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Union

from gnnddm.errors import ConfigError

#: OmegaConf's mark of a value that must be given (``path: ???``); also the default of a required field
REQUIRED = "???"


class Invalid(ValueError):
    """Raised by a schema's ``__post_init__``: ``key`` (relative to the section) and what is wrong with it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


#: every schema of a group's option, in the order the classes were defined (see :meth:`Component.__init_subclass__`)
_REGISTRY: list[type] = []
#: the groups whose options declare their schema on the object their ``_target_`` names (``Config``): an
#: algorithm class, a model class, a partitioner; so that each is its module and its YAML file, with no
#: schema module to extend. Their schemas are found from the target, not registered.
DECLARED = ("ddm", "model", "partition")


@dataclasses.dataclass
class Component:
    """Base of the schema of one option of a config group: the ``_target_`` it builds and ``_partial_``.

    A schema matches the sections whose ``_target_`` equals its own default ``_target_``, or, when it sets
    :attr:`target_prefix`, any target that starts with that prefix. :attr:`open` schemas also accept keys
    they do not list (passed on to a component that checks them itself, e.g. any ``torch.optim`` class).

    Defining a subclass registers it: a class that names its own ``_target_`` (not ``???``) is a schema of
    the group :attr:`group`, which :func:`schemas` lists and :data:`gnnddm.schema.GROUPS` maps. A class
    without one (``DataConfig``, ``GraphConfig``: the keys its subclasses share) is a base, not an option.
    """

    _target_: str = REQUIRED
    _partial_: bool = True

    target_prefix: ClassVar[str | None] = None
    open: ClassVar[bool] = False
    #: the config group whose options the schema describes; by default the name of its module in this
    #: package (``gnnddm.schema.graph`` -> ``"graph"``). A schema elsewhere names no group and is not
    #: registered: an algorithm's ``Config`` (the ``ddm`` group) is found from its class instead.
    group: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        package, _, module = cls.__module__.rpartition(".")
        if cls.group is None and package == __name__.rpartition(".")[0]:
            cls.group = module
        target = cls.__dict__.get("_target_", REQUIRED)
        target = getattr(target, "default", target)  # a dataclasses.field(default=...)
        if cls.group is not None and cls.group not in DECLARED and target != REQUIRED:
            _REGISTRY.append(cls)

    @classmethod
    def matches(cls, target: str) -> bool:
        if cls.target_prefix is not None:
            return target.startswith(cls.target_prefix)
        return target == cls.__dataclass_fields__["_target_"].default


def declared(target: str) -> tuple[object, type]:
    """``(object, schema)``: what the dotted ``target`` names (a class, a partitioner) and the ``Config`` it
    declares. Raises LookupError when ``target`` cannot be imported, TypeError when it declares no schema
    whose ``_target_`` matches it. The callers word the error for their key (config checking, building)."""
    import importlib

    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise LookupError(target) from None
    schema = getattr(found, "Config", None)
    if not isinstance(schema, type) or not hasattr(schema, "matches") or not schema.matches(target):
        raise TypeError(target)
    return found, schema


def schemas(group: str) -> tuple[type, ...]:
    """The registered schemas of ``group``, in the order a ``_target_`` is matched (the first match wins):
    those of one target in the order they were defined, then those of a :attr:`~Component.target_prefix`,
    the longest prefix first (``torch.optim.Adam`` finds ``AdamConfig`` before the schema of any
    ``torch.optim`` class)."""
    found = [s for s in _REGISTRY if s.group == group]
    return tuple(sorted(found, key=lambda s: (s.target_prefix is not None, -len(s.target_prefix or ""))))


def registered_groups() -> tuple[str, ...]:
    """The groups with a registered schema, in the order their first schema was defined."""
    return tuple(dict.fromkeys(s.group for s in _REGISTRY))


# ----------------------------------------------------------------------------------------- metadata
def at_least(low, what: str = "") -> dict:
    """``value >= low``; ``what`` names the quantity in the message (``"a learning rate "``)."""
    return {"min": low, "what": what}


def above(low, what: str = "") -> dict:
    """``value > low``."""
    return {"gt": low, "what": what}


def between(low, high, *, low_open: bool = False, high_open: bool = False, what: str = "") -> dict:
    """``low <= value <= high`` (either end open)."""
    return {"between": (low, high, low_open, high_open), "what": what}


def one_of(*choices, noun: str = "value") -> dict:
    """``value in choices``; ``noun`` names a choice in the message (``unknown kernel 'cubic'``)."""
    return {"choices": choices, "noun": noun}


def redefault(schema: type, key: str, default) -> dataclasses.Field:
    """A field for a subclass of ``schema`` that gives ``key`` another default and keeps its bounds: one
    definition of what the key accepts, whichever schema's default applies."""
    return dataclasses.field(default=default, metadata=schema.__dataclass_fields__[key].metadata)


# ------------------------------------------------------------------------------------------ checking
def check(schema: type, values: Mapping, prefix: str, label: str | None = None) -> list[ConfigError]:
    """Every problem of the section ``values`` against ``schema``, each a ConfigError naming its full key.

    ``prefix`` is the section's key with a trailing dot (``"model."``; ``""`` for the root); ``label``
    names the section in the message of an unknown key (default: the schema's ``_target_``).
    """
    return _check(schema, values, prefix, label)[0]


def parse(schema: type, values: Mapping, prefix: str = ""):
    """The schema instance of a section whose problems were checked (:func:`check`): its values, the
    schema's defaults for the rest, nested sections as their schema's instances. Raises the first problem
    as a ConfigError."""
    found, instance = _check(schema, values, prefix)
    if found:
        raise found[0]
    return instance


def _check(schema: type, values, prefix: str, label: str | None = None,
           given_only: bool = False) -> tuple[list[ConfigError], object]:
    """``(problems, the schema instance)``; the instance (``None`` with problems) runs ``__post_init__``.

    ``given_only``: a key absent from ``values`` takes its default without being required (the arguments
    of a Python call, which need not name every key, such as the path of a loader).
    """
    if not isinstance(values, Mapping):
        return [ConfigError(f"{prefix.rstrip('.')}: expected {describe(schema)}, got {values!r}")], None
    fields = spec(schema)
    found: list[ConfigError] = []
    if hasattr(schema, "extra_problems"):  # a schema whose further keys depend on its target
        found += schema.extra_problems(values, prefix)
    elif not getattr(schema, "open", False):
        for key in values:
            if key not in fields:
                valid = ", ".join(k for k in fields if not k.startswith("_"))
                of = label or _default_target(schema) or prefix.rstrip(".") or "the configuration"
                found.append(ConfigError(f"{prefix}{key}: not a key of {of}; valid: {valid}"))
    given = {}
    for name, (hint, meta, default) in fields.items():
        if given_only and name not in values:
            continue
        value = values.get(name, default)
        key = f"{prefix}{name}"
        if isinstance(value, str) and value == REQUIRED:
            found.append(ConfigError(f"{key}: required, but not given; set it, e.g. on the command line {key}=..."))
        elif dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            nested, given[name] = _check(hint, value, f"{key}.")
            found += nested
        elif problem := _type_problem(hint, value) or _bound_problem(hint, meta, value):
            found.append(ConfigError(f"{key}: {problem}"))
        else:
            given[name] = value
    if found:
        return found, None
    try:
        return [], schema(**given)
    except Invalid as exc:
        key = f"{prefix}{exc.key}" if exc.key else prefix.rstrip(".")
        return [ConfigError(f"{key}: {exc.message}")], None


def check_args(schema: type, section: str, **values):
    """Check a component's own arguments against its schema (a Python caller's values); raise the first
    problem as the ConfigError naming ``<section>.<key>``. Returns the schema instance: the values given,
    the schema's defaults for the rest (nested sections as their schema's instances)."""
    found, instance = _check(schema, values, f"{section}.", given_only=True)
    if found:
        raise found[0]
    return instance


def configured(schema: type, section: str, config=None, options: Mapping | None = None):
    """The validated config object a component works from: ``config`` itself (an instance of ``schema``,
    as :func:`gnnddm.config.build_component` passes it), or ``schema`` parsed from a Python caller's keyword
    ``options`` (:func:`check_args`: the same checks and messages as the command line, the schema's defaults
    for the keys not given). A component therefore writes no default of its own: its schema is the one
    place its keys, types and defaults live."""
    options = dict(options or {})
    if config is None:
        return check_args(schema, section, **options)
    if options:
        raise TypeError(f"{section}: give either a config object or keyword options, not both "
                        f"(got config and {', '.join(options)})")
    if not isinstance(config, schema):
        raise TypeError(f"{section}: expected a {schema.__name__}, got {type(config).__name__}")
    return config


def describe(hint) -> str:
    """``int | None`` -> ``"an integer or null"``."""
    if hint is Any:
        return "any value"
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if dataclasses.is_dataclass(hint):
        return "a mapping of " + ", ".join(f.name for f in dataclasses.fields(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping to {_plural(args[1])}" if args else "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plural(hint) -> str:
    """``str | None`` -> ``"strings or nulls"``."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_plural(a) for a in typing.get_args(hint))
    text = describe(hint)
    return {"an integer": "integers", "a number": "numbers", "a string": "strings", "true or false": "booleans",
            "any value": "values", "null": "nulls"}.get(text, text)


def _type_problem(hint, value) -> str | None:
    return None if _is_instance(hint, value) else f"expected {describe(hint)}, got {value!r}"


def _is_instance(hint, value) -> bool:
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_is_instance(a, value) for a in args)
    if origin is list:  # a list, a tuple from a Python caller, a ListConfig
        is_list = isinstance(value, Sequence) and not isinstance(value, str)
        return is_list and (not args or all(_is_instance(args[0], v) for v in value))
    if origin is dict:
        return isinstance(value, Mapping) and all(
            _is_instance(args[0], k) and _is_instance(args[1], v) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping | hint)
    return isinstance(value, hint)


def _bound_problem(hint, meta: Mapping, value) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):  # a mapping's bounds hold for each of its values
        for name, item in value.items():
            if problem := _bound_problem(None, meta, item):
                return f"{name}: {problem}"
        return None
    what = meta.get("what", "")
    if "choices" in meta:
        if value in meta["choices"] and not isinstance(value, bool):
            return None
        valid = [*(["null"] if _allows_none(hint) else []), *(str(c) for c in meta["choices"])]
        return f"unknown {meta['noun']} {value!r}; valid: {', '.join(valid)}"
    if "min" in meta and value < meta["min"]:
        return f"{what}must be >= {meta['min']:g}, got {value}"
    if "gt" in meta and not value > meta["gt"]:
        return f"{what}must be > {meta['gt']:g}, got {value}"
    if "between" in meta:
        low, high, low_open, high_open = meta["between"]
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            return f"{what}must be in {interval}, got {value}"
    return None


def _allows_none(hint) -> bool:
    return hint is type(None) or type(None) in typing.get_args(hint)


def _default_target(schema: type) -> str | None:
    f = schema.__dataclass_fields__.get("_target_")
    return None if f is None or f.default == REQUIRED else f.default


@functools.cache
def spec(schema: type) -> dict[str, tuple[Any, Mapping, Any]]:
    """``{key: (type, metadata, default)}`` of a schema, in field order."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        out[f.name] = (hints[f.name], f.metadata, default)
    return out
