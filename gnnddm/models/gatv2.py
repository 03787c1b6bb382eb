"""Graph attention network v2 (Brody et al. 2022), batched over samples that share the graph."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATv2Conv

from gnnddm.errors import ConfigError
from gnnddm.models.attention import gatv2_attention
from gnnddm.models.common import ModelConfig, check_edge_dim, run_stages
from gnnddm.models.execution import stage
from gnnddm.models.graph import Graph
from gnnddm.schema.fields import Invalid, at_least, configured


def gatv2_layer(conv: GATv2Conv, h: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Apply ``conv`` (a PyG :class:`GATv2Conv`, used for its weights) to node-major features.

    Update rule, per head (edges include one self-loop per node)::

        e_ij   = a^T LeakyReLU(W_l h_j + W_r h_i + W_e x_ij)
        alpha  = softmax_j(e_ij) over the edges j -> i
        h'_i   = sum_j alpha_ij W_l h_j  (+ residual, + bias; heads concatenated or averaged)

    The attention runs fused over cache-sized chunks of edges
    (:func:`gnnddm.models.attention.gatv2_attention`): no per-edge ``[E, B, heads, C]`` tensor is stored,
    and a training step of the 3-layer model takes 0.38x the time of ``GATv2Conv`` on ``edge_index`` at
    1 deg on 2 cores (``benchmarks/bench_gatv2.py``). Attention dropout (drawn as PyG draws it), shared
    weights, the self loops' mean edge features, concatenated or averaged heads, residual and bias are
    PyG's; other self-loop fill values are refused.

    Parameters
    ----------
    conv : GATv2Conv
    h : float [N, B, F_in]
    graph : Graph

    Returns
    -------
    float [N, B, heads*C] (concat) or [N, B, C]
    """
    n, b, _ = h.shape
    heads, c = conv.heads, conv.out_channels
    w_edge = None if conv.lin_edge is None or graph.edge_attr is None else conv.lin_edge.weight
    if conv.add_self_loops and w_edge is not None and conv.fill_value != "mean":
        raise NotImplementedError(f"GATv2Conv(fill_value={conv.fill_value!r}): only 'mean' is supported")
    x_l = conv.lin_l(h).view(n, b, heads, c)
    x_r = x_l if conv.share_weights else conv.lin_r(h).view(n, b, heads, c)
    out = gatv2_attention(
        x_l, x_r, conv.att[0], graph, self_loops=conv.add_self_loops, w_edge=w_edge,
        negative_slope=conv.negative_slope, dropout=conv.dropout if conv.training else 0.0,
    )
    out = out.reshape(n, b, heads * c) if conv.concat else out.mean(dim=2)
    if conv.res is not None:
        out = out + conv.res(h)
    return out if conv.bias is None else out + conv.bias


@dataclass
class GATv2Config(ModelConfig):
    _target_: str = "gnnddm.models.gatv2.GATv2"
    heads: int = field(default=4, metadata=at_least(1))
    negative_slope: float = field(default=0.2, metadata=at_least(0.0))

    def __post_init__(self):
        if self.hidden % self.heads:
            raise Invalid("hidden", f"must be divisible by model.heads={self.heads}, got {self.hidden}")


class GATv2(nn.Module):
    """A stack of ``layers`` GATv2 layers with ELU in between: in -> hidden -> ... -> hidden -> out.

    Hidden layers have ``heads`` heads of ``hidden // heads`` channels, concatenated; the last layer has
    one head. Edge features (``edge_dim > 0``) enter the attention logits.

    Parameters
    ----------
    in_channels, out_channels : int
    edge_dim : int
        Width of ``graph.edge_attr``; 0 ignores edge features.
    config : GATv2Config, optional
        The validated ``model`` section; or its keys as keyword ``**options`` (the schema's defaults for
        the rest). Its keys:
    hidden : int
        Width of the hidden layers; must be divisible by ``heads``.
    layers : int
        Number of message-passing layers (the receptive field in hops).
    heads : int
    negative_slope : float
        Slope of the LeakyReLU in the attention logits.
    """

    Config = GATv2Config

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int = 0, *, config: GATv2Config | None = None,
                 **options):
        super().__init__()
        c = configured(self.Config, "model", config, options)
        hidden, layers, heads, negative_slope = c.hidden, c.layers, c.heads, c.negative_slope
        check_edge_dim(edge_dim)
        self.in_channels, self.out_channels, self.edge_dim = in_channels, out_channels, edge_dim
        self.num_message_passing_layers = self.num_layers = layers
        kw = dict(negative_slope=negative_slope, edge_dim=edge_dim or None)
        self.convs = nn.ModuleList()
        for k in range(layers):
            d_in = in_channels if k == 0 else hidden
            if k < layers - 1:
                self.convs.append(GATv2Conv(d_in, hidden // heads, heads=heads, **kw))
            else:
                self.convs.append(GATv2Conv(d_in, out_channels, heads=1, **kw))

    @stage
    def encode(self, h: torch.Tensor, graph: Graph) -> tuple[torch.Tensor]:
        if self.edge_dim and graph.edge_attr is None:
            raise ConfigError(f"model.edge_dim: {self.edge_dim}, but the graph has no edge features; set 0")
        return (h,)

    @stage
    def layer(self, k: int, state: tuple[torch.Tensor], graph: Graph) -> tuple[torch.Tensor]:
        h = gatv2_layer(self.convs[k], state[0], graph)
        return (F.elu(h) if k < self.num_layers - 1 else h,)

    @stage
    def decode(self, state: tuple[torch.Tensor], graph: Graph) -> torch.Tensor:
        return state[0]

    def layer_module(self, k: int) -> nn.Module:
        """The :class:`GATv2Conv` holding layer ``k``'s weights."""
        return self.convs[k]

    def forward(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``x`` float [B, N, in] or [N, in] -> float [B, N, out] or [N, out]."""
        return run_stages(self, x, graph)
