"""Cache-blocked execution of ``global`` (gnnddm.ddm.blocked): the whole-graph loss and gradient, layer by
layer over blocks with one-hop halos, equal to the whole graph's in float64."""

from __future__ import annotations

import pytest
import torch

from gnnddm.ddm.blocked import Blocks, auto_blocks, block_count
from gnnddm.ddm.global_ import Global
from gnnddm.errors import ConfigError
from gnnddm.testing.algorithms import flat_params, make_algorithm
from gnnddm.testing.gallery import EdgeGNN, LinearGNN, problem, real_models


def _whole(model, batch, objective):
    model.zero_grad(set_to_none=True)
    loss = objective.whole().on(objective.on(batch))(model)
    loss.backward()
    return float(loss), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("halo", ["model", "layer"])
@pytest.mark.parametrize("count", [2, 5, 17])
@pytest.mark.parametrize("name", sorted(real_models()))  # the joint graph's model: tests/ddm/test_joint_graph.py
def test_blocks_give_the_whole_graph_loss_and_gradient(name, count, halo):
    _, _, objective, task, batch = problem(parts=1, overlap=0)
    edge_dim = objective.data.edge_attr.shape[1]
    torch.manual_seed(0)
    model = real_models()[name](task.in_channels, task.out_channels, edge_dim, hidden=8, layers=3).double()
    f, grads = _whole(model, batch, objective)
    blocks = Blocks(objective.data, count, objective.device, hops=model.num_message_passing_layers, halo=halo)
    model.zero_grad(set_to_none=True)
    fb = float(blocks.loss_backward(model, objective.on(batch).batch))
    assert fb == pytest.approx(f, rel=1e-12)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-11, atol=1e-13)
    assert blocks.work > 1.0  # the halo (overlap) rows are recomputed


@pytest.mark.parametrize("halo", ["model", "layer"])
def test_global_in_blocks_follows_global(halo):
    _, _, objective, task, batch = problem(parts=1, overlap=0)
    runs = []
    for count in (1, 4):
        torch.manual_seed(0)
        model = real_models()["sage"](task.in_channels, task.out_channels, hidden=8, layers=3).double()
        algo = make_algorithm(Global, objective, model, torch.optim.Adam)
        algo.run_in_blocks(count, halo)
        losses = [algo.step(batch)["loss"] for _ in range(4)]
        runs.append((losses, flat_params(model)))
    assert runs[1][0] == pytest.approx(runs[0][0], rel=1e-12)
    torch.testing.assert_close(runs[1][1], runs[0][1], rtol=1e-10, atol=1e-12)


def test_block_counts_and_their_refusals():
    _, _, objective, task, _ = problem(parts=1, overlap=0)
    model = real_models()["sage"](task.in_channels, task.out_channels, hidden=8, layers=2)
    n = objective.num_nodes
    assert auto_blocks(1_000, 256, cache=32 * 2**20) == 1
    assert auto_blocks(1_038_240, 256, cache=32 * 2**20) == 16  # 266 MB of rows into 16 MB halves
    assert block_count("auto", model, n, 256) == 1 and block_count(3, model, n, 256) == 3
    # model: every layer's activation of a block in half the cache; layer: one layer's
    assert block_count("auto", model, 1_038_240, 256, "model") == auto_blocks(1_038_240, 2 * 256)
    assert block_count("auto", model, 1_038_240, 256, "layer") == auto_blocks(1_038_240, 256)
    with pytest.raises(ConfigError, match=rf"trainer.blocks={n + 1} exceeds the {n} nodes"):
        block_count(n + 1, model, n, 256)
    plain = LinearGNN(task.in_channels, task.out_channels)  # its hops, but no stages
    assert block_count(2, plain, n, 256, "model") == 2 and block_count("auto", plain, 10**7, 256, "layer") == 1
    with pytest.raises(ConfigError, match="trainer.blocks=2: model LinearGNN does not expose its layers"):
        block_count(2, plain, n, 256, "layer")
    with pytest.raises(ConfigError, match="does not expose its layers"):
        make_algorithm(Global, objective, plain, torch.optim.Adam).run_in_blocks(2, "layer")
    bare = torch.nn.Sequential(torch.nn.Linear(task.in_channels, task.out_channels))  # not even its hops
    assert block_count("auto", bare, 10**7, 256, "model") == 1
    with pytest.raises(ConfigError, match="trainer.blocks=2: model Sequential does not say its message-passing hops"):
        block_count(2, bare, n, 256, "model")


def test_only_global_runs_in_blocks():
    from gnnddm.ddm.sync import Sync

    _, _, objective, task, _ = problem(parts=3, overlap=2)
    algo = make_algorithm(Sync, objective, EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2),
                          torch.optim.Adam)
    algo.run_in_blocks(1)
    with pytest.raises(ConfigError, match="trainer.blocks=4: ddm=sync computes its subdomains"):
        algo.run_in_blocks(4)


def test_a_run_in_blocks_trains_as_the_whole_graph_and_bad_settings_name_the_key(tmp_path):
    from gnnddm.config import compose
    from gnnddm.schema import problems
    from gnnddm.testing.runs import tiny_run_in
    from gnnddm.training import train

    runs = {}
    for blocks, halo in ((1, "model"), (6, "model"), (6, "layer")):
        cfg = compose(tiny_run_in(tmp_path, "ddm=global", "partition.num_parts=1", "partition.overlap=0",
                                  f"trainer.blocks={blocks}", f"trainer.block_halo={halo}", "tracking.enabled=false",
                                  out=f"b{blocks}{halo}"))
        runs[blocks, halo] = train(cfg)
    whole = runs[1, "model"]
    assert whole["blocks"] == 1
    for key in ((6, "model"), (6, "layer")):
        assert runs[key]["blocks"] == 6
        assert runs[key]["final"]["val_loss"] == pytest.approx(whole["final"]["val_loss"], rel=1e-4)  # float32 sums
        assert runs[key]["accounting"]["grad_evals"] > whole["accounting"]["grad_evals"]  # the halo rows
    found = [str(p) for p in problems(compose(["trainer.blocks=0"]))]
    assert found == ["trainer.blocks: expected auto or a number of blocks >= 1, got 0"]
    found = [str(p) for p in problems(compose(["trainer.blocks=many"]))]
    assert found == ["trainer.blocks: expected auto or a number of blocks >= 1, got 'many'"]
    found = [str(p) for p in problems(compose(["trainer.block_halo=edge"]))]
    assert found == ["trainer.block_halo: unknown block halo 'edge'; valid: model, layer"]
    with pytest.raises(ConfigError, match="trainer.blocks=3: ddm=sync computes its subdomains"):
        train(compose(tiny_run_in(tmp_path, "ddm=sync", "trainer.blocks=3", "tracking.enabled=false", out="s")))
