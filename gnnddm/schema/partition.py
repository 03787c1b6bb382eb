"""The keys every option of the ``partition`` group shares: the partitioners of :mod:`gnnddm.partition`,
built later with the graph.

Every option targets ``gnnddm.partition.<name>.partition`` (a
:class:`~gnnddm.partition.partitioners.Partitioner`) and takes the keys of :class:`PartitionConfig`, of
which ``imbalance`` and ``weight_scale`` are METIS's own. The partitioner is the module of the ``_target_``.
The group is one whose targets declare their schema (:data:`~gnnddm.schema.fields.DECLARED`): the
:class:`~gnnddm.partition.partitioners.Partitioner` names it in ``Config``, :class:`PartitionConfig` unless
the partitioner's defaults differ from the shared ones, when its module defines a subclass
(``gnnddm.partition.metis.MetisPartitionConfig``) and passes it; the Partitioner takes its defaults from
that schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, Invalid, at_least, one_of

#: the values of ``node_weights`` besides null (read by :func:`gnnddm.partition.partitioners.node_weights_of`)
NODE_WEIGHTS = ("valid_count",)
METIS_ONLY = ("imbalance", "weight_scale")
IMBALANCE = at_least(1.0, "max part size / mean ")


@dataclass
class PartitionConfig(Component):
    _target_: str = "gnnddm.partition.metis.partition"
    num_parts: int = field(default=4, metadata=at_least(1))
    overlap: int = field(default=1, metadata=at_least(0))
    seed: int = field(default=0, metadata=at_least(0))
    name: str | None = None  # the option's label
    node_weights: str | None = field(default=None, metadata=one_of(*NODE_WEIGHTS, noun="node weighting"))
    plot_cut_edges: bool = False  # read by gnnddm partition only
    imbalance: float | None = field(default=None, metadata=IMBALANCE)
    weight_scale: int | None = field(default=None, metadata=at_least(1))

    target_prefix = "gnnddm.partition."

    @property
    def partitioner(self) -> str:
        """``metis`` of ``gnnddm.partition.metis.partition``."""
        parts = self._target_.split(".")
        return parts[-2] if len(parts) >= 2 else self._target_

    @classmethod
    def extra_problems(cls, values, prefix: str) -> list:
        """Keys beyond the fields are options of the partitioner itself: the keyword-only arguments of its
        function (``gnnddm/partition/<name>.py``), so a new partitioner's options need no field here."""
        import dataclasses
        import importlib
        import inspect

        from gnnddm.errors import ConfigError

        fields = [f.name for f in dataclasses.fields(cls)]
        extra = [k for k in values if k not in fields]
        if not extra:
            return []
        name = str(values.get("_target_", "")).split(".")[-2:-1]
        try:
            fn = getattr(importlib.import_module(f"gnnddm.partition.{name[0]}"), name[0])
        except (ImportError, AttributeError, IndexError):
            return []  # the _target_ check names it
        own = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
        valid = ", ".join([k for k in fields if not k.startswith("_")] + [k for k in own if k not in fields])
        return [ConfigError(f"{prefix}{k}: not a key of the {name[0]} partitioner; valid: {valid}")
                for k in extra if k not in own]

    def __post_init__(self):
        from gnnddm.config import options

        valid = options("partition")
        if self.partitioner not in valid or self._target_ != f"gnnddm.partition.{self.partitioner}.partition":
            raise Invalid("_target_", f"{self._target_!r} is no partitioner; valid: "
                          + ", ".join(f"gnnddm.partition.{n}.partition" for n in valid))
        import importlib
        import inspect

        fn = getattr(importlib.import_module(f"gnnddm.partition.{self.partitioner}"), self.partitioner)
        own = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
        for key in METIS_ONLY:
            if getattr(self, key) is not None and key not in own:
                raise Invalid(key, f"not an option of the {self.partitioner} partitioner; the METIS-based ones "
                                   "(metis, mesh) take it")
