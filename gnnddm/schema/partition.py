"""The ``partition`` group: the partitioners of :mod:`gnnddm.partition`, built later with the graph.

One schema serves every option: each is a ``gnnddm.partition.*`` callable taking the same keys, of which
``imbalance`` and ``weight_scale`` are METIS's own. Which partitioner an option uses is its ``method`` key
where it has one, else the name of its ``_target_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, Invalid, at_least, one_of

PARTITIONERS = ("contiguous", "geometric", "metis", "random")  # gnnddm.partition.partitioners.PARTITIONERS
NODE_WEIGHTS = ("valid_count",)
METIS_ONLY = ("imbalance", "weight_scale")


@dataclass
class PartitionConfig(Component):
    _target_: str = "gnnddm.partition.partitioners.partition_graph"
    num_parts: int = field(default=4, metadata=at_least(1))
    overlap: int = field(default=1, metadata=at_least(0))
    seed: int = field(default=0, metadata=at_least(0))
    method: str | None = field(default=None, metadata=one_of(*PARTITIONERS, noun="partitioner"))
    node_weights: str | None = field(default=None, metadata=one_of(*NODE_WEIGHTS, noun="node weighting"))
    plot_cut_edges: bool = False  # read by gnnddm partition only
    imbalance: float | None = field(default=None, metadata=at_least(1.0, "max part size / mean "))
    weight_scale: int | None = field(default=None, metadata=at_least(1))

    target_prefix = "gnnddm.partition."

    @property
    def partitioner(self) -> str:
        return self.method or self._target_.rsplit(".", 1)[-1]

    def __post_init__(self):
        if self.partitioner in PARTITIONERS and self.partitioner != "metis":
            for key in METIS_ONLY:
                if getattr(self, key) is not None:
                    raise Invalid(key, f"not an option of the {self.partitioner} partitioner; only METIS takes it")


PARTITIONS = (PartitionConfig,)
