"""The ``model`` group: one schema per architecture of :mod:`gnnddm.models`.

The constructors check their keyword arguments against the same schemas; ``in_channels``,
``out_channels`` and ``edge_dim`` come from the data at run time and are no config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, Invalid, at_least, one_of

AGGREGATIONS = ("mean", "sum")  # the neighbour aggregations of GraphSAGE (gnnddm.models.common.adjacency)


@dataclass
class ModelConfig(Component):
    """Keys of every model: width and depth (the message-passing layers L that set the exact overlap)."""

    hidden: int = field(default=64, metadata=at_least(1))
    layers: int = field(default=3, metadata=at_least(1))


@dataclass
class GraphSAGEConfig(ModelConfig):
    _target_: str = "gnnddm.models.sage.GraphSAGE"
    aggr: str = field(default="mean", metadata=one_of(*AGGREGATIONS, noun="aggregation"))
    residual: bool = False


@dataclass
class GCNConfig(ModelConfig):
    _target_: str = "gnnddm.models.gcn.GCN"
    use_edge_weight: bool = False


@dataclass
class GATv2Config(ModelConfig):
    _target_: str = "gnnddm.models.gatv2.GATv2"
    heads: int = field(default=4, metadata=at_least(1))
    negative_slope: float = field(default=0.2, metadata=at_least(0.0))

    def __post_init__(self):
        if self.hidden % self.heads:
            raise Invalid("hidden", f"must be divisible by model.heads={self.heads}, got {self.hidden}")


@dataclass
class InteractionNetworkConfig(ModelConfig):
    _target_: str = "gnnddm.models.interaction.InteractionNetwork"
    mlp_layers: int = field(default=2, metadata=at_least(1))


@dataclass
class EncodeProcessDecodeConfig(Component):
    """GraphCast's encoder-processor-decoder (``graph=icosahedral``). Not a :class:`ModelConfig`: its depth
    is ``processor_layers``, the mesh layers, and it has ``processor_layers + 2`` message-passing layers
    (the encoder and decoder pass messages too), so a ``layers`` key would be misread as either."""

    _target_: str = "gnnddm.models.encode_process_decode.EncodeProcessDecode"
    hidden: int = field(default=64, metadata=at_least(1))
    processor_layers: int = field(default=4, metadata=at_least(1))
    mlp_layers: int = field(default=2, metadata=at_least(1))
    recompute: bool = False
