"""One schema for the whole config: dataclasses that say every key, its type, default and valid values.

``validate(cfg)`` checks a composed config before any work starts (``gnnddm train``, ``gnnddm partition``,
``gnnddm config validate``): unknown keys, wrong types, values out of range, unknown choices. Each
problem is a :class:`~gnnddm.errors.ConfigError` whose message names the full key (``trainer.max_iterations``),
the bad value and what is valid; :func:`problems` lists them all.

Layout: :mod:`~gnnddm.schema.fields` holds the machinery (typed fields with bounds or choices, the
checker), :mod:`~gnnddm.schema.root` the top-level keys and the ``trainer``, ``accounting``, ``tracking``
and ``distributed`` sections, and one module per config group (:mod:`~gnnddm.schema.data`,
:mod:`~gnnddm.schema.graph`, :mod:`~gnnddm.schema.partition`, :mod:`~gnnddm.schema.model`,
:mod:`~gnnddm.schema.task`, :mod:`~gnnddm.schema.optimizer`) the schema of each option, a subclass of
:class:`~gnnddm.schema.fields.Component` whose ``_target_`` default names the component it describes.
:data:`~gnnddm.schema.validate.GROUPS` is the one table from a group to its schemas; a section's schema
is the first whose ``_target_`` matches (exactly, or by ``target_prefix``).

The components check their own arguments against the same schemas, so that a Python caller gets the
same errors as the command line: ``check_args(GraphSAGEConfig, "model", hidden=hidden, ...)``. What
depends on the data (``graph.k`` below the number of nodes, ``partition.num_parts`` at most the nodes,
variable names) stays in the component. The schemas import nothing of the components (no torch, no
xarray), so validating is cheap; where a lower layer keeps its own list of names (``KERNELS`` and
``WEIGHTINGS`` of :mod:`gnnddm.graph.weights`, the grid stencils, the synthetic variables),
``tests/test_schema.py`` compares the schema's copy with it.

The ``ddm`` group is the exception that keeps an algorithm in one module: each algorithm class names
its schema in ``Config`` (a :class:`~gnnddm.schema.fields.Component` subclass, with the shared keys in
:mod:`gnnddm.ddm.base`: ``AlgorithmConfig``, ``TrustRegionConfig``, ``SolverConfig``), found from the
section's ``_target_`` class. Adding an algorithm touches its module, its YAML and its tests only.
"""

from gnnddm.schema.fields import Invalid, check, check_args, spec
from gnnddm.schema.validate import GROUPS, group_choices, problems, schema_of, validate

__all__ = ["GROUPS", "Invalid", "check", "check_args", "group_choices", "problems", "schema_of", "spec", "validate"]
