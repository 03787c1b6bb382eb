"""Properties every architecture must have: the contract used by the training loop and the DD algorithms."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gnnddm.errors import ConfigError
from gnnddm.models.gatv2 import GATv2
from gnnddm.models.gcn import GCN
from gnnddm.models.graph import prepare_graph
from gnnddm.models.interaction import InteractionNetwork
from gnnddm.models.sage import GraphSAGE
from gnnddm.testing.gallery import model_graph

MODELS = {"gcn": GCN, "sage": GraphSAGE, "gatv2": GATv2, "interaction": InteractionNetwork}
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
F_IN, F_OUT, EDGE_DIM = 5, 3, 3


def make(name, **kw):
    torch.manual_seed(0)
    kw = {"hidden": 8, "layers": 2, **kw}
    if name == "gcn":
        kw.setdefault("use_edge_weight", True)
    return MODELS[name](F_IN, F_OUT, edge_dim=EDGE_DIM, **kw)


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes_batched_and_unbatched(name, grid):
    model, graph = make(name), model_graph(grid)
    x = torch.randn(3, 32, F_IN)
    out = model(x, graph)
    assert out.shape == (3, 32, F_OUT)
    # the unbatched call gives the same result as the matching sample of the batch
    torch.testing.assert_close(model(x[1], graph), out[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_permutation_equivariance(name, grid):
    model, graph = make(name), model_graph(grid)
    x = torch.randn(2, 32, F_IN)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(1))
    inv = torch.argsort(perm)  # new id of old node k is inv[k]
    permuted = prepare_graph(
        inv[grid["edge_index"]], 32, edge_attr=grid["edge_attr"], edge_weight=grid["edge_weight"]
    )
    out = model(x, graph)
    out_p = model(x[:, perm], permuted)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("layers", [1, 3])
def test_receptive_field_is_num_message_passing_layers(name, layers):
    n = 11
    path = torch.arange(n - 1)
    ei = torch.cat([torch.stack([path, path + 1]), torch.stack([path + 1, path])], dim=1)
    graph = prepare_graph(ei, n, edge_attr=torch.randn(ei.shape[1], EDGE_DIM), edge_weight=torch.ones(ei.shape[1]))
    model = make(name, layers=layers)
    # the halo needed for exact outputs: L hops of features, plus one for GCN, whose normalisation reads
    # the degree of each message's source (tested on subdomains in tests/ddm/test_objective.py)
    assert model.num_message_passing_layers == layers + (1 if name == "gcn" else 0)
    x = torch.randn(n, F_IN)
    x2 = x.clone()
    x2[0] += 1.0
    changed = (model(x2, graph) - model(x, graph)).abs().amax(dim=1)
    assert bool((changed[: layers + 1] > 1e-6).all()), changed
    assert bool((changed[layers + 1 :] == 0).all()), changed


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name, grid):
    model, graph = make(name), model_graph(grid)
    model(torch.randn(2, 32, F_IN), graph).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS)
def test_deterministic(name, grid):
    x = torch.randn(2, 32, F_IN)
    outs = [make(name)(x, model_graph(grid)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])


def test_interaction_network_without_edge_features(grid):
    grid = {**grid, "edge_attr": None}
    model = InteractionNetwork(F_IN, F_OUT, edge_dim=0, hidden=8, layers=2)
    model(torch.randn(2, 32, F_IN), model_graph(grid)).sum().backward()
    assert model.edge_latent.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_config_instantiates_the_model(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert next(iter(cfg)) == "_target_"
    model = instantiate(cfg)(in_channels=F_IN, out_channels=F_OUT, edge_dim=EDGE_DIM)
    assert isinstance(model, MODELS[name])
    assert model.num_message_passing_layers == cfg.layers + (1 if name == "gcn" else 0)


@pytest.mark.parametrize("name", MODELS)
def test_bad_hyper_parameters_name_the_key(name):
    with pytest.raises(ConfigError, match="model.hidden"):
        MODELS[name](F_IN, F_OUT, hidden=0)
    with pytest.raises(ConfigError, match="model.layers"):
        MODELS[name](F_IN, F_OUT, layers=0)
