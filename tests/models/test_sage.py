"""The fast SAGE layer is the PyG SAGEConv update rule, forward and backward."""

import pytest
import torch
from torch_geometric.nn import SAGEConv

from gnnddm.errors import ConfigError
from gnnddm.models.sage import GraphSAGE, sage_layer
from gnnddm.testing.gallery import model_graph


@pytest.mark.parametrize("aggr", ["mean", "sum"])
@pytest.mark.parametrize("f_in,f_out", [(5, 7), (7, 3)])  # aggregate-first and project-first branches
@pytest.mark.parametrize("relu", [False, True])
def test_fast_layer_equals_pyg_sageconv(grid, aggr, f_in, f_out, relu):
    torch.manual_seed(0)
    conv = SAGEConv(f_in, f_out, aggr=aggr)
    graph = model_graph(grid)
    x = torch.randn(3, 32, f_in, requires_grad=True)
    fast = sage_layer(conv, x.transpose(0, 1), graph, relu=relu).transpose(0, 1)
    ref = torch.stack([conv(x[b], grid["edge_index"]) for b in range(3)])
    ref = ref.relu() if relu else ref
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(ref)
    inputs = [x, *conv.parameters()]
    for g_fast, g_ref in zip(
        torch.autograd.grad((fast * w).sum(), inputs), torch.autograd.grad((ref * w).sum(), inputs), strict=True
    ):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)


def test_unknown_aggregation_names_the_key():
    with pytest.raises(ConfigError, match="model.aggr"):
        GraphSAGE(3, 2, aggr="max")


def test_backward_accepts_broadcast_gradients(grid):
    # ``out.sum().backward()`` hands the layer a zero-stride gradient
    torch.manual_seed(0)
    conv = SAGEConv(5, 3)
    x = torch.randn(32, 5, requires_grad=True)
    (g_fast,) = torch.autograd.grad(sage_layer(conv, x.unsqueeze(1), model_graph(grid)).sum(), x)
    (g_ref,) = torch.autograd.grad(conv(x, grid["edge_index"]).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)
