"""Building blocks shared by the architectures: batched layout, sparse aggregation, MLPs.

Layout. Every model works internally on node-major features ``h`` of shape ``[N, B, F]`` (N nodes, B time
samples sharing the graph). Linear layers act on the last dimension whatever the leading ones are, and the
neighbour aggregation sees the same memory as a matrix ``[N, B*F]``, so all B samples are aggregated by one
sparse-dense product without copies. Per-edge operations index along dimension 0 (``h[src]`` is
``[E, B, F]``).

Aggregation. Sums and means over incoming edges are one CSR product ``A @ h`` with ``A[i, j] = w_ij`` for
edge j -> i (:func:`spmm`). Its backward pass is ``A.T @ grad``, computed with the transpose cached on the
graph (:func:`adjacency`) instead of re-sorting the edges every step. No ``[E, B*F]`` message tensor is
materialised, which is what makes the sum/mean layers fast and light on memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gnnddm.models.execution import compute_dtype, in_float32, lowered
from gnnddm.models.graph import Graph, sparse_product
from gnnddm.schema.fields import Component, at_least

#: the neighbour aggregations of :func:`adjacency` (GraphSAGE's ``aggr``)
AGGREGATIONS = ("mean", "sum")


@dataclass
class ModelConfig(Component):
    """The keys of every ``model`` option: width and depth (the message-passing layers L that set the exact
    overlap). Each model class names its schema, a subclass, in ``Config``; ``in_channels``,
    ``out_channels`` and ``edge_dim`` come from the data at run time and are no config keys."""

    hidden: int = field(default=64, metadata=at_least(1))
    layers: int = field(default=3, metadata=at_least(1))


def check_edge_dim(edge_dim) -> None:
    """``edge_dim`` comes from the data (the width of ``edge_attr``), not from the config."""
    if isinstance(edge_dim, bool) or not isinstance(edge_dim, int) or edge_dim < 0:
        raise ValueError(f"edge_dim: expected an integer >= 0 (the width of the edge features), got {edge_dim!r}")


def to_node_major(x: torch.Tensor, graph: Graph, in_channels: int) -> tuple[torch.Tensor, bool]:
    """``[B, N, F]`` or ``[N, F]`` input as ``[N, B, F]`` (a view), and whether the input was batched."""
    if x.dim() not in (2, 3):
        raise ValueError(f"node features must be [B, N, F] or [N, F], got shape {tuple(x.shape)}")
    batched = x.dim() == 3
    h = x.transpose(0, 1) if batched else x.unsqueeze(1)
    if h.shape[0] != graph.num_nodes or h.shape[2] != in_channels:
        raise ValueError(
            f"node features of shape {tuple(x.shape)} do not match the graph ({graph.num_nodes} nodes) "
            f"and the model ({in_channels} input channels)"
        )
    return h, batched


def from_node_major(h: torch.Tensor, batched: bool) -> torch.Tensor:
    """Inverse of :func:`to_node_major`: ``[N, B, F]`` -> ``[B, N, F]`` (or ``[N, F]``)."""
    return h.transpose(0, 1) if batched else h.squeeze(1)


def run_stages(model, x: torch.Tensor, graph: Graph) -> torch.Tensor:
    """A model's forward pass as the composition of its stages (see :mod:`gnnddm.models`):
    ``decode(layer_{L-1}(... layer_0(encode(x)) ...))`` on ``[B, N, F]`` or ``[N, F]`` input."""
    h, batched = to_node_major(x, graph, model.in_channels)
    state = model.encode(h, graph)
    for k in range(model.num_layers):
        state = model.layer(k, state, graph)
    return from_node_major(model.decode(state, graph), batched)


def scaled(delta: torch.Tensor, step: float) -> torch.Tensor:
    """``step * delta``, and ``delta`` itself for ``step == 1``: a residual update ``h + τ F(h)`` with
    ``τ = 1`` does the same floating-point operations as ``h + F(h)``, bit for bit."""
    return delta if step == 1.0 else delta * step


def check_keep(model, keep) -> list[int]:
    """``keep`` as a list, checked for :meth:`keep_layers`: increasing layer indices of ``model`` that
    include every non-residual layer (only residual layers, whose input and output agree, can be dropped)."""
    keep = [int(k) for k in keep]
    if any(b <= a for a, b in zip(keep[:-1], keep[1:], strict=False)) or \
            any(not 0 <= k < model.num_layers for k in keep):
        raise ValueError(f"keep: expected increasing layer indices below {model.num_layers}, got {keep}")
    dropped = set(range(model.num_layers)) - set(keep) - set(model.residual_layers())
    if dropped:
        raise ValueError(f"keep: layers {sorted(dropped)} are not residual layers and cannot be dropped")
    return keep


def weighted_adjacency(graph: Graph, key: str, build_values) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, A.T)`` as CSR tensors whose values are ``build_values()`` (float [E], sorted edge order).

    Cached on the graph under ``key``; ``build_values`` is called once per graph.
    """

    def build():
        values = build_values()
        t = graph.transpose()
        return _with_values(graph.adj, values), _with_values(t.adj_t, values[t.perm].contiguous())

    return graph.cached("adjacency:" + key, build)


def adjacency(graph: Graph, aggr: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, A.T)`` with ``A[i, j] = 1`` (``aggr="sum"``) or ``1 / in_degree(i)`` (``"mean"``) for j -> i."""
    if aggr == "sum":
        return graph.cached("adjacency:sum", lambda: (graph.adj, graph.transpose().adj_t))
    if aggr == "mean":
        return weighted_adjacency(
            graph, "mean", lambda: (1.0 / graph.in_degree.clamp(min=1.0))[graph.edge_index[1]]
        )
    raise ValueError(f"unknown aggregation {aggr!r}; expected 'sum' or 'mean'")


def _with_values(a: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        a.crow_indices(), a.col_indices(), values, size=a.shape, check_invariants=False
    )


class _SpMM(torch.autograd.Function):
    """``A @ h`` for a constant CSR matrix; backward ``A.T @ grad`` with the cached transpose."""

    @staticmethod
    @in_float32
    def forward(ctx, h, a, a_t):
        ctx.a_t = a_t
        return sparse_product(a, h)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return sparse_product(ctx.a_t, grad.contiguous()), None, None


def spmm(h: torch.Tensor, a: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Aggregate over incoming edges: ``out[i] = sum_{j -> i} A[i, j] h[j]``.

    Parameters
    ----------
    h : float [N, ...]
        Node-major features; trailing dimensions (e.g. ``[N, B, F]``) are flattened for the product, so
        all B samples are aggregated by one sparse-dense product.
    a : (A, A.T)
        From :func:`adjacency` or :func:`weighted_adjacency` (constant: no gradient flows to the values).

    Returns
    -------
    float [N, ...], same shape as ``h``.
    """
    flat = h.reshape(h.shape[0], -1).contiguous()
    return _SpMM.apply(flat, a[0], a[1]).view(h.shape)


def scatter_sum(edge_values: torch.Tensor, graph: Graph) -> torch.Tensor:
    """Sum per-edge values ``[E, ...]`` into their target nodes: ``[N, ...]``."""
    out = edge_values.new_zeros((graph.num_nodes, *edge_values.shape[1:]))
    return out.index_add(0, graph.edge_index[1], edge_values)


class MLP(nn.Sequential):
    """``Linear -> SiLU -> ... -> Linear`` with an optional LayerNorm on the output.

    The LayerNorm on the output of the processor MLPs keeps the residual updates of deep
    encoder-processor-decoder networks at a stable scale (MeshGraphNet, GraphCast).
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int = 2, norm: bool = False):
        dims = [in_channels] + [hidden] * (layers - 1) + [out_channels]
        mods: list[nn.Module] = []
        for k in range(layers):
            mods.append(nn.Linear(dims[k], dims[k + 1]))
            if k < layers - 1:
                mods.append(nn.SiLU())
        if norm:
            mods.append(nn.LayerNorm(out_channels))
        super().__init__(*mods)

    def tail(self, pre: torch.Tensor) -> torch.Tensor:
        """The MLP after its first linear layer, on that layer's output ``pre`` [..., hidden]: the same
        function as the modules ``self[1:]``, keeping less for the backward pass (:class:`_Tail`)."""
        linears = [m for m in list(self)[1:] if isinstance(m, nn.Linear)]
        norm = self[-1] if isinstance(self[-1], nn.LayerNorm) else None
        params = [t for m in linears for t in (m.weight, m.bias)]
        if norm is not None:
            params += [norm.weight, norm.bias]
        return _Tail.apply(pre, len(linears), None if norm is None else norm.eps, compute_dtype(pre), *params)


class _Tail(torch.autograd.Function):
    """``SiLU -> Linear (-> SiLU -> Linear ...) (-> LayerNorm)`` on ``pre`` [..., H], keeping for the backward
    pass only the inputs of the SiLUs and of the LayerNorm (with its mean and 1/std): the SiLUs' outputs,
    which the linear layers' weight gradients read, are recomputed there (one elementwise pass). Autograd's
    modules keep those outputs too: for a two-layer MLP with LayerNorm, 3 tensors of the size of ``pre``
    against 2 here, which is what the per-edge MLPs of a million-node grid hold between the passes.
    """

    @staticmethod
    def forward(ctx, pre, num_linears, eps, low, *params):
        x = pre.reshape(-1, pre.shape[-1])
        linear = lowered(low, *params[:2 * num_linears])
        inputs = []  # the SiLUs' inputs (in the products' dtype)
        with torch.autocast(pre.device.type, enabled=False):  # the dtypes are explicit here
            x, = lowered(low, x)
            for i in range(num_linears):
                inputs.append(x)
                x = torch.addmm(linear[2 * i + 1], F.silu(x), linear[2 * i].t())
            x = x.to(params[-1].dtype if params else pre.dtype)  # LayerNorm and output: the parameters' dtype
            norm = None
            if eps is not None:
                gamma, beta = params[-2:]
                y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), gamma, beta, eps)
                norm = (x, mean, rstd)
            else:
                y = x
        ctx.num_linears, ctx.has_norm, ctx.shape, ctx.low = num_linears, eps is not None, pre.shape, low
        ctx.save_for_backward(*inputs, *(norm or ()), *params)
        return y.view(*pre.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        n = ctx.num_linears
        saved = ctx.saved_tensors
        inputs, rest = saved[:n], saved[n:]
        g = grad.reshape(-1, grad.shape[-1])
        grads_norm = ()
        if ctx.has_norm:
            z, mean, rstd = rest[:3]
            params = rest[3:]
            gamma, beta = params[-2:]
            g, g_gamma, g_beta = torch.ops.aten.native_layer_norm_backward(
                g.contiguous(), z, (z.shape[-1],), mean, rstd, gamma, beta, [True, True, True])
            grads_norm = (g_gamma, g_beta)
        else:
            params = rest
        grads_linear: list[torch.Tensor] = []
        for i in reversed(range(n)):
            x, (w,) = inputs[i], lowered(ctx.low, params[2 * i])
            g_low, = lowered(ctx.low, g)
            grads_linear = [g_low.t() @ F.silu(x), g.sum(0), *grads_linear]
            g = torch.ops.aten.silu_backward(g_low @ w, x)
        if n == 0 and not ctx.has_norm:
            g = g.clone()
        return (g.view(ctx.shape), None, None, None, *grads_linear, *grads_norm)
