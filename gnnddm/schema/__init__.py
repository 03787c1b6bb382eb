"""One schema for the whole config: dataclasses that say every key, its type, default and valid values.

``validate(cfg)`` checks a composed config before any work starts (``gnnddm train``, ``gnnddm partition``,
``gnnddm config validate``): unknown keys, wrong types, values out of range, unknown choices. Each
problem is a :class:`~gnnddm.errors.ConfigError` whose message names the full key (``trainer.max_iterations``),
the bad value and what is valid; :func:`problems` lists them all.

Layout: :mod:`~gnnddm.schema.fields` holds the machinery (typed fields with bounds or choices, the
checker), :mod:`~gnnddm.schema.root` the top-level keys and the ``trainer``, ``accounting``, ``tracking``
and ``distributed`` sections, and one module per config group whose schemas live here
(:mod:`~gnnddm.schema.data`, :mod:`~gnnddm.schema.graph`, :mod:`~gnnddm.schema.partition`,
:mod:`~gnnddm.schema.task`, :mod:`~gnnddm.schema.optimizer`) the schema of each option, a subclass of
:class:`~gnnddm.schema.fields.Component` whose ``_target_`` default names the component it describes.
Defining such a class registers it under its group (:attr:`~gnnddm.schema.fields.Component.group`: the
name of its module here, or its base's), so no table lists the schemas: :data:`GROUPS` maps each group to
its registered schemas, computed on use (every module of this package is imported first). A section's
schema is the first whose ``_target_`` matches: those of one target in the order they were defined, then
those matching by ``target_prefix`` (``AdamConfig`` before the schema of any ``torch.optim`` class). An
option whose defaults differ from those of a shared schema has a subclass of its own.

The ``ddm``, ``model`` and ``partition`` groups (:data:`~gnnddm.schema.fields.DECLARED`) keep a component
in one module: each algorithm class, model class and partitioner names its schema in ``Config``, a
:class:`~gnnddm.schema.fields.Component` subclass defined beside it (shared keys in
:mod:`gnnddm.ddm.base`: ``AlgorithmConfig``, ``TrustRegionConfig``, ``SolverConfig``; in
:mod:`gnnddm.models.common`: ``ModelConfig``; in :mod:`gnnddm.schema.partition`: ``PartitionConfig``, the
schema of a partitioner whose defaults are the shared ones), found from the section's ``_target_`` and not
registered. Adding an algorithm, a model or a partitioner touches its module, its YAML and its tests only.
Validating those groups imports the component's module (torch, pymetis); the schemas here import nothing
of the components (no torch, no xarray).

What a component receives: an algorithm, a model or a task (a class that names its ``Config``) receives
its validated section, an instance of that schema (:func:`gnnddm.config.build_component`), or a Python
caller's keyword options parsed by the same schema (:func:`~gnnddm.schema.fields.configured`: the same
errors as the command line, the schema's defaults for the rest); it writes no default of its own. Data
loaders, graph builders and partitioners are functions whose keyword arguments are their keys, checked
on entry (``check_args(GridGraphConfig, "graph", ...)``); ``tests/test_defaults.py`` checks that the
option files and those signatures give every key the schema's default, and that a configured class's
constructor names no key of its schema. What depends on the data (``graph.k`` below the number of nodes,
``partition.num_parts`` at most the nodes, variable names) stays in the component. A list of names that a
schema and a lower layer both need is defined here and imported there (``NODE_WEIGHTS`` by
:mod:`gnnddm.partition.partitioners`, ``BACKENDS`` by :mod:`gnnddm.distributed.world`); where a lower layer
keeps its own list (``KERNELS`` and ``WEIGHTINGS`` of :mod:`gnnddm.graph.weights`, the grid stencils, the
synthetic variables), ``tests/test_schema.py`` compares the schema's copy with it.
"""

from gnnddm.schema.fields import Invalid, check, check_args, spec
from gnnddm.schema.validate import GROUPS, group_choices, problems, schema_of, validate

__all__ = ["GROUPS", "Invalid", "check", "check_args", "group_choices", "problems", "schema_of", "spec", "validate"]
