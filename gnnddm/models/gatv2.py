"""Graph attention network v2 (Brody et al. 2022), batched over samples that share the graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import softmax

from gnnddm.errors import ConfigError
from gnnddm.models.common import check_edge_dim, run_stages
from gnnddm.models.graph import Graph
from gnnddm.schema.fields import check_args
from gnnddm.schema.model import GATv2Config


def _with_self_loops(graph: Graph):
    """Edges plus one self-loop per node (existing self-loops replaced), as PyG's ``GATv2Conv`` does.

    The self-loop of node i carries the mean of the features of the edges into i (PyG's
    ``fill_value="mean"``). Cached on the graph.
    """

    def build():
        src, dst = graph.edge_index
        keep = src != dst
        loops = torch.arange(graph.num_nodes, device=src.device)
        attr = None
        if graph.edge_attr is not None:
            kept = graph.edge_attr[keep]
            total = kept.new_zeros(graph.num_nodes, kept.shape[1]).index_add(0, dst[keep], kept)
            count = torch.bincount(dst[keep], minlength=graph.num_nodes).clamp(min=1).unsqueeze(1)
            attr = torch.cat([kept, total / count])
        return torch.cat([src[keep], loops]), torch.cat([dst[keep], loops]), attr

    return graph.cached("gat_self_loops", build)


def gatv2_layer(conv: GATv2Conv, h: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Apply ``conv`` (a PyG :class:`GATv2Conv`, used for its weights) to node-major features.

    Update rule, per head (edges include one self-loop per node)::

        e_ij   = a^T LeakyReLU(W_l h_j + W_r h_i + W_e x_ij)
        alpha  = softmax_j(e_ij) over the edges j -> i
        h'_i   = sum_j alpha_ij W_l h_j  (+ bias; heads concatenated or averaged)

    Attention is per edge and per sample, so messages are materialised as ``[E, B, heads, C]``; the
    batch rides along the second dimension, so B samples cost one gather and one scatter.

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
    src, dst, edge_attr = _with_self_loops(graph) if conv.add_self_loops else (*graph.edge_index, graph.edge_attr)
    x_l = conv.lin_l(h).view(n, b, heads, c)
    x_r = x_l if conv.share_weights else conv.lin_r(h).view(n, b, heads, c)
    x_j = x_l[src]
    e = x_j + x_r[dst]
    if conv.lin_edge is not None:
        e = e + conv.lin_edge(edge_attr).view(-1, 1, heads, c)
    e = F.leaky_relu(e, conv.negative_slope)
    alpha = softmax((e * conv.att).sum(-1), dst, num_nodes=n, dim=0)
    alpha = F.dropout(alpha, p=conv.dropout, training=conv.training)
    out = x_j.new_zeros(n, b, heads, c).index_add(0, dst, x_j * alpha.unsqueeze(-1))
    out = out.reshape(n, b, heads * c) if conv.concat else out.mean(dim=2)
    if conv.res is not None:
        out = out + conv.res(h)
    return out if conv.bias is None else out + conv.bias


class GATv2(nn.Module):
    """A stack of ``layers`` GATv2 layers with ELU in between: in -> hidden -> ... -> hidden -> out.

    Hidden layers have ``heads`` heads of ``hidden // heads`` channels, concatenated; the last layer has
    one head. Edge features (``edge_dim > 0``) enter the attention logits.

    Parameters
    ----------
    in_channels, out_channels : int
    edge_dim : int
        Width of ``graph.edge_attr``; 0 ignores edge features.
    hidden : int
        Width of the hidden layers; must be divisible by ``heads``.
    layers : int
        Number of message-passing layers (the receptive field in hops).
    heads : int
    negative_slope : float
        Slope of the LeakyReLU in the attention logits.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        edge_dim: int = 0,
        hidden: int = 64,
        layers: int = 3,
        heads: int = 4,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        check_args(GATv2Config, "model", hidden=hidden, layers=layers, heads=heads, negative_slope=negative_slope)
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

    def encode(self, h: torch.Tensor, graph: Graph) -> tuple[torch.Tensor]:
        if self.edge_dim and graph.edge_attr is None:
            raise ConfigError(f"model.edge_dim: {self.edge_dim}, but the graph has no edge features; set 0")
        return (h,)

    def layer(self, k: int, state: tuple[torch.Tensor], graph: Graph) -> tuple[torch.Tensor]:
        h = gatv2_layer(self.convs[k], state[0], graph)
        return (F.elu(h) if k < self.num_layers - 1 else h,)

    def decode(self, state: tuple[torch.Tensor], graph: Graph) -> torch.Tensor:
        return state[0]

    def forward(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``x`` float [B, N, in] or [N, in] -> float [B, N, out] or [N, out]."""
        return run_stages(self, x, graph)
