"""Encoder-processor-decoder interaction network (MeshGraphNet / GraphCast style)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gnnddm.errors import ConfigError
from gnnddm.models.common import MLP, ModelConfig, check_edge_dim, check_keep, run_stages, scaled, scatter_sum
from gnnddm.models.execution import stage
from gnnddm.models.graph import Graph
from gnnddm.schema.fields import at_least, configured


class InteractionBlock(nn.Module):
    """One processor step with residual edge and node updates.

    Update rule (``MLP`` = Linear-SiLU-Linear-LayerNorm; ``τ`` the step, 1 by default)::

        e'_ij = e_ij + τ MLP_e([e_ij, h_j, h_i])        for every edge j -> i
        h'_i  = h_i  + τ MLP_n([h_i, sum_{j -> i} e'_ij])

    The first linear layer of ``MLP_e`` is split by blocks of its input, ``W [e, h_j, h_i] =
    W_e e + (W_s h)_j + (W_d h)_i``, so the node projections are computed once per node and gathered,
    instead of concatenating and multiplying ``[E, B, 3*hidden]`` edge inputs.

    Shapes: ``e`` [E, B or 1, hidden], ``h`` [N, B, hidden].
    """

    def __init__(self, hidden: int, mlp_layers: int):
        super().__init__()
        self.edge_mlp = MLP(3 * hidden, hidden, hidden, mlp_layers, norm=True)
        self.node_mlp = MLP(2 * hidden, hidden, hidden, mlp_layers, norm=True)

    def forward(self, e: torch.Tensor, h: torch.Tensor, graph: Graph,
                step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = graph.edge_index
        first = self.edge_mlp[0]
        w_e, w_s, w_d = first.weight.chunk(3, dim=1)
        # index_select, not h[src]: the backward of indexing (index_put with accumulation) took 28 % of a
        # step; index_select's is one index_add
        pre = F.linear(h, w_s).index_select(0, src) + F.linear(h, w_d).index_select(0, dst)
        if e.stride(0) == 0:  # every edge holds the same latent (no edge features yet): project it once
            pre = pre + F.linear(e[:1], w_e, first.bias)
        else:
            pre = pre + F.linear(e, w_e, first.bias)
        for layer in list(self.edge_mlp)[1:]:
            pre = layer(pre)
        e = e + scaled(pre, step)
        agg = scatter_sum(e, graph)
        h = h + scaled(self.node_mlp(torch.cat([h, agg], dim=-1)), step)
        return e, h


@dataclass
class InteractionNetworkConfig(ModelConfig):
    _target_: str = "gnnddm.models.interaction.InteractionNetwork"
    mlp_layers: int = field(default=2, metadata=at_least(1))


class InteractionNetwork(nn.Module):
    """Node and edge encoders, ``layers`` :class:`InteractionBlock` processors, a node decoder.

    Parameters
    ----------
    in_channels, out_channels : int
    edge_dim : int
        Width of ``graph.edge_attr``, encoded into the initial edge latents. With 0 the edges start from
        one learned latent vector shared by all edges, and only the processor makes them differ.
    config : InteractionNetworkConfig, optional
        The validated ``model`` section; or its keys as keyword ``**options`` (the schema's defaults for
        the rest). Its keys:
    hidden : int
        Latent width of nodes and edges.
    layers : int
        Number of processor blocks = message-passing layers (the receptive field in hops; the encoders
        and the decoder act on single nodes or edges).
    mlp_layers : int
        Linear layers per MLP.

    Attributes
    ----------
    layer_steps : list[float]
        ``τ_k`` of block ``k`` (1.0), every block a residual layer (:mod:`gnnddm.models`, Depth).
    """

    Config = InteractionNetworkConfig

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int = 0, *,
                 config: InteractionNetworkConfig | None = None, **options):
        super().__init__()
        c = configured(self.Config, "model", config, options)
        hidden, layers, mlp_layers = c.hidden, c.layers, c.mlp_layers
        check_edge_dim(edge_dim)
        self.in_channels, self.out_channels, self.edge_dim = in_channels, out_channels, edge_dim
        self.num_message_passing_layers = self.num_layers = layers
        self.layer_steps = [1.0] * layers
        self.node_encoder = MLP(in_channels, hidden, hidden, mlp_layers, norm=True)
        if edge_dim > 0:
            self.edge_encoder = MLP(edge_dim, hidden, hidden, mlp_layers, norm=True)
        else:
            self.edge_latent = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        self.blocks = nn.ModuleList(InteractionBlock(hidden, mlp_layers) for _ in range(layers))
        self.decoder = MLP(hidden, hidden, out_channels, mlp_layers)

    @stage
    def encode(self, h: torch.Tensor, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Node and edge latents ``(h [N, B, hidden], e [E, B or 1, hidden])``."""
        if self.edge_dim > 0:
            if graph.edge_attr is None or graph.edge_attr.shape[1] != self.edge_dim:
                got = None if graph.edge_attr is None else graph.edge_attr.shape[1]
                raise ConfigError(
                    f"model.edge_dim: {self.edge_dim}, but the graph has edge features of width {got}"
                )
            e = self.edge_encoder(graph.edge_attr).unsqueeze(1)
        else:
            e = self.edge_latent.expand(graph.num_edges, 1, -1)
        return self.node_encoder(h), e

    @stage
    def layer(self, k: int, state: tuple[torch.Tensor, torch.Tensor], graph: Graph):
        h, e = state
        e, h = self.blocks[k](e, h, graph, self.layer_steps[k])
        return h, e

    @stage
    def decode(self, state: tuple[torch.Tensor, torch.Tensor], graph: Graph) -> torch.Tensor:
        return self.decoder(state[0])

    # the depth structure (see gnnddm.models: multilevel training in depth, gnnddm.ddm.depth)
    def residual_layers(self) -> list[int]:
        """Every processor block is a residual layer."""
        return list(range(self.num_layers))

    def layer_module(self, k: int) -> nn.Module:
        """The :class:`InteractionBlock` of layer ``k``."""
        return self.blocks[k]

    def head_modules(self) -> list[nn.Module]:
        """The modules used after the last layer (the decoder); the encoders are used before layer 0."""
        return [self.decoder]

    def keep_layers(self, keep) -> None:
        """Keep only the blocks ``keep`` (increasing) and their steps, in place."""
        keep = check_keep(self, keep)
        self.blocks = nn.ModuleList(self.blocks[k] for k in keep)
        self.layer_steps = [self.layer_steps[k] for k in keep]
        self.num_message_passing_layers = self.num_layers = len(keep)

    def forward(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``x`` float [B, N, in] or [N, in] -> float [B, N, out] or [N, out]."""
        return run_stages(self, x, graph)
