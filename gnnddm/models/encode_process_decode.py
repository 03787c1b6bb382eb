"""GraphCast's encoder, deep processor on a hidden mesh and decoder, on one joint graph.

The graph (``graph=icosahedral``, :mod:`gnnddm.graph.icosahedral`) holds grid nodes and mesh nodes in one
node set and three kinds of edges, told apart by the last three columns of ``edge_attr``, a one-hot
``(is_encoder, is_processor, is_decoder)``; the columns before them are geometric edge features. The model
is told nothing else about which node is which: the mesh is where the processor edges are.

    encoder    grid -> mesh     one interaction layer, node update on every node
    processor  mesh <-> mesh    ``processor_layers`` interaction layers, node update on the mesh nodes
    decoder    mesh -> grid     one interaction layer, node update on every node

Being stages of one graph, the encoder and decoder are message-passing layers like the processor's: a grid
node's output depends on the nodes within ``processor_layers + 2`` hops, and that is the overlap that makes
subdomain problems exact (``num_message_passing_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gnnddm.errors import ConfigError
from gnnddm.models.common import MLP, check_edge_dim, check_keep, run_stages, scaled
from gnnddm.models.execution import in_float32, stage
from gnnddm.models.graph import Graph, sparse_product
from gnnddm.schema.fields import Component, at_least, configured

KINDS = ("encoder", "processor", "decoder")
"""The edge kinds, in the order of the one-hot that ends ``edge_attr``."""


# ------------------------------------------------------------------------------ the edges of one kind
class Side(NamedTuple):
    """The nodes at one end of the edges of a kind, and the sparse maps between them and the edges.

    ``index[k]`` is the row of edge k's node among the rows the side refers to: those of ``nodes`` when
    given (the few distinct nodes at this end, e.g. the mesh nodes), otherwise the rows of the layer's
    frame (all of them: most nodes are at this end). ``incidence`` is CSR ``[R, E]`` with a 1 at
    ``(index[k], k)``: ``incidence @ x`` sums per-edge values into their nodes (the backward pass of
    a gather, the forward pass of a scatter).
    """

    nodes: torch.Tensor | None
    index: torch.Tensor
    incidence: torch.Tensor


class EdgeSet(NamedTuple):
    """The edges of one kind of a graph, found once per graph (:func:`edge_sets`).

    ``frame``: the node rows the layer reads and updates (the processor's: the nodes its edges touch,
    i.e. the mesh) or None (every node: the encoder's and decoder's node updates reach all nodes).
    ``pairs`` [E, 2]: each edge's sender row and its receiver row offset by the senders' row count, the
    rows of the senders' and receivers' projections stacked (:class:`_EdgeInput`).
    ``features``: the geometric edge features ``[E_k, F]``, the kind's one-hot dropped.
    """

    frame: torch.Tensor | None
    senders: Side
    receivers: Side
    pairs: torch.Tensor
    features: torch.Tensor


def edge_sets(graph: Graph) -> tuple[EdgeSet, EdgeSet, EdgeSet]:
    """The encoder, processor and decoder edges of ``graph`` (cached on it)."""
    return graph.cached("encode_process_decode:edge_sets", lambda: _find_edge_sets(graph))


def _find_edge_sets(graph: Graph) -> tuple[EdgeSet, ...]:
    attr, (src, dst) = graph.edge_attr, graph.edge_index
    out = []
    for k, kind in enumerate(KINDS):
        pos = torch.nonzero(attr[:, attr.shape[1] - 3 + k] > 0.5).squeeze(1)
        s, d = src.index_select(0, pos), dst.index_select(0, pos)
        frame, rows = None, graph.num_nodes
        if kind == "processor":  # the mesh: computing the mesh layers on every node would cost the grid's
            frame = torch.unique(torch.cat([s, d]))
            s, d, rows = torch.searchsorted(frame, s), torch.searchsorted(frame, d), len(frame)
        senders, receivers = _side(s, rows, attr.dtype), _side(d, rows, attr.dtype)
        pairs = torch.stack([senders.index, receivers.index + senders.incidence.shape[0]], dim=1)
        out.append(EdgeSet(frame, senders, receivers, pairs, attr.index_select(0, pos)[:, :-3].contiguous()))
    return tuple(out)


def _distinct(index: torch.Tensor, rows: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(nodes, index)``: the distinct rows of ``index`` and ``index`` relabelled to them, when they are at
    most half of the ``rows``; otherwise ``(None, index)`` (all rows)."""
    nodes = torch.unique(index)
    if 2 * len(nodes) <= rows:
        return nodes, torch.searchsorted(nodes, index)
    return None, index


def _side(index: torch.Tensor, rows: int, dtype: torch.dtype) -> Side:
    """One end of the edges: through the distinct nodes when they are at most half of the ``rows`` (the
    node projections are then computed on those alone), through all rows otherwise."""
    nodes, index = _distinct(index, rows)
    if nodes is not None:
        rows = len(nodes)
    order = torch.argsort(index, stable=True)
    crow = torch.zeros(rows + 1, dtype=torch.long, device=index.device)
    crow[1:] = torch.cumsum(torch.bincount(index, minlength=rows), 0)
    # 32-bit indices where they fit: MKL's sparse product converts 64-bit ones at every call (2x slower)
    itype = torch.int32 if len(index) < 2**31 else torch.long
    ones = torch.ones(len(index), dtype=dtype, device=index.device)
    incidence = torch.sparse_csr_tensor(crow.to(itype), order.to(itype), ones, size=(rows, len(index)),
                                        check_invariants=False)
    return Side(nodes, index, incidence)


class _EdgeInput(torch.autograd.Function):
    """The first linear layer of the edge MLP, ``W_e e + p_s[sender] + p_d[receiver]`` per edge, from the
    node projections ``p_s``, ``p_d`` (bias included) and the edge latents ``e``.

    The two gathers and their sum are one pass, an ``embedding_bag`` sum over bags of two rows of the
    stacked projections, into which ``W_e e`` is accumulated in place (``addmm_``): no ``[E, B, H]``
    temporaries, and no in-place update of a view of this function's output, whose autograd bookkeeping
    (``CopySlices``) cost as much as the product. Backward: each side's CSR product ``incidence @ grad``
    sums the edges' gradients into their rows.
    """

    @staticmethod
    @in_float32
    def forward(ctx, p_s, p_d, e, w_e, edges):
        num_edges, samples, hidden = len(edges.pairs), p_s.shape[1], p_s.shape[2]
        out = F.embedding_bag(edges.pairs, torch.cat([p_s.flatten(1), p_d.flatten(1)]), mode="sum")
        if e.shape[1] == samples:
            out.view(-1, hidden).addmm_(e.reshape(-1, hidden), w_e.t())
        else:  # one latent per edge for all samples (the embedded edges)
            out.view(num_edges, samples, hidden).add_(e @ w_e.t())
        ctx.save_for_backward(e, w_e)
        ctx.edges, ctx.shapes = edges, (p_s.shape, p_d.shape)
        return out.view(num_edges, samples, hidden)

    @staticmethod
    def backward(ctx, grad):
        e, w_e = ctx.saved_tensors
        (s_shape, d_shape), edges = ctx.shapes, ctx.edges
        flat = grad.flatten(1).contiguous()
        g_e = grad if e.shape[1] == grad.shape[1] else grad.sum(1, keepdim=True)
        g_e2 = g_e.reshape(-1, g_e.shape[-1])
        return (sparse_product(edges.senders.incidence, flat).view(s_shape),
                sparse_product(edges.receivers.incidence, flat).view(d_shape),
                (g_e2 @ w_e).view(e.shape), g_e2.t() @ e.reshape(-1, e.shape[-1]), None)


class _Scatter(torch.autograd.Function):
    """Sum per-edge values ``[E, ...]`` into their nodes, ``incidence @ x``; backward: a gather."""

    @staticmethod
    @in_float32
    def forward(ctx, x, index, incidence):
        ctx.index = index
        return sparse_product(incidence, x.flatten(1).contiguous()).view(incidence.shape[0], *x.shape[1:])

    @staticmethod
    def backward(ctx, grad):
        return grad.index_select(0, ctx.index), None, None


class _Rows(torch.autograd.Function):
    """``x[rows]`` for distinct ``rows``; backward: the gradient copied into those rows of zeros
    (``index_copy_``, 9x faster than the accumulating ``index_add_`` of ``index_select``'s backward:
    10,242 of 75,402 rows, 0.43 ms against 3.7 ms)."""

    @staticmethod
    def forward(ctx, x, rows):
        ctx.rows, ctx.shape = rows, x.shape
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        return grad.new_zeros(ctx.shape).index_copy_(0, ctx.rows, grad), None


class _AddRows(torch.autograd.Function):
    """``x`` with ``values`` added to its distinct ``rows``, out of place; backward: the gradient passes to
    ``x`` as it is and to ``values`` from those rows."""

    @staticmethod
    def forward(ctx, x, rows, values):
        ctx.rows = rows
        return x.index_copy(0, rows, x.index_select(0, rows) + values)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, grad.index_select(0, ctx.rows)


def rows_of(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """The distinct ``rows`` of ``x`` (all of ``x`` for None)."""
    return x if rows is None else _Rows.apply(x, rows)


def add_rows(x: torch.Tensor, rows: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    """``x`` with ``values`` added to its distinct ``rows`` (to every row for None)."""
    return x + values if rows is None else _AddRows.apply(x, rows, values)


def scatter(x: torch.Tensor, side: Side) -> torch.Tensor:
    """Per-edge values ``[E, ...]`` summed into the side's rows: ``[R, ...]``."""
    return _Scatter.apply(x, side.index, side.incidence)


# ------------------------------------------------------------------------------------------- layers
class MeshInteraction(nn.Module):
    """One interaction layer on the edges of one kind, with residual edge and node updates.

    Update rule (``MLP`` = Linear-SiLU-Linear-LayerNorm; ``τ`` the step, 1 by default)::

        e'_ij = e_ij + τ MLP_e([e_ij, h_j, h_i])          for every edge j -> i of the kind
        h'_i  = h_i  + τ MLP_n([h_i, sum_{j -> i} e'_ij])  for every node i of the frame (0 where none arrives)

    As in :class:`~gnnddm.models.interaction.InteractionBlock`, the first linear layer of each MLP is split
    by blocks of its input: the node projections ``W_s h`` and ``W_d h`` are computed per node, and only on
    the nodes at that end of the edges (the mesh's few, or all), then gathered and summed with ``W_e e`` in
    one pass (:class:`_EdgeInput`); no ``[E, B, 3*hidden]`` input is formed. Likewise the node MLP's
    ``W_a sum e'`` is computed on the receiving nodes alone and added to their rows.

    Shapes: ``e`` [E, B or 1, hidden], ``h`` [N, B, hidden].
    """

    def __init__(self, hidden: int, mlp_layers: int):
        super().__init__()
        self.edge_mlp = MLP(3 * hidden, hidden, hidden, mlp_layers, norm=True)
        self.node_mlp = MLP(2 * hidden, hidden, hidden, mlp_layers, norm=True)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edges: EdgeSet,
                step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        hf = rows_of(h, edges.frame)
        e, delta = self.rows(hf, self.sender_projections(rows_of(hf, edges.senders.nodes)), e, edges, step)
        return add_rows(h, edges.frame, delta), e

    def sender_projections(self, h: torch.Tensor) -> torch.Tensor:
        """``W_s h``: the senders' block of the edge MLP's first layer, on the sender nodes' latents."""
        return F.linear(h, self.edge_mlp[0].weight.chunk(3, dim=1)[1])

    def rows(self, hf: torch.Tensor, p_s: torch.Tensor, e: torch.Tensor | None,
             edges: EdgeSet | None, step: float = 1.0) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The updated edge latents and the node update ``h'_i - h_i`` of the rows ``hf`` that the receivers
        of ``edges`` index, from the senders' projections ``p_s`` (the rows the senders index); with no
        ``edges``, the node update of rows that receive nothing. Both updates are scaled by ``step``."""
        first = self.edge_mlp[0]
        w_e, _, w_d = first.weight.chunk(3, dim=1)
        agg = None
        if edges is not None:
            # the bias joins the receivers' projections: added once per node rather than once per edge
            pre = _EdgeInput.apply(p_s, F.linear(rows_of(hf, edges.receivers.nodes), w_d, first.bias), e, w_e, edges)
            e = e + scaled(self.edge_mlp.tail(pre), step)
            agg = scatter(e, edges.receivers)

        first = self.node_mlp[0]
        w_h, w_a = first.weight.chunk(2, dim=1)
        pre = F.linear(hf, w_h, first.bias)
        if agg is not None:  # the aggregate is 0 on the nodes that receive no edge of the kind
            pre = add_rows(pre, edges.receivers.nodes, F.linear(agg, w_a))
        return e, scaled(self.node_mlp.tail(pre), step)


# ------------------------------------------------------------------------------ recomputed in blocks
class Blocks(NamedTuple):
    """The edges of one kind split by blocks of receiving rows, for recomputation (:func:`edge_blocks`).

    ``senders``: the distinct sender rows of the kind (None: all rows); ``p_s`` rows are those.
    ``sizes``: the rows of each block, contiguous, covering all rows in order. ``sets[b]``: block b's edges
    (None if none arrive there), its senders indexing the rows of ``p_s``, its receivers the block's rows.
    """

    senders: torch.Tensor | None
    sizes: list[int]
    sets: list[EdgeSet | None]


BLOCK_COST = 1 << 18
"""Rows plus edges per block of a recomputed stage: about 250 k, a few hundred MB of activations at
hidden 64, against the gigabytes of a million-node grid's encoder or decoder kept whole."""


def edge_blocks(graph: Graph, kind: int, cost: int = BLOCK_COST) -> Blocks:
    """The edges of kind ``kind`` (0 encoder, 2 decoder: those that update every row) by blocks of
    receiving rows of about ``cost`` rows plus edges (cached on the graph)."""
    return graph.cached(f"encode_process_decode:blocks:{kind}:{cost}", lambda: _find_blocks(graph, kind, cost))


def _find_blocks(graph: Graph, kind: int, cost: int) -> Blocks:
    edges = edge_sets(graph)[kind]
    if edges.frame is not None:
        raise ValueError("blocks of rows are for the edge kinds that update every row (encoder, decoder)")
    n = graph.num_nodes

    def rows(side: Side) -> torch.Tensor:
        return side.index if side.nodes is None else side.nodes.index_select(0, side.index)

    dst = rows(edges.receivers)
    senders, src = _distinct(rows(edges.senders), n)
    num_senders = n if senders is None else len(senders)
    # cut the rows where the running count of rows and arriving edges passes a multiple of ``cost``
    running = torch.cumsum(torch.bincount(dst, minlength=n) + 1, 0)
    marks = torch.arange(cost, max(int(running[-1]), cost), cost, dtype=running.dtype)
    cuts = torch.searchsorted(running, marks, right=True)  # the first row past each mark starts a block
    bounds = sorted({0, n, *(int(c) for c in cuts if 0 < c < n)})
    order = torch.argsort(dst, stable=True)
    sorted_dst = dst.index_select(0, order)
    sets: list[EdgeSet | None] = []
    dtype = edges.features.dtype
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        lo, hi = int(torch.searchsorted(sorted_dst, a)), int(torch.searchsorted(sorted_dst, b))
        if lo == hi:
            sets.append(None)
            continue
        pos = order[lo:hi]
        s_side = _side(src.index_select(0, pos), num_senders, dtype)
        r_side = _side(dst.index_select(0, pos) - a, b - a, dtype)
        pairs = torch.stack([s_side.index, r_side.index + s_side.incidence.shape[0]], dim=1)
        sets.append(EdgeSet(None, s_side, r_side, pairs, edges.features.index_select(0, pos)))
    return Blocks(senders, [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=False)], sets)


def _block(layer: MeshInteraction, embedder: MLP, p_s: torch.Tensor, hr: torch.Tensor,
           edges: EdgeSet | None) -> torch.Tensor:
    """One block of rows of an encoder or decoder layer, its edges embedded in it: ``h'`` of the rows."""
    e = None if edges is None else _embed(embedder, edges.features).unsqueeze(1)
    return hr + layer.rows(hr, None if edges is None else rows_of(p_s, edges.senders.nodes), e, edges)[1]


def recomputed_layer(layer: MeshInteraction, embedder: MLP, h: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    """``layer`` on the edges of ``blocks`` embedded by ``embedder``, block by block, each block's
    activations recomputed in the backward pass instead of kept (``torch.utils.checkpoint``): what the
    pass keeps is ``h`` and the senders' projections, whatever the number of edges."""
    p_s = layer.sender_projections(rows_of(h, blocks.senders))
    out = [checkpoint(_block, layer, embedder, p_s, hr, edges, use_reentrant=False, preserve_rng_state=False)
           for hr, edges in zip(h.split(blocks.sizes), blocks.sets, strict=True)]
    return torch.cat(out)


def _embed(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)`` for inputs of few channels (edge features, node inputs), its first weight's gradient taken
    as ``x^T g`` (the narrow matrix on the left of the tall product, 2.5x faster than autograd's ``g^T x``
    for ``nn.Linear``'s layout: 3 against 64 columns over 195,480 edges, 0.009 s against 0.023 s)."""
    first = mlp[0]
    out = torch.addmm(first.bias, x.reshape(-1, x.shape[-1]), first.weight.t().contiguous())
    return mlp.tail(out.view(*x.shape[:-1], out.shape[-1]))


# -------------------------------------------------------------------------------------------- model
@dataclass
class EncodeProcessDecodeConfig(Component):
    """GraphCast's encoder-processor-decoder (``graph=icosahedral``). Not a
    :class:`~gnnddm.models.common.ModelConfig`: its depth is ``processor_layers``, the mesh layers, and it
    has ``processor_layers + 2`` message-passing layers (the encoder and decoder pass messages too), so a
    ``layers`` key would be misread as either."""

    _target_: str = "gnnddm.models.encode_process_decode.EncodeProcessDecode"
    hidden: int = field(default=64, metadata=at_least(1))
    processor_layers: int = field(default=4, metadata=at_least(1))
    mlp_layers: int = field(default=2, metadata=at_least(1))
    recompute: bool = False


class EncodeProcessDecode(nn.Module):
    """GraphCast's structure on the joint grid + mesh graph of ``graph=icosahedral`` (module docstring).

    Stages (:mod:`gnnddm.models`): ``encode`` embeds every node (MLP with LayerNorm) and the processor's
    edges; the encoder and decoder layers embed their own edges. One MLP with LayerNorm per edge kind
    rather than one shared MLP reading the kind's one-hot: as in
    GraphCast, the kinds' features span different ranges (encoder and decoder edges shorter than a mesh
    edge, multimesh edges up to 63 degrees) and play different roles, and since every edge passes through
    exactly one embedder either way, separate ones cost no time. Layer 0 is the encoder, layers
    ``1 .. processor_layers`` the processor, layer ``processor_layers + 1`` the decoder, each a
    :class:`MeshInteraction` on the edges of its kind; ``decode`` is an output MLP on every node.
    The state between layers is ``(h, e_processor)``, and ``(h,)`` after the decoder: the encoder's and
    decoder's edge latents live within their layer.

    Parameters
    ----------
    in_channels, out_channels : int
        Features of every node (grid and mesh) in and out; the mesh nodes' outputs mean nothing.
    edge_dim : int
        Width of ``edge_attr``: the geometric features, then the one-hot ``(is_encoder, is_processor,
        is_decoder)``; at least 4. The features enter the embedders as they are (the builder gives them in
        radians of arc, of order 1 or less).
    config : EncodeProcessDecodeConfig, optional
        The validated ``model`` section; or its keys as keyword ``**options`` (the schema's defaults for
        the rest). Its keys:
    hidden : int
        Latent width of nodes and edges.
    processor_layers : int
        Interaction layers on the mesh (GraphCast: 16). The model has ``processor_layers + 2``
        message-passing layers.
    mlp_layers : int
        Linear layers per MLP.
    recompute : bool
        Keep none of the encoder's and decoder's activations for the backward pass: those two layers
        (and their edge embedders) run by blocks of grid rows and each block is recomputed in the
        backward pass (:func:`recomputed_layer`). Their edges are the grid's (about 4.6 per grid node
        against the processor's few per mesh node), so this bounds the memory of a step by the node
        latents instead of the edges, for one more forward pass of those two layers. The same function,
        equal to rounding either way.

    Attributes
    ----------
    layer_steps : list[float]
        ``τ_k`` per layer (1.0); the residual depth layers are the processor's, ``1 .. processor_layers``
        (:mod:`gnnddm.models`, Depth). The encoder and decoder layers are residual too, but change the
        nodes they act on (grid -> mesh, mesh -> grid) and are not steps of the processor's ODE: their
        ``τ`` is not used.
    """

    Config = EncodeProcessDecodeConfig

    def __init__(self, in_channels: int, out_channels: int, edge_dim: int, *,
                 config: EncodeProcessDecodeConfig | None = None, **options):
        super().__init__()
        c = configured(self.Config, "model", config, options)
        hidden, processor_layers, mlp_layers, recompute = c.hidden, c.processor_layers, c.mlp_layers, c.recompute
        self.recompute = recompute
        check_edge_dim(edge_dim)
        if edge_dim < 4:
            raise ConfigError(
                f"model=encode_process_decode needs the edges of graph=icosahedral: geometric features, then "
                f"the one-hot edge kind (is_encoder, is_processor, is_decoder), at least 4 columns, but the "
                f"graph's edge features have {edge_dim}; use graph=icosahedral"
            )
        self.in_channels, self.out_channels, self.edge_dim = in_channels, out_channels, edge_dim
        self.processor_layers = processor_layers
        self.num_message_passing_layers = self.num_layers = processor_layers + 2
        self.layer_steps = [1.0] * self.num_layers
        self.node_embedder = MLP(in_channels, hidden, hidden, mlp_layers, norm=True)
        self.edge_embedders = nn.ModuleDict(
            {kind: MLP(edge_dim - 3, hidden, hidden, mlp_layers, norm=True) for kind in KINDS}
        )
        self.encoder = MeshInteraction(hidden, mlp_layers)
        self.processor = nn.ModuleList(MeshInteraction(hidden, mlp_layers) for _ in range(processor_layers))
        self.decoder = MeshInteraction(hidden, mlp_layers)
        self.output = MLP(hidden, hidden, out_channels, mlp_layers)

    @stage
    def encode(self, h: torch.Tensor, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """Node latents ``h [N, B, hidden]`` and the processor's edge latents ``[E_processor, 1, hidden]``."""
        if graph.edge_attr is None or graph.edge_attr.shape[1] != self.edge_dim:
            got = None if graph.edge_attr is None else graph.edge_attr.shape[1]
            raise ConfigError(f"model.edge_dim: {self.edge_dim}, but the graph has edge features of width {got}")
        processor = edge_sets(graph)[1]
        return _embed(self.node_embedder, h), _embed(self.edge_embedders["processor"], processor.features).unsqueeze(1)

    @stage
    def layer(self, k: int, state: tuple[torch.Tensor, ...], graph: Graph) -> tuple[torch.Tensor, ...]:
        if k == 0:
            h, e_proc = state
            return self._bipartite(self.encoder, 0, h, graph), e_proc
        if k <= self.processor_layers:
            h, e_proc = state
            return self.processor[k - 1](h, e_proc, edge_sets(graph)[1], self.layer_steps[k])
        if k == self.processor_layers + 1:
            return (self._bipartite(self.decoder, 2, state[0], graph),)
        raise IndexError(f"layer {k} of a model with {self.num_layers} layers")

    # the depth structure (see gnnddm.models: multilevel training in depth, gnnddm.ddm.depth)
    def residual_layers(self) -> list[int]:
        """The processor layers, ``1 .. processor_layers``."""
        return list(range(1, self.processor_layers + 1))

    def layer_module(self, k: int) -> nn.Module:
        """The :class:`MeshInteraction` of layer ``k``: the encoder, a processor layer or the decoder."""
        if not 0 <= k < self.num_layers:
            raise IndexError(f"layer {k} of a model with {self.num_layers} layers")
        if k == 0:
            return self.encoder
        return self.processor[k - 1] if k <= self.processor_layers else self.decoder

    def head_modules(self) -> list[nn.Module]:
        """The modules used with or after the decoder layer: the decoder's edge embedder and the output MLP
        (the node embedder and the other edge embedders are used before or in layer 0)."""
        return [self.edge_embedders[KINDS[2]], self.output]

    def keep_layers(self, keep) -> None:
        """Keep only the layers ``keep`` (increasing, with the encoder and the decoder) and their steps, in
        place; ``processor_layers`` becomes the number of processor layers kept."""
        keep = check_keep(self, keep)
        self.processor = nn.ModuleList(self.processor[k - 1] for k in keep if 1 <= k <= self.processor_layers)
        self.layer_steps = [self.layer_steps[k] for k in keep]
        self.processor_layers = len(self.processor)
        self.num_message_passing_layers = self.num_layers = self.processor_layers + 2

    def _bipartite(self, layer: MeshInteraction, kind: int, h: torch.Tensor, graph: Graph) -> torch.Tensor:
        """The encoder (``kind`` 0) or decoder (2) layer, its edges embedded first: whole, or with
        ``recompute`` by blocks of rows recomputed in the backward pass."""
        embedder = self.edge_embedders[KINDS[kind]]
        if self.recompute and torch.is_grad_enabled():
            return recomputed_layer(layer, embedder, h, edge_blocks(graph, kind))
        edges = edge_sets(graph)[kind]
        return layer(h, _embed(embedder, edges.features).unsqueeze(1), edges)[0]

    @stage
    def decode(self, state: tuple[torch.Tensor, ...], graph: Graph) -> torch.Tensor:
        return self.output.tail(self.output[0](state[0]))

    def forward(self, x: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``x`` float [B, N, in] or [N, in] -> float [B, N, out] or [N, out]."""
        return run_stages(self, x, graph)
