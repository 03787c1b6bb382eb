"""Sparse aggregation: forward and backward equal the dense products."""

import pytest
import torch

from gnnddm.models.common import adjacency, scatter_sum, spmm
from gnnddm.models.graph import prepare_graph
from gnnddm.testing.gallery import model_graph


def test_spmm_and_its_backward_match_dense_matrices():
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 20, (2, 90), generator=gen)
    ei = torch.unique(ei, dim=1)  # a directed graph without duplicate edges: A is not symmetric
    graph = prepare_graph(ei, 20)
    dense = torch.zeros(20, 20)
    dense[ei[1], ei[0]] = 1.0
    for aggr, ref in [("sum", dense), ("mean", dense / dense.sum(1, keepdim=True).clamp(min=1))]:
        h = torch.randn(20, 2, 3, requires_grad=True)
        out = spmm(h, adjacency(graph, aggr))
        torch.testing.assert_close(out, torch.einsum("ij,jbf->ibf", ref, h))
        w = torch.randn_like(out)
        (grad,) = torch.autograd.grad((out * w).sum(), h)
        torch.testing.assert_close(grad, torch.einsum("ij,ibf->jbf", ref, w))


def test_scatter_sum_adds_edge_values_into_targets():
    graph = prepare_graph(torch.tensor([[0, 1, 2], [2, 2, 0]]), 3)
    values = torch.tensor([[1.0], [2.0], [4.0]])  # in the graph's sorted order: edges 2->0, 0->2, 1->2
    torch.testing.assert_close(scatter_sum(values, graph), torch.tensor([[1.0], [0.0], [6.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cols", [1, 4, 64])
def test_the_in_place_sparse_product_is_bitwise_the_out_of_place_one(dtype, cols, grid):
    """``sparse_product`` (a fresh buffer, ``addmm_`` with beta 0) is ``a @ x`` to the last bit, whatever the
    buffer held: a buffer of NaNs left behind by a freed tensor does not leak in."""
    from gnnddm.models.graph import sparse_product

    graph = model_graph(grid).astype(dtype)
    a, a_t = adjacency(graph, "mean")
    for _ in range(3):
        torch.full((graph.num_nodes, cols), float("nan"), dtype=dtype)  # freed: its memory may be reused
        x = torch.randn(graph.num_nodes, cols, dtype=dtype)
        assert torch.equal(sparse_product(a, x), a @ x)
        assert torch.equal(sparse_product(a_t, x), a_t @ x)
