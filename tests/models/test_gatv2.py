"""The batched GATv2 layer is the PyG GATv2Conv update rule, sample by sample: outputs and gradients."""

import pytest
import torch
from torch_geometric.nn import GATv2Conv

from gnnddm.errors import ConfigError
from gnnddm.models import attention
from gnnddm.models.attention import gatv2_attention
from gnnddm.models.gatv2 import GATv2, gatv2_layer
from gnnddm.models.graph import prepare_graph
from gnnddm.testing.gallery import model_graph


def irregular_graph(n: int = 40, edges: int = 160, edge_dim: int = 3, seed: int = 0):
    """Random directed edges: uneven in-degrees, a few self loops, and 4 nodes that receive no edge."""
    gen = torch.Generator().manual_seed(seed)
    ei = torch.stack([torch.randint(0, n, (edges,), generator=gen), torch.randint(0, n - 4, (edges,), generator=gen)])
    ei = torch.unique(ei, dim=1)
    return prepare_graph(ei, n, edge_attr=torch.randn(ei.shape[1], edge_dim, generator=gen))


@pytest.fixture(params=["one chunk", "many chunks"])
def chunking(request, monkeypatch):
    """The whole graph in one chunk, or chunks of a few edges (a few target nodes) each."""
    if request.param == "many chunks":
        monkeypatch.setattr(attention, "CHUNK_VALUES", 64)
    return request.param


def pyg(conv, x, graph):
    """``conv`` applied sample by sample to ``x [B, N, F]`` on the graph's ``edge_index``."""
    edge_attr = graph.edge_attr if conv.lin_edge is not None else None
    return torch.stack([conv(x[b], graph.edge_index, edge_attr) for b in range(x.shape[0])])


def ours(conv, x, graph):
    return gatv2_layer(conv, x.transpose(0, 1), graph).transpose(0, 1)


def output_and_gradients(layer, conv, x, graph):
    """The output, and the gradients of the input and of every parameter of a fixed weighted sum of it."""
    x = x.clone().requires_grad_()
    conv.zero_grad()
    out = layer(conv, x, graph)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    return {"output": out.detach(), "input": x.grad} | {name: p.grad.clone() for name, p in conv.named_parameters()}


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


OPTIONS = {
    "edge features": dict(edge_dim=3),
    "mean of heads": dict(edge_dim=3, concat=False),
    "shared weights, residual": dict(share_weights=True, residual=True),
    "no self loops": dict(edge_dim=3, add_self_loops=False),
    "slope 0.5, no bias": dict(edge_dim=3, negative_slope=0.5, bias=False),
}


@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_outputs_and_gradients_equal_pyg(samples, options, chunking):
    torch.manual_seed(0)
    conv = GATv2Conv(5, 4, heads=3, **options)
    if conv.bias is not None:
        torch.nn.init.normal_(conv.bias)
    graph = irregular_graph()
    x = torch.randn(samples, graph.num_nodes, 5)
    got, want = output_and_gradients(ours, conv, x, graph), output_and_gradients(pyg, conv, x, graph)
    assert got.keys() == want.keys()
    for name in want:
        scale = want[name].abs().max()
        torch.testing.assert_close(got[name], want[name], atol=1e-5 * scale, rtol=1e-5, msg=name)


def test_attention_dropout_draws_the_same_weights_as_pyg(chunking):
    torch.manual_seed(0)
    conv = GATv2Conv(5, 4, heads=3, edge_dim=3, dropout=0.4).train()
    graph = irregular_graph()
    x = torch.randn(1, graph.num_nodes, 5)
    torch.manual_seed(7)
    got = output_and_gradients(ours, conv, x, graph)
    torch.manual_seed(7)
    want = output_and_gradients(pyg, conv, x, graph)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5 * want[name].abs().max(), rtol=1e-5, msg=name)
    # without dropout the output differs: weights were dropped
    assert not torch.allclose(ours(conv.eval(), x, graph), got["output"], atol=1e-3)


def test_attention_gradients_pass_gradcheck(chunking):
    graph = irregular_graph(n=14, edges=40, edge_dim=2).astype(torch.float64)
    gen = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    x_l, x_r, att, w_edge = leaf(14, 2, 2, 3), leaf(14, 2, 2, 3), leaf(2, 3), leaf(6, 2)
    assert torch.autograd.gradcheck(
        lambda xl, xr, a, w: gatv2_attention(xl, xr, a, graph, w_edge=w, negative_slope=0.3),
        (x_l, x_r, att, w_edge),
    )


def test_gradients_are_reproducible(monkeypatch):
    monkeypatch.setattr(attention, "CHUNK_VALUES", 256)
    torch.manual_seed(0)
    conv = GATv2Conv(5, 8, heads=4, edge_dim=3)
    graph = irregular_graph(n=400, edges=3000)
    x = torch.randn(2, 400, 5)
    first, second = (output_and_gradients(ours, conv, x, graph) for _ in range(2))
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_inference_mode_gives_the_no_grad_output(monkeypatch):
    monkeypatch.setattr(attention, "CHUNK_VALUES", 256)
    torch.manual_seed(0)
    model, graph = GATv2(5, 2, edge_dim=3, hidden=8, heads=2), irregular_graph(n=400, edges=3000)
    x = torch.randn(2, 400, 5)
    with torch.no_grad():
        want = model(x, graph)
    with torch.inference_mode():
        got = model(x, graph)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_self_loop_fill_other_than_mean_is_refused(grid):
    conv = GATv2Conv(5, 4, heads=2, edge_dim=3, fill_value=0.0)
    with pytest.raises(NotImplementedError, match="fill_value"):
        gatv2_layer(conv, torch.randn(32, 1, 5), model_graph(grid))


def test_hidden_not_divisible_by_heads_names_the_key():
    with pytest.raises(ConfigError, match="model.hidden"):
        GATv2(3, 2, hidden=10, heads=4)
