"""The fast GCN layer is the PyG GCNConv update rule, with and without edge weights."""

import pytest
import torch
from torch_geometric.nn import GCNConv

from gnnddm.errors import ConfigError
from gnnddm.models.gcn import GCN, gcn_layer
from gnnddm.models.graph import prepare_graph
from gnnddm.testing.gallery import model_graph


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("f_in,f_out", [(5, 7), (7, 3)])
def test_fast_layer_equals_pyg_gcnconv(grid, weighted, f_in, f_out):
    torch.manual_seed(0)
    conv = GCNConv(f_in, f_out)
    torch.nn.init.normal_(conv.bias)
    graph = model_graph(grid)
    x = torch.randn(3, 32, f_in, requires_grad=True)
    fast = gcn_layer(conv, x.transpose(0, 1), graph, use_edge_weight=weighted).transpose(0, 1)
    ew = grid["edge_weight"] if weighted else None
    ref = torch.stack([conv(x[b], grid["edge_index"], ew) for b in range(3)])
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    inputs = [x, *conv.parameters()]
    w = torch.randn_like(ref)
    for g_fast, g_ref in zip(
        torch.autograd.grad((fast * w).sum(), inputs), torch.autograd.grad((ref * w).sum(), inputs), strict=True
    ):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-5)


def test_edge_weights_requested_but_missing_names_the_key(grid):
    graph = prepare_graph(grid["edge_index"], 32)
    with pytest.raises(ConfigError, match="model.use_edge_weight"):
        GCN(5, 2, use_edge_weight=True)(torch.randn(32, 5), graph)
