"""The graph a model is applied to, prepared once and reused every step.

Models receive a :class:`Graph` rather than a bare ``edge_index`` so that the sparse CSR adjacency (the
fast aggregation path: one sparse-dense product instead of materialised per-edge messages) and the sorted
edge features are built once per (sub)graph, not once per forward pass. A model knows nothing about where
the graph came from: the full graph, a subdomain with its overlap, or a coarse graph.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

# CSR tensors are stable for the operations used here (matmul with a dense matrix, transfers).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class Transpose(NamedTuple):
    """The CSR structure of ``adj.T`` (rows = sources) and how edge values map onto it.

    ``adj_t[j, i] = 1`` for every edge j -> i. ``perm[k]`` is the index, in the (target-sorted) edge list,
    of the k-th stored entry of ``adj_t``, so any per-edge values ``w`` become the values of the
    transposed matrix as ``w[perm]``. The backward pass of a sparse-dense product ``A @ h`` is
    ``A.T @ grad``; holding the transpose avoids re-sorting the edges on every backward pass.
    """

    adj_t: torch.Tensor
    perm: torch.Tensor


def csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """The ``[n, n]`` CSR matrix, with 32-bit indices when they fit: the CPU sparse-dense product works on
    32-bit indices and otherwise copies the two index arrays at every call (12.8 ms of a 72 ms product
    at 0.25 deg, 8.3 M edges)."""
    if col.numel() < 2**31 - 1 and n < 2**31 - 1:
        crow, col = crow.to(torch.int32), col.to(torch.int32)
    return torch.sparse_csr_tensor(crow, col, values, size=(n, n), check_invariants=False)


def sparse_product(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``a @ x`` for a CSR ``a`` [R, C] and a dense, contiguous ``x`` [C, K], bitwise the same.

    On a CPU it is computed in place into a fresh buffer (``addmm_`` with beta 0, which reads nothing of
    the buffer): MKL's out-of-place product does more than the product (0.0567 s in place against 0.0895 s
    for ``[1,038,240, 64]`` on 2 cores: ``benchmarks/bench_sparse_product.py``).
    """
    if x.device.type != "cpu":
        return a @ x
    return torch.empty(a.shape[0], x.shape[1], dtype=x.dtype).addmm_(a, x, beta=0)


@dataclass(frozen=True, eq=False)
class Graph:
    """A directed graph with edges sorted by target node, then source node.

    Attributes
    ----------
    edge_index : int64 [2, E]
        ``edge_index[0]`` = source j, ``edge_index[1]`` = target i (message j -> i), sorted by (i, j).
    num_nodes : int
    edge_attr : float32 [E, F] or None
        Edge features, in the same (sorted) order as ``edge_index``.
    edge_weight : float32 [E] or None
    adj : sparse CSR float32 [N, N]
        ``adj[i, j] = 1`` for every edge j -> i, so ``adj @ h`` sums the neighbours' features.
    in_degree : float32 [N]
        Number of incoming edges of each node. A subgraph that stands for part of a larger graph (a
        subdomain with a one-hop halo) may give the larger graph's degrees instead (see ``in_weight``).
    in_weight : float32 or float64 [N] or None
        Sum of the weights of the incoming edges when it differs from what ``edge_weight`` shows (the
        larger graph's weighted degree); None: computed from the edges.

    Quantities that models derive from the topology (the transpose, normalised adjacency values) are
    built on first use and cached on the graph (:meth:`cached`), so they too are computed once per graph.
    """

    edge_index: torch.Tensor
    num_nodes: int
    edge_attr: torch.Tensor | None
    edge_weight: torch.Tensor | None
    adj: torch.Tensor
    in_degree: torch.Tensor
    in_weight: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def cached(self, key: str, build):
        """``build()`` on first call for ``key``, the stored result afterwards."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def transpose(self) -> Transpose:
        """The CSR transpose of :attr:`adj` and the edge permutation onto it (cached)."""
        return self.cached("transpose", self._build_transpose)

    def _build_transpose(self) -> Transpose:
        n = self.num_nodes
        src, dst = self.edge_index
        perm = torch.argsort(src * n + dst)
        crow = torch.zeros(n + 1, dtype=torch.long, device=src.device)
        crow[1:] = torch.cumsum(torch.bincount(src, minlength=n), 0)
        adj_t = csr(crow, dst[perm], torch.ones(perm.shape[0], dtype=self.adj.dtype, device=src.device), n)
        return Transpose(adj_t=adj_t, perm=perm)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device) -> Graph:
        return self._mapped(lambda t: t.to(device), index=lambda t: t.to(device))

    def astype(self, dtype: torch.dtype) -> Graph:
        """The same graph with its floating-point tensors in ``dtype`` (float64 checks); the topology and
        the integer tensors are shared."""
        return self._mapped(lambda t: t.to(dtype))

    def _mapped(self, values, index=lambda t: t) -> Graph:
        """A new graph with ``values`` applied to the valued tensors and ``index`` to ``edge_index``."""

        def opt(t):
            return None if t is None else values(t)

        return Graph(
            edge_index=index(self.edge_index),
            num_nodes=self.num_nodes,
            edge_attr=opt(self.edge_attr),
            edge_weight=opt(self.edge_weight),
            adj=values(self.adj),
            in_degree=values(self.in_degree),
            in_weight=opt(self.in_weight),
        )


def prepare_graph(edge_index, num_nodes: int, edge_attr=None, edge_weight=None, in_degree=None,
                  in_weight=None) -> Graph:
    """Sort the edges by (target, source) and build the CSR adjacency.

    Parameters
    ----------
    edge_index : int array or tensor [2, E]
    num_nodes : int
    edge_attr : array or tensor [E, F], optional
    edge_weight : array or tensor [E], optional
    in_degree, in_weight : array or tensor [N], optional
        Node degrees of the larger graph this one is a piece of (default: counted from the edges).
    """
    ei = torch.as_tensor(np.asarray(edge_index) if not torch.is_tensor(edge_index) else edge_index)
    ei = ei.to(torch.long)
    src, dst = ei[0], ei[1]
    order = torch.argsort(dst * num_nodes + src)
    src, dst = src[order], dst[order]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    adj = csr(crow, src, torch.ones(src.shape[0]), num_nodes)

    def sort(t):
        if t is None:
            return None
        t = torch.as_tensor(np.asarray(t) if not torch.is_tensor(t) else t, dtype=torch.float32)
        return t[order].contiguous()

    return Graph(
        edge_index=torch.stack([src, dst]),
        num_nodes=int(num_nodes),
        edge_attr=sort(edge_attr),
        edge_weight=sort(edge_weight),
        adj=adj,
        in_degree=torch.diff(crow).to(torch.float32) if in_degree is None else _floats(in_degree),
        in_weight=None if in_weight is None else _floats(in_weight),
    )


def _floats(values) -> torch.Tensor:
    """float32 values, or float64 when given in float64 (sums of weights keep their precision)."""
    t = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    return t if t.dtype == torch.float64 else t.to(torch.float32)
