"""The batched GATv2 layer is the PyG GATv2Conv update rule, sample by sample."""

import pytest
import torch
from torch_geometric.nn import GATv2Conv

from gnnddm.errors import ConfigError
from gnnddm.gallery import model_graph
from gnnddm.models.gatv2 import GATv2, gatv2_layer


@pytest.mark.parametrize("edge_dim", [None, 3])
@pytest.mark.parametrize("concat", [True, False])
def test_batched_layer_equals_pyg_gatv2conv(grid, edge_dim, concat):
    torch.manual_seed(0)
    conv = GATv2Conv(5, 4, heads=2, concat=concat, edge_dim=edge_dim)
    torch.nn.init.normal_(conv.bias)
    graph = model_graph(grid)
    x = torch.randn(3, 32, 5)
    fast = gatv2_layer(conv, x.transpose(0, 1), graph).transpose(0, 1)
    ea = grid["edge_attr"] if edge_dim else None
    ref = torch.stack([conv(x[b], grid["edge_index"], ea) for b in range(3)])
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_hidden_not_divisible_by_heads_names_the_key():
    with pytest.raises(ConfigError, match="model.hidden"):
        GATv2(3, 2, hidden=10, heads=4)
