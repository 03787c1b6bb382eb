"""GATv2 attention fused over cache-sized chunks of edges: no per-edge ``[E, B, heads, C]`` tensor in memory.

Update rule (Brody et al. 2022, PyG's ``GATv2Conv``), per sample b and head h, for edges j -> i::

    m_ij     = x_l[j] + x_r[i] + W_e x_ij                  (C channels)
    e_ij     = att . LeakyReLU(m_ij)
    alpha_ij = exp(e_ij - max_k e_ik) / (sum_k exp(e_ik - max_k e_ik) + 1e-16)
    out_i    = sum_j alpha_ij x_l[j]

The edges are sorted by target (then source) and cut into chunks of whole target nodes, each small enough
for its per-edge buffers (about ``CHUNK_VALUES`` floats each) to stay in cache. A chunk holds every edge
into its nodes, so the softmax and the aggregation complete inside it: a segment max, then sums over each
node's edges as products with the chunk's constant 0/1 CSR matrix ``S`` (target node x edge), and
``out[nodes] = S @ (alpha * x_l[src])``. Only ``alpha`` ``[E, B, heads]`` and ``out`` are kept for the
backward pass, which recomputes ``m_ij`` chunk by chunk and returns the gradients of ``x_l``, ``x_r``,
``att`` and ``W_e``. Its softmax step needs no sums over edges: ``sum_j alpha_ij dL/dalpha_ij`` is
``dL/dout_i . out_i``, one product per node.

The chunk loops run on the calling thread with one intra-op thread. A chunk's work is some twenty small
tensor operations (tens of microseconds each); with intra-op threads each one ends in a barrier of all
threads, and when another process keeps the cores busy a barrier waits for a descheduled thread's next
time slice (milliseconds). Python worker threads, one chunk range each, hand the GIL back and forth at
every operation, with the same effect. The node-sized operations around the loops (linear layers,
activations) keep the intra-op threads.

Measured on 2 cores (1 deg grid: 65,160 nodes, 586,440 edges with self loops; a hidden layer of 4 heads x
16 channels, one sample; forward + backward of the attention alone unless said otherwise):

- PyG's ``GATv2Conv``: 0.82-0.89 s. The same operations over all edges at once (the materialised path,
  as gnnddm had it): 0.7-0.8 s; a training step of the 3-layer model 0.88x PyG's.
- Chunks of 4,096 edges with 2 intra-op threads: 0.16 s on a quiet machine (16,384 edges: 0.12 s), but
  a whole training step took 3-47 s instead of 0.4 s while another process used both cores (PyG: 4-6 s).
- Chunks on 2 worker threads with one intra-op thread each: 1.25x faster than one thread on a quiet
  machine, 1.6x slower than one thread on a loaded one (0.24 against 0.15 s).
- One thread, chunks of 4,096 edges: 0.13-0.15 s (forward 46 ms, backward 85 ms), quiet or loaded
  (1,024 edges: 0.19 s, more Python per edge; 8,192 edges: 0.16 s, fewer cache hits).
- Per chunk of 4,096 x 64 values: sums over the targets as a CSR product 23 us against 130 us
  (``index_add``); ``segment_reduce`` maxima 16 us against 25 us (``scatter_reduce``).
- Sums over each head's 16 channels (logits, ``dL/dalpha``) as a matrix-vector product: 29 us against
  57 us (``sum(-1)``) per chunk.
- The softmax's backward from ``dL/dout_i . out_i`` instead of segment sums: 159 against 173 ms (backward
  on a loaded machine).
- Edges padded to the largest in-degree of a chunk (``[nodes, degree, channels]``, no gathers by target):
  no faster, its broadcasting operations are slow.
- A training step of the 3-layer model (``benchmarks/bench_gatv2.py``, quiet machine): 0.32-0.34 s
  against 0.87-0.92 s for ``GATv2Conv`` with PyTorch's huge-page allocations, steps interleaved (0.38x;
  PyG's steps run back to back take 0.65 s: 0.53x), 1.57 s without them (0.22x). The chunk loops use
  one core, which is what keeps the step from 0.5x of PyG's best.
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from gnnddm.models.execution import compute_dtype, in_float32
from gnnddm.models.graph import Graph

CHUNK_VALUES = 1 << 18
"""Values per per-edge buffer of a chunk (edges x samples x heads x channels): 1 MB in float32."""


class AttentionEdges(NamedTuple):
    """The edges attention runs over, sorted by (target, source), with the self loops when asked for.

    ``position[k]`` is the index of sorted edge k in PyG's order (the edges that are not self loops, in
    ``graph.edge_index`` order, then one loop per node), so per-edge random draws (attention dropout)
    made in that order land on the same edges as in ``GATv2Conv``.
    """

    src: torch.Tensor  # int64 [E]
    dst: torch.Tensor  # int64 [E]
    ptr: torch.Tensor  # int64 [N + 1]: the edges into node i are ptr[i]:ptr[i + 1]
    edge_attr: torch.Tensor | None  # [E, D]
    position: torch.Tensor  # int64 [E]


class Chunk(NamedTuple):
    """Edges ``e0:e1``, all those into the target nodes ``n0:n1``."""

    e0: int
    e1: int
    n0: int
    n1: int
    lengths: torch.Tensor  # int64 [n1 - n0]: edges per target node
    local: torch.Tensor  # int64 [e1 - e0]: target node of each edge, minus n0
    segments: torch.Tensor  # CSR [n1 - n0, e1 - e0]: S[i, e] = 1 where edge e enters node n0 + i


def attention_edges(graph: Graph, self_loops: bool) -> AttentionEdges:
    """The graph's edges for attention (cached). With ``self_loops``, existing self loops are replaced by
    one per node whose features are the mean of the features of the edges into that node (PyG's
    ``fill_value="mean"``)."""

    def build():
        src, dst = graph.edge_index
        n = graph.num_nodes
        attr = graph.edge_attr
        if self_loops:
            keep = src != dst
            loops = torch.arange(n, device=src.device)
            if attr is not None:
                kept = attr[keep]
                total = kept.new_zeros(n, kept.shape[1]).index_add(0, dst[keep], kept)
                count = torch.bincount(dst[keep], minlength=n).clamp(min=1).unsqueeze(1)
                attr = torch.cat([kept, total / count])
            src, dst = torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])
        position = torch.sort(dst * n + src, stable=True).indices
        src, dst = src[position], dst[position]
        attr = None if attr is None else attr[position].contiguous()
        ptr = torch.zeros(n + 1, dtype=torch.long, device=src.device)
        ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)
        return AttentionEdges(src, dst, ptr, attr, position)

    return graph.cached(f"gat_edges:{self_loops}", build)


def edge_chunks(graph: Graph, self_loops: bool, per_chunk: int, dtype: torch.dtype) -> tuple[Chunk, ...]:
    """The edges of :func:`attention_edges` in chunks of whole target nodes, about ``per_chunk`` edges each
    (a node with more edges is a chunk of its own); cached."""

    def build():
        n, ptr = graph.num_nodes, attention_edges(graph, self_loops).ptr
        cpu = ptr.cpu()
        starts = torch.searchsorted(cpu, torch.arange(0, int(cpu[-1]), per_chunk), right=True) - 1
        bounds = torch.unique(torch.cat([starts, torch.tensor([0, n])])).tolist()
        chunks = []
        for n0, n1 in zip(bounds[:-1], bounds[1:], strict=True):
            e0, e1 = int(cpu[n0]), int(cpu[n1])
            segments = torch.sparse_csr_tensor(  # 32-bit indices: the CPU product copies 64-bit ones per call
                (ptr[n0:n1 + 1] - e0).int(), torch.arange(e1 - e0, dtype=torch.int32, device=ptr.device),
                torch.ones(e1 - e0, dtype=dtype, device=ptr.device), size=(n1 - n0, e1 - e0),
                check_invariants=False,
            )
            lengths = torch.diff(ptr[n0:n1 + 1])
            local = torch.repeat_interleave(torch.arange(n1 - n0, device=ptr.device), lengths)
            chunks.append(Chunk(e0, e1, n0, n1, lengths, local, segments))
        return tuple(chunks)

    return graph.cached(f"gat_chunks:{self_loops}:{per_chunk}:{dtype}", build)


def gatv2_attention(
    x_l: torch.Tensor,
    x_r: torch.Tensor,
    att: torch.Tensor,
    graph: Graph,
    self_loops: bool = True,
    w_edge: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    dropout: float = 0.0,
) -> torch.Tensor:
    """``out_i = sum_j alpha_ij x_l[j]`` with GATv2 attention (see the module docstring).

    Parameters
    ----------
    x_l, x_r : float [N, B, heads, C]
        Source and target projections (the same tensor when the weights are shared).
    att : float [heads, C]
    graph : Graph
    self_loops : bool
        Replace the graph's self loops by one per node (features: the mean of the node's incoming edges).
    w_edge : float [heads*C, D] or None
        Projection of ``graph.edge_attr`` into the logits; None: no edge term. The edge features get no
        gradient.
    negative_slope : float
    dropout : float
        Probability of zeroing an attention weight (the others scaled by ``1 / (1 - dropout)``), drawn in
        PyG's edge order; 0 outside training.

    Returns
    -------
    float [N, B, heads, C]
    """
    n, b, heads, c = x_l.shape
    edges = attention_edges(graph, self_loops)
    if x_l.device.type == "cpu":
        per_chunk = max(1, CHUNK_VALUES // (b * heads * c))
        per_chunk = 1 << (per_chunk.bit_length() - 1)  # a power of two: few cached chunkings
    else:  # an accelerator runs the whole graph as one chunk
        per_chunk = max(1, edges.src.shape[0])
    # the kernel runs in float32 under autocast (in_float32), and its chunks' segment sums with it
    chunks = edge_chunks(graph, self_loops, per_chunk, x_l.dtype if compute_dtype(x_l) is None else torch.float32)
    edge_attr = None if w_edge is None or edges.edge_attr is None else edges.edge_attr
    keep = None  # the factor of each attention weight, as F.dropout draws it on [E, B, heads]
    if dropout >= 1:
        keep = x_l.new_zeros(edges.src.shape[0], b, heads)
    elif dropout > 0:
        keep = x_l.new_empty(edges.src.shape[0], b, heads).bernoulli_(1 - dropout)
        keep = keep.div_(1 - dropout)[edges.position]
    return _Attention.apply(
        x_l, x_r, att, None if edge_attr is None else w_edge, edges, chunks, edge_attr, keep, negative_slope
    )


class _Attention(torch.autograd.Function):
    """Forward: chunk by chunk, logits, softmax and aggregation. Backward: the same chunks, recomputed."""

    @staticmethod
    @in_float32
    def forward(ctx, x_l, x_r, att, w_edge, edges, chunks, edge_attr, keep, slope):
        n, b, heads, c = x_l.shape
        xl2, xr2 = x_l.reshape(n, -1), x_r.reshape(n, -1)
        out = x_l.new_empty(n, b * heads * c)
        alpha = x_l.new_empty(edges.src.shape[0], b * heads)
        att_flat, ones = att.reshape(-1).repeat(b), att.new_ones(c)
        with _one_thread(x_l):
            for ch in chunks:
                src, k = edges.src[ch.e0:ch.e1], ch.e1 - ch.e0
                ea = None if edge_attr is None else edge_attr[ch.e0:ch.e1]
                xj, m = _preactivation(xl2, xr2, src, edges.dst[ch.e0:ch.e1], ea, w_edge, b)
                logits = _channel_sums(F.leaky_relu_(m, slope).mul_(att_flat), ones, k)
                a = _segment_softmax(logits, ch, alpha[ch.e0:ch.e1])
                if keep is not None:
                    a = a * keep[ch.e0:ch.e1].view(k, -1)
                torch.mm(ch.segments, xj.view(k * b, heads, c).mul_(a.view(k * b, heads, 1)).view(k, -1),
                         out=out[ch.n0:ch.n1])
        ctx.save_for_backward(x_l, x_r, att, w_edge, edge_attr, alpha, keep, out)
        ctx.edges, ctx.chunks, ctx.slope = edges, chunks, slope
        return out.view(n, b, heads, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_l, x_r, att, w_edge, edge_attr, alpha, keep, out = ctx.saved_tensors
        edges, slope = ctx.edges, ctx.slope
        n, b, heads, c = x_l.shape
        hc = heads * c
        xl2, xr2 = x_l.reshape(n, -1), x_r.reshape(n, -1)
        go2 = grad_out.reshape(n, -1)
        att_rows = torch.block_diag(*att.unbind(0))  # [heads, heads*C]: dlogits @ att_rows spreads them
        ones = att.new_ones(c)
        # sum_j alpha_ij dL/dalpha_ij = grad_out_i . out_i (per head): the softmax's backward needs no
        # segment sums
        weighted = (go2 * out).view(n, b * heads, c).sum(-1)
        grad_xl, grad_xr = torch.zeros_like(xl2), torch.empty_like(xr2)  # the chunks' targets cover all nodes
        grad_att = att.new_zeros(heads, hc)  # its diagonal blocks are the gradient of att
        grad_w = None if edge_attr is None else w_edge.new_zeros(w_edge.shape[1], hc)
        with _one_thread(x_l):
            for ch in ctx.chunks:
                src, dst, k = edges.src[ch.e0:ch.e1], edges.dst[ch.e0:ch.e1], ch.e1 - ch.e0
                ea = None if edge_attr is None else edge_attr[ch.e0:ch.e1]
                xj, m = _preactivation(xl2, xr2, src, dst, ea, w_edge, b)
                a = alpha[ch.e0:ch.e1]
                a_used = a if keep is None else a * keep[ch.e0:ch.e1].view(k, -1)
                go = go2.index_select(0, dst)
                da = _channel_sums(go * xj, ones, k)  # d loss / d alpha (after dropout)
                if keep is not None:
                    da = da.mul_(keep[ch.e0:ch.e1].view(k, -1))
                dlogits = da.sub_(weighted.index_select(0, dst)).mul_(a).view(k * b, heads)
                dm = torch.ops.aten.leaky_relu_backward((dlogits @ att_rows).view(k, -1), m, slope, False)
                grad_att.addmm_(dlogits.T, F.leaky_relu_(m, slope).view(k * b, hc))
                torch.mm(ch.segments, dm, out=grad_xr[ch.n0:ch.n1])
                if ea is not None:
                    grad_w.addmm_(ea.T, dm if b == 1 else dm.view(k, b, hc).sum(1))
                dm.view(k * b, heads, c).addcmul_(go.view(k * b, heads, c), a_used.view(k * b, heads, 1))
                grad_xl.index_add_(0, src, dm)  # + the message's gradient, above
        grad_att = torch.diagonal(grad_att.view(heads, heads, c), dim1=0, dim2=1).T
        return (grad_xl.view_as(x_l), grad_xr.view_as(x_r), grad_att, None if grad_w is None else grad_w.T,
                None, None, None, None, None)


def _channel_sums(values: torch.Tensor, ones: torch.Tensor, k: int) -> torch.Tensor:
    """``[k, B*heads]``: sums of ``values [k, B*heads*C]`` over each head's C channels, as a matrix-vector
    product (twice as fast as ``sum(-1)`` over so short rows)."""
    return torch.mv(values.view(-1, ones.shape[0]), ones).view(k, -1)


def _preactivation(xl2, xr2, src, dst, edge_attr, w_edge, b):
    """``x_l[src]`` ``[k, B*heads*C]`` and ``m = x_l[src] + x_r[dst] + W_e x`` (a new tensor)."""
    xj = xl2.index_select(0, src)
    m = xr2.index_select(0, dst).add_(xj)
    if edge_attr is not None:
        if b == 1:
            m.addmm_(edge_attr, w_edge.T)
        else:
            m.view(src.shape[0], b, -1).add_((edge_attr @ w_edge.T).unsqueeze(1))
    return xj, m


def _segment_softmax(logits: torch.Tensor, ch: Chunk, out: torch.Tensor) -> torch.Tensor:
    """Softmax of ``logits [k, B*heads]`` over the edges of each target node of ``ch``, into ``out``, as
    PyG's ``softmax`` (``exp(x - max) / (sum exp(x - max) + 1e-16)``)."""
    top = torch.segment_reduce(logits, "max", lengths=ch.lengths)
    ex = logits.sub_(top.index_select(0, ch.local)).exp_()
    total = torch.mm(ch.segments, ex).add_(1e-16)
    return torch.div(ex, total.index_select(0, ch.local), out=out)


@functools.cache
def _per_thread_intra_op() -> bool:
    """Whether the intra-op thread count can change at any time and per thread (the OpenMP backend)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


@contextlib.contextmanager
def _one_thread(x: torch.Tensor):
    """The chunk loops run on the calling thread alone (CPU): their operations are small, and with
    intra-op threads each would end in a barrier of all threads (see the module docstring)."""
    threads = torch.get_num_threads()
    if threads == 1 or x.device.type != "cpu" or not _per_thread_intra_op():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
