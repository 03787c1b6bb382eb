"""Graph convolutional network (Kipf & Welling 2017) on the CSR fast path."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv

from gnnddm.errors import ConfigError
from gnnddm.models.common import ModelConfig, run_stages, spmm, weighted_adjacency
from gnnddm.models.execution import stage
from gnnddm.models.graph import Graph
from gnnddm.schema.fields import configured


def gcn_normalisation(graph: Graph, use_edge_weight: bool = False):
    """The symmetric normalisation of ``A + I`` as an off-diagonal CSR pair and a diagonal.

    With ``d_i = 1 + sum_{j -> i} w_ij`` (in-degree plus the self-loop; ``w = 1`` unweighted), the
    normalised operator is ``Â = D^-1/2 (A + I) D^-1/2``: off-diagonal values ``w_ij / sqrt(d_i d_j)``
    and diagonal ``1 / d_i``, as PyG's ``gcn_norm`` builds them. Cached on the graph.

    Returns
    -------
    (A, A.T) : CSR pair for :func:`spmm`;  self_weight : float [N, 1, 1].
    """
    if use_edge_weight and graph.edge_weight is None:
        raise ConfigError("model.use_edge_weight: true, but the graph has no edge weights; set it to false")
    key = "gcn_weighted" if use_edge_weight else "gcn"

    def degree_inv_sqrt():
        if not use_edge_weight:
            return (graph.in_degree + 1.0).rsqrt()
        if graph.in_weight is not None:
            return (graph.in_weight.to(graph.edge_weight.dtype) + 1.0).rsqrt()
        ones = torch.ones(graph.num_nodes, dtype=graph.edge_weight.dtype, device=graph.edge_weight.device)
        deg = ones.index_add(0, graph.edge_index[1], graph.edge_weight)
        return deg.rsqrt()

    dinv = graph.cached(key + ":dinv", degree_inv_sqrt)

    def values():
        src, dst = graph.edge_index
        w = dinv[src] * dinv[dst]
        return w * graph.edge_weight if use_edge_weight else w

    return weighted_adjacency(graph, key, values), (dinv * dinv).view(-1, 1, 1)


def gcn_layer(conv: GCNConv, h: torch.Tensor, graph: Graph, use_edge_weight: bool = False) -> torch.Tensor:
    """Apply ``conv`` (a PyG :class:`GCNConv`, used for its weights) to node-major features.

    Update rule::

        h' = Â h W^T + b,     Â = D^-1/2 (A + I) D^-1/2

    ``Â`` is applied as one CSR product plus the diagonal, on the narrower side of ``W``.

    Parameters
    ----------
    conv : GCNConv
    h : float [N, B, F_in]
    graph : Graph
    use_edge_weight : bool
        Weight the adjacency by ``graph.edge_weight``.

    Returns
    -------
    float [N, B, F_out]
    """
    a, self_weight = gcn_normalisation(graph, use_edge_weight)
    w = conv.lin.weight
    if w.shape[0] < w.shape[1]:
        p = F.linear(h, w)
        out = spmm(p, a) + self_weight * p
    else:
        out = F.linear(spmm(h, a) + self_weight * h, w)
    return out if conv.bias is None else out + conv.bias


@dataclass
class GCNConfig(ModelConfig):
    _target_: str = "gnnddm.models.gcn.GCN"
    use_edge_weight: bool = False


class GCN(nn.Module):
    """A stack of ``layers`` GCN layers with ReLU in between: in -> hidden -> ... -> hidden -> out.

    Parameters
    ----------
    in_channels, out_channels : int
    edge_dim : int
        Accepted for the common model signature; GCN does not use edge features.
    config : GCNConfig, optional
        The validated ``model`` section; or its keys as keyword ``**options`` (the schema's defaults for
        the rest). Its keys:
    hidden : int
    layers : int
        Number of message-passing layers (the receptive field in hops).
    use_edge_weight : bool
        Weight the adjacency by the graph's ``edge_weight`` (larger = stronger coupling).
    """

    Config = GCNConfig

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int = 0, *, config: GCNConfig | None = None,
                 **options):
        super().__init__()
        c = configured(self.Config, "model", config, options)
        hidden, layers, use_edge_weight = c.hidden, c.layers, c.use_edge_weight
        self.in_channels, self.out_channels = in_channels, out_channels
        self.use_edge_weight = bool(use_edge_weight)
        # The symmetric normalisation reads the degree of each message's source, which depends on that
        # node's own neighbours: an output depends on nodes up to layers + 1 hops away, so exact local
        # problems need an overlap of layers + 1.
        self.num_message_passing_layers = layers + 1
        self.num_layers = layers
        dims = [in_channels] + [hidden] * (layers - 1) + [out_channels]
        self.convs = nn.ModuleList(GCNConv(dims[k], dims[k + 1]) for k in range(layers))

    @stage
    def encode(self, h: torch.Tensor, graph: Graph) -> tuple[torch.Tensor]:
        return (h,)

    @stage
    def layer(self, k: int, state: tuple[torch.Tensor], graph: Graph) -> tuple[torch.Tensor]:
        h = gcn_layer(self.convs[k], state[0], graph, self.use_edge_weight)
        return (F.relu(h) if k < self.num_layers - 1 else h,)

    @stage
    def decode(self, state: tuple[torch.Tensor], graph: Graph) -> torch.Tensor:
        return state[0]

    def layer_module(self, k: int) -> nn.Module:
        """The :class:`GCNConv` holding layer ``k``'s weights."""
        return self.convs[k]

    def forward(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``x`` float [B, N, in] or [N, in] -> float [B, N, out] or [N, out]."""
        return run_stages(self, x, graph)
