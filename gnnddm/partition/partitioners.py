"""From a graph-carrying :class:`WeatherGraphData` and the ``partition`` config section to a Partition.

Every partitioner is a function with one signature, in a module of its own name (``gnnddm/partition/<name>.py``),

    <name>(edge_index, num_nodes, num_parts, edge_weight=None, node_weight=None, lat=None, lon=None,
           *, seed=0, **options) -> parts int64 [N]

that ignores what it does not need, and the same module lifts it to data: ``partition = Partitioner(<name>)``.
Its config option ``conf/partition/<name>.yaml`` names that object::

    # conf/partition/metis.yaml
    _target_: gnnddm.partition.metis.partition
    _partial_: true
    name: metis
    num_parts: 4
    overlap: 1
    seed: 0
    imbalance: 1.03
    ...

``make = hydra.utils.instantiate(cfg.partition)`` is then that partitioner with these values bound, and
``make(data) -> Partition`` partitions ``data.edge_index`` with its own ``num_parts``, ``overlap`` and
``seed``; a key not given takes the default of the partitioner's schema (``Partitioner.Config``).
Keys other than :data:`CALL_KEYS` are options of the partitioner; an option it does not know is a
:class:`ConfigError`. Adding a partitioner: its module (with a schema of its own, passed to
``Partitioner``, when its defaults differ from the shared ones), its YAML, its tests.
:func:`get_partitioner` finds a partitioner by its name (the coarse levels' ``coarse_method``), among the
options of the ``partition`` config group.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import numpy as np

from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.partition.subdomain import Partition
from gnnddm.schema.partition import NODE_WEIGHTS

#: the keys of :meth:`Partitioner.__call__`: the ``partition`` section's keys other than the partitioner's options
CALL_KEYS = ("num_parts", "overlap", "seed", "node_weights", "plot_cut_edges", "name")


def names() -> list[str]:
    """The partitioners: the options of the ``partition`` config group."""
    from gnnddm.config import options

    return options("partition")


def get_partitioner(method: str):
    """The partitioner function called ``method``; a ConfigError listing the valid names otherwise."""
    valid = names()
    if method not in valid:
        raise ConfigError(f"partition.method: unknown partitioner {method!r}; valid: {', '.join(valid)}")
    return getattr(importlib.import_module(f"gnnddm.partition.{method}"), method)


def node_weights_of(data, node_weights: str | None) -> np.ndarray | None:
    """Per-node work for balancing: None (all equal) or ``valid_count`` (valid entries of ``data.mask``)."""
    if node_weights is not None and node_weights not in NODE_WEIGHTS:
        raise ConfigError(f"partition.node_weights: expected null or "
                          f"{' or '.join(repr(w) for w in NODE_WEIGHTS)}, got {node_weights!r}")
    if node_weights == "valid_count":
        from gnnddm.data.normalise import time_chunks

        total = np.zeros(data.num_nodes, dtype=np.float64)
        for c in time_chunks(data.num_times, data.num_nodes, data.num_vars):  # lazily read data: block by block
            total += data.mask[c].sum(axis=(0, 2))
        return total
    return None


def check_sizes(num_parts, overlap, num_nodes: int) -> None:
    """ConfigErrors for a part count outside 1 .. N or a negative overlap."""
    if isinstance(num_parts, bool) or not isinstance(num_parts, int | np.integer):
        raise ConfigError(f"partition.num_parts: expected an integer, got {num_parts!r}")
    if not 1 <= num_parts <= num_nodes:
        raise ConfigError(f"partition.num_parts: must be between 1 and the number of nodes ({num_nodes}), "
                          f"got {num_parts}")
    if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise ConfigError(f"partition.overlap: expected an integer >= 0 (hops), got {overlap!r}")


class Partitioner:
    """A partitioning function lifted to graph-carrying data: ``partitioner(data, ...) -> Partition``.

    Parameters
    ----------
    fn : callable
        ``fn(edge_index, num_nodes, num_parts, edge_weight, node_weight, lat, lon, *, seed, **options)``;
        its keyword-only arguments are the options a config may set. A function that also takes
        ``edge_attr`` and ``edge_attr_names`` (before the ``*``) receives the graph's edge features.
    config : type, optional
        The schema of its config option (:attr:`Config`, which the config check finds from the option's
        ``_target_``): a subclass of :class:`~gnnddm.schema.partition.PartitionConfig` defined in the
        partitioner's module when its defaults differ from the shared ones; that class otherwise.
    """

    def __init__(self, fn, config: type | None = None):
        from gnnddm.schema.partition import PartitionConfig

        self.fn = fn
        #: the schema of its config option: ``config``, or the keys every partitioner shares
        self.Config = config or PartitionConfig
        self.name = fn.__name__
        params = inspect.signature(fn).parameters
        self.options = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        # a partitioner of typed graphs (gnnddm.partition.mesh) reads the edge features too
        attr = params.get("edge_attr")
        self.reads_edge_attr = attr is not None and attr.kind is not attr.KEYWORD_ONLY

    @functools.cached_property
    def defaults(self) -> dict:
        """The default of each key of :meth:`__call__` (:data:`CALL_KEYS`): its schema's (:attr:`Config`,
        e.g. ``overlap`` 6 for ``mesh``), so that a Python call and a config agree on a key neither gives."""
        from gnnddm.schema.fields import spec

        fields = spec(self.Config)
        return {key: fields[key][2] for key in CALL_KEYS}

    def __call__(self, data, **keys) -> Partition:
        """Partition the graph of ``data`` and build its subdomains with ``overlap``-hop halos.

        The keys are those of the ``partition`` config section; one not given takes the default of the
        partitioner's schema (:attr:`defaults`; ``num_parts`` 4, ``overlap`` 1, ``seed`` 0, ...).

        Parameters
        ----------
        data : WeatherGraphData
            Must carry a graph (``edge_index``, ``edge_weight``); ``lat``/``lon`` feed the geometric method.
        num_parts : int
            p, 1 <= p <= N.
        overlap : int
            delta >= 0 hops; choose delta >= number of message-passing layers for exact local problems.
        seed : int
            Seed of the partitioner (METIS, random).
        node_weights : {None, "valid_count"}
            Balance the parts by node count or by number of valid observations (station data with gaps).
        plot_cut_edges : bool
            Read by ``gnnddm partition`` only (draw the cut edges on the map).
        name : str, optional
            The option's label (the config's ``name``); the partition is labelled with this partitioner's.
        **options
            Options of the partitioner (e.g. ``imbalance``, ``weight_scale`` for METIS).
        """
        options = {k: v for k, v in keys.items() if k not in CALL_KEYS}
        given = {**self.defaults, **{k: v for k, v in keys.items() if k in CALL_KEYS}}
        num_parts, overlap, seed, node_weights = (given[k] for k in ("num_parts", "overlap", "seed", "node_weights"))
        if getattr(data, "edge_index", None) is None:
            raise ConfigError("graph: the data carries no graph to partition; select a graph builder (graph=...)")
        n = data.num_nodes
        check_sizes(num_parts, overlap, n)
        for key in options:
            if key not in self.options:
                raise ConfigError(
                    f"partition.{key}: not an option of the {self.name} partitioner; "
                    f"its options are: {', '.join(['seed', *[k for k in self.options if k != 'seed']])}"
                )
        if self.reads_edge_attr:
            options = {**options, "edge_attr": data.edge_attr, "edge_attr_names": data.edge_attr_names}
        parts = self.fn(data.edge_index, n, int(num_parts), edge_weight=data.edge_weight,
                        node_weight=node_weights_of(data, node_weights), lat=data.lat, lon=data.lon,
                        seed=int(seed), **options)
        return build_partition(data.edge_index, n, parts, int(overlap), edge_weight=data.edge_weight,
                               method=self.name, num_parts=int(num_parts))

    def __repr__(self) -> str:
        return f"Partitioner({self.name})"


def partition_graph(data, method: str = "metis", **kwargs) -> Partition:
    """``Partitioner(get_partitioner(method))(data, **kwargs)``: partition ``data`` with the partitioner
    named ``method`` (see :meth:`Partitioner.__call__` for the keys)."""
    return Partitioner(get_partitioner(method))(data, **kwargs)
