"""The depth hierarchy of residual networks: steps per layer, coarse networks, restriction and prolongation."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from gnnddm.ddm.depth import coarsen_depth, depth_hierarchy, depth_levels_allowed
from gnnddm.errors import ConfigError
from gnnddm.models.common import scatter_sum
from gnnddm.models.encode_process_decode import EncodeProcessDecode
from gnnddm.models.gcn import GCN
from gnnddm.models.graph import prepare_graph
from gnnddm.models.interaction import InteractionNetwork
from gnnddm.models.sage import GraphSAGE, sage_layer
from gnnddm.testing.gallery import model_graph

F_IN, F_OUT, EDGE_DIM = 5, 3, 3
GRID, MESH = 8, 6  # the joint graph of EncodeProcessDecode
KINDS = ("constant", "linear")


def joint_graph():
    """8 grid and 6 mesh nodes: grid g -> mesh near g, the mesh a path (both directions), every grid node
    decoded from 3 consecutive mesh nodes; edge features 3 random columns and the one-hot kind."""
    m = [GRID + i for i in range(MESH)]
    near = [g * (MESH - 1) // (GRID - 1) for g in range(GRID)]
    enc = [(g, m[near[g]]) for g in range(GRID)]
    proc = [(m[i], m[i + 1]) for i in range(MESH - 1)]
    proc += [(b, a) for a, b in proc]
    dec = [(m[min(max(near[g] - 1, 0), MESH - 3) + t], g) for g in range(GRID) for t in range(3)]
    kind = torch.tensor([0] * len(enc) + [1] * len(proc) + [2] * len(dec))
    attr = torch.cat([torch.randn(len(kind), 3, generator=torch.Generator().manual_seed(0)),
                      F.one_hot(kind, 3).float()], dim=1)
    return prepare_graph(torch.tensor(enc + proc + dec).T, GRID + MESH, edge_attr=attr)


def make(name):
    """``(model, graph, x)`` in float64."""
    torch.manual_seed(0)
    if name.startswith("sage"):
        model, graph = GraphSAGE(F_IN, F_OUT, hidden=8, layers=int(name[4:]), residual=True), model_graph()
    elif name == "interaction":
        model, graph = InteractionNetwork(F_IN, F_OUT, edge_dim=EDGE_DIM, hidden=8, layers=4), model_graph()
    else:
        model, graph = EncodeProcessDecode(F_IN, F_OUT, EDGE_DIM + 3, hidden=8, processor_layers=3), joint_graph()
    x = torch.randn(2, graph.num_nodes, F_IN, dtype=torch.float64)
    return model.double(), graph.astype(torch.float64), x


MODELS = ("sage6", "sage8", "interaction", "epd")


def params(model):
    return [p for p in model.parameters() if p.requires_grad]


def flat(model):
    return parameters_to_vector(params(model)).detach()


def dense(transfer, kind):
    """The prolongation as a dense matrix [P_fine, P_coarse], column by column."""
    eye = torch.eye(transfer.num_coarse, dtype=torch.float64)
    return torch.stack([transfer.prolong(e, kind) for e in eye], dim=1)


# ------------------------------------------------------------------------------------------- steps
def test_unit_steps_are_todays_graphsage_bit_for_bit():
    model, graph, x = make("sage6")
    h = x.transpose(0, 1)
    for k, conv in enumerate(model.convs):  # the residual GraphSAGE as it was written before the steps
        out = sage_layer(conv, h, graph, relu=k < model.num_layers - 1)
        h = out + h if conv.in_channels == conv.out_channels else out
    assert model.layer_steps == [1.0] * 6 and model.residual_layers() == [1, 2, 3, 4]
    assert torch.equal(model(x, graph), h.transpose(0, 1))


def test_unit_steps_are_todays_interaction_network_bit_for_bit():
    model, graph, x = make("interaction")
    src, dst = graph.edge_index
    h, e = model.encode(x.transpose(0, 1), graph)
    for block in model.blocks:  # InteractionBlock.forward as it was written before the steps
        w_e, w_s, w_d = block.edge_mlp[0].weight.chunk(3, dim=1)
        pre = F.linear(h, w_s).index_select(0, src) + F.linear(h, w_d).index_select(0, dst)
        if e.stride(0) == 0:
            pre = pre + F.linear(e[:1], w_e, block.edge_mlp[0].bias)
        else:
            pre = pre + F.linear(e, w_e, block.edge_mlp[0].bias)
        for layer in list(block.edge_mlp)[1:]:
            pre = layer(pre)
        e = e + pre
        h = h + block.node_mlp(torch.cat([h, scatter_sum(e, graph)], dim=-1))
    assert model.layer_steps == [1.0] * 4 and model.residual_layers() == [0, 1, 2, 3]
    assert torch.equal(model(x, graph), model.decode((h, e), graph).transpose(0, 1))


@pytest.mark.parametrize("name", MODELS)
def test_steps_scale_the_residual_updates(name):
    """Steps back at 1 give the same bits; a step of 0 makes a residual layer the identity, i.e. the model
    without those layers, bit for bit; any other step changes the output."""
    model, graph, x = make(name)
    base = model(x, graph)
    layers = model.residual_layers()
    model.layer_steps[layers[1]] = 0.5
    assert not torch.allclose(model(x, graph), base)
    model.layer_steps[layers[1]] = 1.0
    assert torch.equal(model(x, graph), base)

    for k in layers[1::2]:
        model.layer_steps[k] = 0.0
    out = model(x, graph)
    model.keep_layers([k for k in range(model.num_layers) if k not in layers[1::2]])
    assert torch.equal(model(x, graph), out)


# ------------------------------------------------------------------------------------ coarse networks
@pytest.mark.parametrize("name,fine_layers,layers,steps,residual", [
    ("sage6", 6, 4, [1, 2, 2, 1], [1, 2]),
    ("sage8", 8, 5, [1, 2, 2, 2, 1], [1, 2, 3]),
    ("interaction", 4, 2, [2, 2], [0, 1]),
    ("epd", 5, 4, [1, 2, 1, 1], [1, 2]),  # 3 processor layers: a pair and a lone one
])
def test_coarse_network_merges_pairs_and_runs(name, fine_layers, layers, steps, residual):
    model, graph, x = make(name)
    before = flat(model)
    coarse, transfer = coarsen_depth(model)
    assert coarse.num_layers == coarse.num_message_passing_layers == layers
    assert coarse.layer_steps == steps and coarse.residual_layers() == residual
    assert torch.equal(flat(coarse), transfer.restrict(before))
    assert coarse(x, graph).shape == model(x, graph).shape
    # the fine model is left as it was
    assert torch.equal(flat(model), before) and model.num_layers == fine_layers
    if name == "epd":
        assert coarse.processor_layers == 2 and model.processor_layers == 3


def test_pair_steps_add_and_a_lone_layer_keeps_its_step():
    model, graph, x = make("sage8")
    model.layer_steps = [1.0, 0.5, 0.25, 1.0, 1.0, 0.125, 0.5, 1.0]
    levels = depth_hierarchy(model, levels=4)
    assert [m.layer_steps for m, _ in levels] == [
        [1.0, 0.75, 2.0, 0.625, 1.0], [1.0, 2.75, 0.625, 1.0], [1.0, 3.375, 1.0]]
    assert levels[-1][0].residual_layers() == [1]
    assert levels[-1][0](x, graph).shape == (2, 32, F_OUT)


def test_restriction_of_pairs():
    model, _, _ = make("interaction")
    blocks = [parameters_to_vector(b.parameters()).detach() for b in model.blocks]
    for restriction, expected in [("average", [(blocks[0] + blocks[1]) / 2, (blocks[2] + blocks[3]) / 2]),
                                  ("injection", [blocks[0], blocks[2]])]:
        coarse, _ = coarsen_depth(model, restriction)
        for block, value in zip(coarse.blocks, expected, strict=True):
            assert torch.equal(parameters_to_vector(block.parameters()), value)
        assert torch.equal(parameters_to_vector(coarse.decoder.parameters()),
                           parameters_to_vector(model.decoder.parameters()))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("restriction", ["average", "injection"])
def test_depth_constant_network_is_restricted_and_prolongated_to_itself(name, restriction):
    model, _, _ = make(name)
    with torch.no_grad():
        first = model.layer_module(model.residual_layers()[0])
        for k in model.residual_layers()[1:]:
            for p, q in zip(model.layer_module(k).parameters(), first.parameters(), strict=True):
                p.copy_(q)
    theta = flat(model)
    _, transfer = coarsen_depth(model, restriction)
    for kind in KINDS:
        torch.testing.assert_close(transfer.prolong(transfer.restrict(theta), kind), theta, rtol=1e-15, atol=0)


# ------------------------------------------------------------------------------------ the linear maps
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", KINDS)
def test_restrict_gradient_is_the_adjoint_of_prolong(name, kind):
    _, transfer = coarsen_depth(make(name)[0])
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(transfer.num_fine, dtype=torch.float64, generator=gen)
    s = torch.randn(transfer.num_coarse, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(transfer.restrict_gradient(g, kind) @ s, g @ transfer.prolong(s, kind),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_prolongation_matrix(kind):
    """Dense P: rows convex combinations, identity off the residual layers, Pᵀ the gradient restriction,
    ‖P‖₂ the operator norm, and the linear kind interpolating the two neighbouring coarse layers."""
    model, _, _ = make("sage6")
    _, transfer = coarsen_depth(model)
    p = dense(transfer, kind)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(transfer.num_fine, dtype=torch.float64))
    fixed = p[transfer.fixed_fine][:, transfer.fixed_coarse]
    assert torch.equal(fixed, torch.eye(len(transfer.fixed_fine), dtype=torch.float64))
    g = torch.randn(transfer.num_fine, dtype=torch.float64)
    torch.testing.assert_close(transfer.restrict_gradient(g, kind), p.T @ g)
    assert transfer.operator_norm(kind) == pytest.approx(float(torch.linalg.matrix_norm(p, ord=2)), rel=1e-12)
    # one slot of the 4 fine residual layers against the 2 coarse ones (centres at 0.5 and 2.5)
    layers = p[transfer.residual_fine[:, 0]][:, transfer.residual_coarse[:, 0]]
    expected = {"constant": [[1, 0], [1, 0], [0, 1], [0, 1]],
                "linear": [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]}[kind]
    assert torch.equal(layers, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("name", ["sage8", "epd"])  # with a lone last layer
@pytest.mark.parametrize("kind", KINDS)
def test_first_order_coherence(name, kind):
    """d/ds f(θ + P s)|_{s=0} = ⟨Pᵀ ∇f(θ), s⟩ for the fine loss f, by central differences."""
    model, graph, x = make(name)
    _, transfer = coarsen_depth(model)
    y = torch.randn_like(model(x, graph))

    def loss(theta):
        vector_to_parameters(theta, params(model))
        return ((model(x, graph) - y) ** 2).mean()

    theta = flat(model).clone()
    grad = torch.autograd.grad(loss(theta), params(model))
    g = torch.cat([t.reshape(-1) for t in grad])
    s = torch.randn(transfer.num_coarse, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eps, step = 1e-6, transfer.prolong(s, kind)
    with torch.no_grad():
        diff = (loss(theta + eps * step) - loss(theta - eps * step)) / (2 * eps)
    torch.testing.assert_close(diff, transfer.restrict_gradient(g, kind) @ s, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", KINDS)
def test_coarse_box_maps_into_the_fine_box(name, kind):
    _, transfer = coarsen_depth(make(name)[0])
    gen = torch.Generator().manual_seed(3)
    half = torch.rand(transfer.num_fine, dtype=torch.float64, generator=gen) + 0.01
    half_c = transfer.box_half_width(half, kind)
    assert (half_c > 0).all()
    for _ in range(5):
        s = half_c * (2 * torch.rand(transfer.num_coarse, dtype=torch.float64, generator=gen) - 1)
        assert (transfer.prolong(s, kind).abs() <= half).all()
    corner = half_c * torch.where(torch.rand(transfer.num_coarse, generator=gen) < 0.5, -1.0, 1.0)
    assert (transfer.prolong(corner, kind).abs() <= half * (1 + 1e-15)).all()
    # the box is not smaller than it must be: each coarse entry reaches its fine bound somewhere
    p = dense(transfer, kind) if name == "sage6" else None
    if p is not None:
        reach = torch.where(p > 0, half[:, None], torch.inf).amin(0)
        assert torch.equal(half_c, reach)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", KINDS)
def test_coarse_ball_maps_into_the_fine_ball(name, kind):
    _, transfer = coarsen_depth(make(name)[0])
    norm = transfer.operator_norm(kind)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        s = torch.randn(transfer.num_coarse, dtype=torch.float64, generator=gen)
        assert transfer.prolong(s, kind).norm() <= norm * s.norm() * (1 + 1e-12)
    # the bound is attained: the top right-singular vector of the layers' weights in one slot
    _, _, vh = torch.linalg.svd(transfer.prolongation_weights[kind])
    s = torch.zeros(transfer.num_coarse, dtype=torch.float64)
    s[transfer.residual_coarse[:, 0]] = vh[0]
    assert float(transfer.prolong(s, kind).norm()) == pytest.approx(norm, rel=1e-12)


# ------------------------------------------------------------------------------------------- errors
def test_levels_allowed():
    assert [depth_levels_allowed(make(n)[0]) for n in MODELS] == [2, 3, 2, 2]
    assert depth_levels_allowed(GraphSAGE(F_IN, F_OUT, hidden=8, layers=6)) == 0
    assert depth_levels_allowed(GCN(F_IN, F_OUT, hidden=8, layers=6)) == 0
    assert len(depth_hierarchy(make("sage6")[0], levels=3)) == 2
    assert depth_hierarchy(GCN(F_IN, F_OUT), levels=1) == []


def test_a_model_without_residual_layers_names_depth_coarsening():
    with pytest.raises(ConfigError, match=r"ddm.depth_coarsening.*residual=false.*model.residual=true"):
        coarsen_depth(GraphSAGE(F_IN, F_OUT, hidden=8, layers=6))
    with pytest.raises(ConfigError, match=r"ddm.depth_coarsening: model GCN"):
        coarsen_depth(GCN(F_IN, F_OUT, hidden=8, layers=6))
    with pytest.raises(ConfigError, match=r"ddm.depth_coarsening: model GraphSAGE has no residual layers"):
        coarsen_depth(GraphSAGE(F_IN, F_OUT, hidden=8, layers=2, residual=True))


def test_too_many_levels_names_ddm_levels():
    with pytest.raises(ConfigError, match=r"ddm.levels: 4 depth levels .* 4 residual layers, which allow 2 "
                                          r"\(ddm.levels <= 3\)"):
        depth_hierarchy(make("sage6")[0], levels=4)
    one = GraphSAGE(F_IN, F_OUT, hidden=8, layers=3, residual=True)
    with pytest.raises(ConfigError, match=r"ddm.levels: .* 1 residual layer.*ddm.levels=1"):
        coarsen_depth(one)


def test_unknown_restriction_and_prolongation_name_their_keys():
    model = make("sage6")[0]
    with pytest.raises(ConfigError, match=r"ddm.depth_restriction: expected one of 'average', 'injection'"):
        coarsen_depth(model, restriction="mean")
    _, transfer = coarsen_depth(model)
    v = torch.zeros(transfer.num_coarse, dtype=torch.float64)
    g = torch.zeros(transfer.num_fine, dtype=torch.float64)
    for call in (lambda: transfer.prolong(v, "cubic"), lambda: transfer.restrict_gradient(g, "cubic"),
                 lambda: transfer.box_half_width(g, "cubic"), lambda: transfer.operator_norm("cubic")):
        with pytest.raises(ConfigError, match=r"ddm.depth_prolongation: expected one of 'constant', 'linear'"):
            call()
