"""GraphCast's encoder-processor-decoder on a tiny joint graph of 8 grid and 6 mesh nodes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gnnddm.config import compose
from gnnddm.errors import ConfigError
from gnnddm.models.encode_process_decode import EncodeProcessDecode
from gnnddm.models.graph import prepare_graph
from gnnddm.schema import problems

REPO = Path(__file__).resolve().parents[2]
GRID, MESH = 8, 6
F_IN, F_OUT, EDGE_DIM = 5, 3, 6  # 3 geometric features + the one-hot edge kind
ENCODER, PROCESSOR, DECODER = 0, 1, 2


def joint_edges():
    """``(edge_index [2, E], kind [E])``: grid g -> mesh nodes near g / 8 * 6 (1 or 2 of them), the mesh a
    path m0 - m1 - ... - m5 (both directions), and every grid node decoded from 3 consecutive mesh nodes."""
    m = [GRID + i for i in range(MESH)]
    near = [g * (MESH - 1) // (GRID - 1) for g in range(GRID)]
    enc = [(g, m[near[g]]) for g in range(GRID)] + [(g, m[near[g] + 1]) for g in range(0, GRID - 1, 2)]
    proc = [(m[i], m[i + 1]) for i in range(MESH - 1)]
    proc += [(b, a) for a, b in proc]
    dec = [(m[min(max(near[g] - 1, 0), MESH - 3) + t], g) for g in range(GRID) for t in range(3)]
    kind = [ENCODER] * len(enc) + [PROCESSOR] * len(proc) + [DECODER] * len(dec)
    return torch.tensor(enc + proc + dec).T, torch.tensor(kind)


def joint_graph(keep=(ENCODER, PROCESSOR, DECODER)):
    ei, kind = joint_edges()
    attr = torch.cat([torch.randn(len(kind), 3, generator=torch.Generator().manual_seed(0)),
                      torch.nn.functional.one_hot(kind, 3).float()], dim=1)
    sel = torch.isin(kind, torch.tensor(keep))
    return prepare_graph(ei[:, sel], GRID + MESH, edge_attr=attr[sel])


def make(**kw):
    torch.manual_seed(0)
    return EncodeProcessDecode(F_IN, F_OUT, EDGE_DIM, **{"hidden": 8, "processor_layers": 2, **kw})


def test_output_shapes_batched_and_unbatched():
    model, graph = make(), joint_graph()
    x = torch.randn(3, GRID + MESH, F_IN)
    out = model(x, graph)
    assert out.shape == (3, GRID + MESH, F_OUT)
    assert model(x[1], graph).shape == (GRID + MESH, F_OUT)
    torch.testing.assert_close(model(x[1], graph), out[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("processor_layers", [1, 2])
def test_receptive_field_is_num_message_passing_layers(processor_layers):
    """A grid node's output depends on exactly the nodes from which a path of encoder, then at most L
    processor, then decoder edges leads to it, all within L + 2 hops: an overlap of L + 2 is exact."""
    # float64: a long path can carry an effect below float32's resolution
    model, graph = make(processor_layers=processor_layers).double(), joint_graph().astype(torch.float64)
    hops = model.num_message_passing_layers
    assert hops == processor_layers + 2 == model.num_layers
    ei, kind = joint_edges()
    x = torch.randn(GRID + MESH, F_IN, dtype=torch.float64)
    with torch.no_grad():
        base = model(x, graph)
    farthest, unreached = 0, 0
    for j in range(GRID + MESH):
        x2 = x.clone()
        x2[j] += 1.0
        with torch.no_grad():
            changed = (model(x2, graph) - base).abs().amax(dim=1)
        reached = {j}
        for stage in [ENCODER] + [PROCESSOR] * processor_layers + [DECODER]:
            reached |= {t for s, t in ei[:, kind == stage].T.tolist() if s in reached}
        dist = _distances(j, ei)
        for i in range(GRID):
            assert bool(changed[i] > 0) == (i in reached), (j, i, float(changed[i]))
            if i in reached:
                assert dist[i] <= hops
                farthest = max(farthest, dist[i])
            else:
                unreached += 1
    assert farthest == hops and unreached > 0  # the bound is reached, and some nodes lie beyond it


def _distances(j: int, edge_index) -> dict[int, int]:
    """Hops of the shortest directed path from j to every node it reaches."""
    dist, frontier, d = {j: 0}, {j}, 0
    while frontier:
        d += 1
        frontier = {t for s, t in edge_index.T.tolist() if s in frontier and t not in dist}
        dist.update(dict.fromkeys(frontier, d))
    return dist


def test_encoder_and_decoder_read_only_their_edges():
    """Without processor edges, layer 0 (encoder) and layer L+1 (decoder) compute what they compute with
    them, and the processor layers leave the node latents unchanged."""
    model, full, bare = make(), joint_graph(), joint_graph(keep=(ENCODER, DECODER))
    h = torch.randn(GRID + MESH, 2, F_IN)
    with torch.no_grad():
        s_full, s_bare = model.layer(0, model.encode(h, full), full), model.layer(0, model.encode(h, bare), bare)
        torch.testing.assert_close(s_full[0], s_bare[0], rtol=0, atol=0)
        after = s_bare
        for k in range(1, model.num_layers - 1):
            after = model.layer(k, after, bare)
        torch.testing.assert_close(after[0], s_bare[0], rtol=0, atol=0)
        last = model.num_layers - 1
        processed = s_full
        for k in range(1, last):
            processed = model.layer(k, processed, full)
        dec_full = model.layer(last, processed, full)[0]
        dec_bare = model.layer(last, (processed[0], s_bare[1]), bare)[0]
        torch.testing.assert_close(dec_full, dec_bare, rtol=0, atol=0)
        assert not torch.equal(processed[0], s_full[0])  # while the processor does change them


@pytest.mark.parametrize("samples", [1, 2])
def test_gradients_are_exact_in_float64(samples):
    """Against finite differences, for the inputs and every weight (the edge and row operations have
    hand-written backward passes); one sample and two (the edge embeddings are shared by the samples).
    The check of all of them is gradcheck's fast mode (a random projection of the Jacobian); the inputs' is
    also done in full for one sample."""
    model, graph = make(hidden=3, processor_layers=2).double(), joint_graph().astype(torch.float64)
    names, weights = zip(*model.named_parameters(), strict=True)
    x = torch.randn(samples, GRID + MESH, F_IN, dtype=torch.float64, requires_grad=True)

    def forward(x, *weights):
        return torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (x, graph))

    assert torch.autograd.gradcheck(forward, (x, *weights), eps=1e-6, atol=1e-6, fast_mode=True)
    if samples == 1:
        assert torch.autograd.gradcheck(lambda x: model(x, graph), (x,), eps=1e-6, atol=1e-6)
    model(x, graph).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("edge_dim", [0, 3])
def test_edges_without_the_kind_one_hot_name_the_graph(edge_dim):
    with pytest.raises(ConfigError, match="graph=icosahedral"):
        EncodeProcessDecode(F_IN, F_OUT, edge_dim)


def test_bad_hyper_parameters_name_the_key():
    with pytest.raises(ConfigError, match="model.processor_layers"):
        EncodeProcessDecode(F_IN, F_OUT, EDGE_DIM, processor_layers=0)
    with pytest.raises(ConfigError, match="model.hidden"):
        EncodeProcessDecode(F_IN, F_OUT, EDGE_DIM, hidden=0)


def test_config_instantiates_the_model_and_rejects_layers():
    cfg = OmegaConf.load(REPO / "conf" / "model" / "encode_process_decode.yaml")
    model = instantiate(cfg)(in_channels=F_IN, out_channels=F_OUT, edge_dim=EDGE_DIM)
    assert isinstance(model, EncodeProcessDecode)
    assert model.num_message_passing_layers == cfg.processor_layers + 2
    found = [str(p) for p in problems(compose(["model=encode_process_decode", "+model.layers=2"]))]
    assert len(found) == 1 and found[0].startswith("model.layers: not a key") and "processor_layers" in found[0]


@pytest.mark.slow
def test_benchmark_runs_and_matches_the_pyg_network():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_mesh_model.py"), "--resolution", "5.625",
                          "--refinement", "2", "--iters", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    diffs = dict(re.findall(r"(gnnddm(?: recompute| bf16)?) (\S+?)(?:,|$)",
                            out.stdout.split("at most:")[1].splitlines()[0]))
    assert set(diffs) == {"gnnddm", "gnnddm recompute", "gnnddm bf16"}, out.stdout
    assert float(diffs["gnnddm"]) < 1e-4 and float(diffs["gnnddm recompute"]) < 1e-4, out.stdout
    assert 0 < float(diffs["gnnddm bf16"]) < 0.1, out.stdout  # bf16 products: bf16's rounding, not more
    assert out.stdout.count("peak memory") == 4 and out.stdout.count("/ PyG:") == 3, out.stdout
    floor = re.search(r"gnnddm (\S+) GFLOP, PyG (\S+) GFLOP: (\S+)x", out.stdout)
    assert floor and float(floor.group(1)) < float(floor.group(2)), out.stdout  # PyG's edge layer reads [e, x_j, x_i]


@pytest.mark.parametrize("cost", [1, 5, 1 << 18])
def test_recompute_by_blocks_is_the_same_function_and_gradient(cost, monkeypatch):
    """``recompute=True`` runs the encoder and decoder by blocks of rows, recomputed in the backward pass:
    the outputs and every gradient equal the whole layers' (float64, to rounding), with one block, with
    blocks of a row or two, and with blocks that receive no edge."""
    import gnnddm.models.encode_process_decode as epd

    monkeypatch.setattr(epd, "BLOCK_COST", cost)
    graph = joint_graph().astype(torch.float64)
    whole, blocked = make().double(), make(recompute=True).double()
    x = torch.randn(2, GRID + MESH, F_IN, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, GRID + MESH, F_OUT, dtype=torch.float64)
    results = []
    for model in (whole, blocked):
        out = model(x, graph)
        loss = ((out - target) ** 2).sum()
        grads = torch.autograd.grad(loss, [x, *model.parameters()])
        results.append((out.detach(), grads))
    blocks = epd.edge_blocks(graph, 2, cost)
    assert sum(blocks.sizes) == GRID + MESH
    assert sum(len(s.pairs) for s in blocks.sets if s is not None) == int((joint_edges()[1] == DECODER).sum())
    if cost == 1:
        assert len(blocks.sizes) > 3 and None in epd.edge_blocks(graph, 0, cost).sets
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # evaluation takes the whole layers: nothing to recompute
        torch.testing.assert_close(blocked(x, graph), results[0][0], rtol=1e-12, atol=1e-12)


def test_recompute_must_be_a_boolean():
    with pytest.raises(ConfigError, match="model.recompute"):
        make(recompute="yes")
