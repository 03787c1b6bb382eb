"""ddm=apts: parameter blocks, the first-order consistency of every block's local problem, one block as one
trust-region step of the global method, the monotone and non-monotone tests, graph parts equal to one piece,
the accounting of partial evaluations, and bad blocks named."""

from __future__ import annotations

import copy
import math
from functools import partial

import numpy as np
import pytest
import torch

from gnnddm.config import compose
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.apts import APTS
from gnnddm.ddm.asm import ASM
from gnnddm.ddm.blocks import parameter_blocks
from gnnddm.ddm.objective import Objective
from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.gallery import comm_for, grid_data, real_models, to_dtype

MODELS = real_models()
LAYERED = ["sage", "gcn", "gatv2", "interaction"]


def _objective(parts: int, data=None, batch=2, overlap=1):
    """The 8 x 16 grid cut into ``parts`` contiguous bands of node ids, ``overlap`` (none with one part):
    (objective, task, a float64 batch of ``batch`` samples)."""
    data = grid_data(8, 16, neighbours=8) if data is None else data
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, overlap if parts > 1 else 0)
    task = ForecastTask(data)
    objective = Objective(data, partition)
    return objective, task, to_dtype(task.batch(np.arange(batch)), torch.float64)


def _model(name: str, task, seed: int = 0, layers: int = 4):
    torch.manual_seed(seed)
    kw = {"residual": True} if name == "sage" else {}
    if name in ("gatv2", "interaction"):
        kw["edge_dim"] = 3
    return MODELS[name](task.in_channels, task.out_channels, hidden=8, layers=layers, **kw).double()


def _apts(parts: int = 1, model: str = "sage", seed: int = 0, layers: int = 4, overlap: int = 1, **kw):
    """(APTS on :func:`_objective`'s problem, its batch)."""
    objective, task, batch = _objective(parts, overlap=overlap)
    comm, acc = comm_for(objective)
    return APTS(_model(model, task, seed, layers), objective, comm, **kw), batch


def _assert_same_steps(apts, asm, batch, steps: int = 4) -> None:
    """``apts`` and ``asm`` take the same steps on ``batch``: acceptance, radius and iterate after each of
    ``steps``."""
    for _ in range(steps):
        a, b = apts.step(batch), asm.step(batch)
        assert a["accepted"] == b["accepted"]
        assert apts.tr.radius == pytest.approx(asm.tr.radius, rel=1e-12)
        torch.testing.assert_close(apts.flat(), asm.flat(), rtol=1e-9, atol=1e-11)


def _timed_keys(algo) -> set:
    """The keys under which ``algo``'s compute is timed from now on (filled as it runs)."""
    seen = set()
    add = algo.accounting.add_compute
    algo.accounting.add_compute = lambda part, s: (seen.add(part), add(part, s))
    return seen


def _flat(algo) -> torch.Tensor:
    return algo.flat().clone()


# ------------------------------------------------------------------------------------- blocks
@pytest.mark.parametrize("name", LAYERED)
@pytest.mark.parametrize("spec", ["layers", 1, 2, 3])
def test_blocks_partition_the_parameters_in_contiguous_layers(name, spec):
    algo, batch = _apts(model=name)
    blocks = parameter_blocks(algo.model, algo.params, spec)
    coords = torch.cat([b.coords for b in blocks])
    assert sorted(coords.tolist()) == list(range(algo.num_params))  # every coordinate once
    assert len(blocks) == (4 if spec == "layers" else spec)
    starts = [b.start for b in blocks]
    assert starts == sorted(starts) and starts[0] == 0


def test_encoder_and_decoder_join_the_first_and_last_layers():
    algo, batch = _apts(model="interaction")
    names = [n for n, p in algo.model.named_parameters() if p.requires_grad]
    blocks = parameter_blocks(algo.model, algo.params, "layers")
    first = {names[i].split(".")[0] for i in blocks[0].params}
    last = {names[i].split(".")[0] for i in blocks[-1].params}
    assert "node_encoder" in first and "decoder" not in first
    assert "decoder" in last and "node_encoder" not in last
    assert [b.start for b in blocks] == [0, 1, 2, 3]


def test_pattern_blocks():
    algo, batch = _apts(model="sage")
    blocks = parameter_blocks(algo.model, algo.params, ["convs.0.*", "convs.[123].*"])
    assert [b.start for b in blocks] == [0, 1]
    assert blocks[0].size + blocks[1].size == algo.num_params


@pytest.mark.parametrize("spec,match", [
    (["convs.0.*"], "matched by no pattern"),
    (["convs.*", "convs.0.*"], "more than one pattern"),
    (["convs.*", "decoder.*"], "matches no parameter"),
    (9, "expected 1 to 4"),
    (0, "expected 1 to 4"),
    ("depth", "expected 'layers'"),
    ([], "empty list"),
])
def test_bad_blocks_name_the_key(spec, match):
    with pytest.raises(ConfigError, match=match) as err:
        _apts(model="sage", blocks=spec)
    assert "ddm.blocks" in str(err.value)


# ------------------------------------------------------------------------ first-order consistency
@pytest.mark.parametrize("name", LAYERED)
@pytest.mark.parametrize("parts", [1, 3])
def test_each_block_s_gradient_at_the_iterate_is_the_restricted_global_gradient(name, parts):
    """∇f̃_d(R_dθ_t) = R_d∇f(θ_t) and f̃_d(R_dθ_t) = f(θ_t), for every block, evaluated from the states
    of the forward pass below the block as the local solves are."""
    algo, batch = _apts(parts=parts, model=name)
    whole = Objective(algo.objective.data, build_partition(algo.objective.data.edge_index,
                                                           algo.objective.data.num_nodes,
                                                           np.zeros(algo.objective.data.num_nodes, np.int64), 0))
    algo.model.zero_grad()
    f_ref = whole.on(batch).global_loss(algo.model)
    f_ref.backward()
    g_ref = algo.flat_grad().clone()
    algo.model.zero_grad(set_to_none=True)
    losses = algo.objective.on(batch)
    record: dict = {}
    f, g = algo._full(losses, record)
    assert f == pytest.approx(float(f_ref.detach()), rel=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    for block in algo.blocks:  # one per layer
        with algo.only(block):
            f_d, g_d = algo.block_value_grad(losses, block, algo.prefix_of(block, record))
        assert f_d == pytest.approx(f, rel=1e-12)
        torch.testing.assert_close(g_d, g[block.coords], rtol=1e-10, atol=1e-12)
        # and the block's evaluation really starts at its layer: perturb a layer below it, nothing changes
        if block.start > 0:
            below = algo.model.layer_module(block.start - 1)
            with torch.no_grad():
                for p in below.parameters():
                    p.add_(1.0)
            with algo.only(block):
                f_same, _ = algo.block_value_grad(losses, block, algo.prefix_of(block, record))
            with torch.no_grad():
                for p in below.parameters():
                    p.sub_(1.0)
            assert f_same == pytest.approx(f, rel=1e-12)


@pytest.mark.parametrize("parts", [1, 3])
def test_blocks_of_a_rollout_are_consistent_where_weights_are_tied(parts):
    """A two-step rollout uses every weight twice and decodes after its first step: the decoder's block
    starts at the second step's first layer, and every block's gradient is still R_d∇f."""
    from gnnddm.tasks.rollout_training import RolloutBatches, RolloutModel

    data = grid_data(8, 8, times=12)
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, 1 if parts > 1 else 0)
    objective = Objective(data, partition)
    task = ForecastTask(data, rollout=2)
    batch = to_dtype(RolloutBatches(task, 2).batch(np.array([0, 3])), torch.float64)
    torch.manual_seed(0)
    base = MODELS["interaction"](task.in_channels, task.out_channels, hidden=8, layers=2, edge_dim=3).double()
    comm, acc = comm_for(objective)
    algo = APTS(RolloutModel(base, task, 2), objective, comm, blocks="layers")
    assert [b.start for b in algo.blocks] == [0, 1, 2]  # the decoder acts after the first step
    losses = objective.on(batch)
    record: dict = {}
    f, g = algo._full(losses, record)
    for block in algo.blocks:
        with algo.only(block):
            f_d, g_d = algo.block_value_grad(losses, block, algo.prefix_of(block, record))
        assert f_d == pytest.approx(f, rel=1e-12)
        torch.testing.assert_close(g_d, g[block.coords], rtol=1e-10, atol=1e-12)


def test_a_block_solve_moves_only_its_own_parameters():
    algo, batch = _apts(blocks="layers", local_steps=2, radius0=1.0)
    theta = _flat(algo)
    losses = algo.objective.on(batch)
    record: dict = {}
    f, g = algo._full(losses, record)
    block = algo.blocks[2]
    with algo.only(block):
        s_d, decrease, _ = algo._block_solve(losses, 2, block, algo._restricted(algo.constraint(theta, g), block),
                                             theta[block.coords], f, g, record)
    after = _flat(algo)
    changed = torch.nonzero(after != theta).flatten()
    assert set(changed.tolist()) <= set(block.coords.tolist()) and len(changed) > 0
    assert decrease > 0
    assert float(torch.linalg.vector_norm(s_d)) <= 1.0 / math.sqrt(4) + 1e-12


# ------------------------------------------------------------------ reduction to the global method
def test_one_block_one_local_step_is_one_trust_region_step_of_the_global_method():
    """One block, one local trust-region step: θ − Δ g/‖g‖ when ρ = (f − f(θ − Δĝ)) / (Δ‖g‖) > η₁, else θ
    with the radius shrunk."""
    for radius, accept in ((0.05, True), (50.0, False)):
        algo, batch = _apts(blocks=["*"], local_steps=1, radius0=radius, radius_max=100.0)
        theta = _flat(algo)
        losses = algo.objective.on(batch)
        f, g = algo._full(losses)
        trial = theta - radius * g / float(torch.linalg.vector_norm(g))
        algo.set_flat(trial)
        f_trial = algo._value(losses)
        algo.set_flat(theta)
        rho = (f - f_trial) / (radius * float(torch.linalg.vector_norm(g)))
        assert (rho > 0.25) == accept
        stats = algo.step(batch)
        torch.testing.assert_close(_flat(algo), trial if accept else theta, rtol=1e-12, atol=1e-14)
        assert stats["accepted"] == float(accept)
        if not accept:
            assert algo.tr.radius == pytest.approx(radius * 0.5)  # apts halves its radius on a rejection by default


def test_one_block_with_a_local_solver_follows_asm_on_one_subdomain():
    """One block and ``local_method: solver`` is additive Schwarz on one subdomain with the same solver and
    test (``trial: separate``): the same iterates and radii, step after step."""
    sgd = partial(torch.optim.SGD, lr=0.05)
    objective, task, batch = _objective(1)
    comm, acc = comm_for(objective)
    apts = APTS(_model("sage", task), objective, comm, blocks=["*"], local_method="solver",
                local_solver=sgd, local_steps=3, radius0=0.05)
    objective2, _, _ = _objective(1)
    comm2, acc2 = comm_for(objective2)
    asm = ASM(_model("sage", task), objective2, comm2, local_solver=sgd, local_steps=3, radius0=0.05,
              trial="separate")
    _assert_same_steps(apts, asm, batch)


# ------------------------------------------------------------------------ acceptance
def test_an_accepted_step_never_increases_the_loss():
    algo, batch = _apts(blocks=2, local_steps=3, radius0=2.0)
    accepted = 0
    losses = algo.objective.on(batch)
    for _ in range(6):
        before = algo._value(losses)
        stats = algo.step(batch)
        after = algo._value(losses)
        if stats["accepted"]:
            accepted += 1
            assert after < before
        else:
            assert after == before
    assert accepted >= 2


def test_a_non_monotone_step_never_exceeds_the_window_s_largest_loss():
    algo, batch = _apts(blocks=2, local_steps=3, radius0=2.0, nonmonotone_window=3)
    losses: list[float] = []
    for _ in range(8):
        stats = algo.step(batch)
        losses.append(stats["loss"])
        if stats["accepted"]:
            f_new = stats["loss"] - stats["actual"]
            assert f_new < max(losses[-3:])
    assert algo.window == losses[-3:]


def test_a_local_loop_starts_at_its_share_or_where_its_previous_loop_ended():
    """``local_radius``: ``share`` starts every loop at the region's radius; ``last`` at the radius the same
    key's previous loop ended with (shrunk by its rejections), never above the region's."""
    from gnnddm.ddm.solvers import Ball

    def first_steps(algo, calls: int, key="block0") -> list[float]:
        """The length of the first trial step of each of ``calls`` loops on f(x) = 50‖x‖² − x₀, whose
        minimiser lies 0.01 from the centre: a step of 1 is rejected, a step of 1/8 too."""
        e0 = torch.eye(4, dtype=torch.float64)[0]
        tried: list[list[float]] = []

        def evaluate(x):
            tried[-1].append(float(x.norm()))
            return float(50 * x.dot(x) - x[0]), 100 * x - e0

        for _ in range(calls):
            tried.append([])
            algo.local_trust_region(0.0, -e0, Ball(torch.zeros(4, dtype=torch.float64), 1.0), evaluate, key)
        return [steps[0] for steps in tried]

    share, _ = _apts(blocks=2, local_steps=3)
    assert first_steps(share, 2) == [1.0, 1.0]
    last, _ = _apts(blocks=2, local_steps=3, local_radius="last")
    gamma = last.tr.gamma_dec
    # three rejections (1, γ, γ²) leave γ³; the next loop tries γ³ first, then γ⁴, γ⁵ ...
    assert first_steps(last, 2) == pytest.approx([1.0, gamma ** 3])
    assert last.local_radii["block0"] == pytest.approx(gamma ** 6)
    assert first_steps(last, 1, key="block1") == [1.0]  # each key its own
    last.local_radii["block0"] = 5.0
    assert first_steps(last, 1) == [1.0]  # never above the region's radius
    last.tr.radius_min = 0.01
    first_steps(last, 3)  # γ³ per loop, 1/512 after three: kept at radius_min
    assert last.local_radii["block0"] == 0.01


def test_the_remembered_local_radii_change_the_trajectory_and_survive_a_checkpoint():
    kw = dict(blocks=2, local_steps=3, radius0=2.0)
    share, batch = _apts(**kw)
    last, _ = _apts(**kw, local_radius="last")
    for _ in range(3):
        share.step(batch), last.step(batch)
    assert set(last.local_radii) == {"block0", "block1"} and not share.local_radii
    assert float((share.flat() - last.flat()).abs().max()) > 1e-8
    state = copy.deepcopy(last.state_dict())  # as read back from a file
    twin, _ = _apts(**kw, local_radius="last")
    twin.set_flat(last.flat())
    twin.load_state_dict(state)
    assert twin.local_radii == last.local_radii
    last.step(batch), twin.step(batch)
    torch.testing.assert_close(last.flat(), twin.flat(), rtol=0, atol=0)


def test_with_remembered_radii_parts_follow_one_piece_and_the_hybrid_keys_its_pairs():
    one, batch = _apts(parts=1, blocks=2, local_steps=2, radius0=0.5, local_radius="last")
    three, _ = _apts(parts=3, blocks=2, local_steps=2, radius0=0.5, local_radius="last")
    for _ in range(3):
        a, b = one.step(batch), three.step(batch)
        assert a["accepted"] == b["accepted"]
        torch.testing.assert_close(one.flat(), three.flat(), rtol=1e-9, atol=1e-11)
    assert one.local_radii == pytest.approx(three.local_radii)
    hybrid, _ = _apts(parts=3, blocks=2, local_steps=2, local_radius="last", hybrid=True)
    hybrid.step(batch)
    assert set(hybrid.local_radii) == {f"block{d}.part{k}" for d in range(2) for k in range(3)}


def test_parts_follow_the_one_piece_trajectory():
    one, batch = _apts(parts=1, blocks=2, local_steps=2, radius0=0.5)
    three, _ = _apts(parts=3, blocks=2, local_steps=2, radius0=0.5)
    for _ in range(3):
        a, b = one.step(batch), three.step(batch)
        assert a["accepted"] == b["accepted"]
        torch.testing.assert_close(one.flat(), three.flat(), rtol=1e-9, atol=1e-11)
    assert float((one.flat() - _apts(parts=1)[0].flat()).abs().max()) > 1e-4  # it trained


# ------------------------------------------------------------------------------------- hybrid
@pytest.mark.parametrize("name", ["sage", "interaction"])
def test_hybrid_pair_problems_are_first_order_consistent_on_inexact_subdomains(name):
    """Overlap 1 < L = 4: each part's subdomain gradient differs from its share of ∇f, yet every pair's local
    function has the value c_k·f_k and the gradient R_d g_t at the iterate."""
    algo, batch = _apts(parts=3, model=name, hybrid=True)
    theta = algo.flat()
    losses = algo.objective.on(batch)
    f, g = algo._full(losses)
    per_part = algo._part_gradients(losses)
    assert float((sum(gk for _, gk in per_part.values()) - g).abs().max()) > 1e-6  # inexact subdomains
    for block in algo.blocks:
        x0 = theta[block.coords]
        for k in algo.parts:
            with algo.only(block):
                h0, evaluate, _ = algo.pair_function(losses, block, k, x0, g, per_part)
                h, grad = evaluate(x0)
            assert h == pytest.approx(h0, rel=1e-12)
            torch.testing.assert_close(grad, g[block.coords], rtol=1e-10, atol=1e-12)


def test_hybrid_with_one_block_is_asm_on_the_same_parts():
    """One block over p = 3 parts with exact subdomains (overlap = L): additive Schwarz with the same local
    solver, weights and test, iterate by iterate."""
    sgd = partial(torch.optim.SGD, lr=0.05)
    objective, task, batch = _objective(3, overlap=3)
    comm, acc = comm_for(objective)
    apts = APTS(_model("sage", task, layers=3), objective, comm, blocks=["*"], local_method="solver",
                local_solver=sgd, local_steps=3, radius0=0.05, hybrid=True)
    objective2, _, _ = _objective(3, overlap=3)
    comm2, acc2 = comm_for(objective2)
    asm = ASM(_model("sage", task, layers=3), objective2, comm2, local_solver=sgd, local_steps=3,
              radius0=0.05, trial="separate")
    _assert_same_steps(apts, asm, batch)


def test_hybrid_times_each_pair_as_a_rank_and_needs_parts():
    algo, batch = _apts(parts=3, blocks=2, hybrid=True, local_steps=2)
    seen = _timed_keys(algo)
    stats = algo.step(batch)
    assert {("pair", d, k) for d in range(2) for k in range(3)} <= seen
    assert 0 <= stats["local_accepted"] <= 1
    with pytest.raises(ConfigError, match="ddm.hybrid"):
        _apts(parts=1, hybrid=True)


# ------------------------------------------------------------------------------- accounting
def test_work_counts_what_each_evaluation_covers():
    """A solver step of block d runs the layers from its first on: (L − start)/L of a gradient."""
    algo, batch = _apts(blocks="layers", local_method="solver", local_steps=3, layers=4)
    algo.step(batch)
    last = algo.accounting.last
    covers = [(4 - b.start) / 4 for b in algo.blocks]
    assert covers == [1.0, 0.75, 0.5, 0.25]
    # g_t; per block m − 1 gradients (the first is R_d g_t) and a forward; the trust-region test's forward
    assert last["grad_evals"] == pytest.approx(1 + 2 * sum(covers))
    assert last["loss_evals"] == pytest.approx(sum(covers) + 1)


def test_blocks_are_timed_as_ranks_with_one_part_and_gather_once():
    algo, batch = _apts(blocks="layers", local_method="solver", local_steps=2)
    seen = _timed_keys(algo)
    algo.step(batch)
    assert seen == {("block", d) for d in range(4)}
    assert algo.accounting.last["rounds"] == 1  # the all-gather of the corrections
    assert algo.accounting.last["comm_bytes"] == algo.num_params * 8


def test_on_parts_every_evaluation_is_reduced_and_the_parts_are_timed():
    layers = 3
    algo, batch = _apts(parts=3, blocks=2, local_method="solver", local_steps=2, layers=layers)
    seen = _timed_keys(algo)
    algo.step(batch)
    assert seen == {0, 1, 2}

    def forward(start):  # halo exchanges before every layer from the first run on, but layer 0
        return layers - max(start, 1)

    def gradient(start):  # and their reverse, down to the first layer run; then one all-reduce
        return forward(start) + (layers - 1 - start) + 1

    # g_t; per block one gradient (its second step) and one forward; the trust-region test's forward
    rounds = gradient(0) + sum(gradient(b.start) + forward(b.start) + 1 for b in algo.blocks) + forward(0) + 1
    assert [b.start for b in algo.blocks] == [0, 2]
    assert algo.accounting.last["rounds"] == rounds


# ------------------------------------------------------------------------------------ config
def test_composed_option_builds_and_steps():
    cfg = compose(["ddm=apts", "ddm.blocks=2"])
    objective, task, batch = _objective(1)
    made = build_objective(cfg.ddm, objective.data, objective.partition)
    comm, acc = comm_for(made)
    algo = build_algorithm(cfg.ddm, cfg.optimizer, _model("sage", task), made, comm)
    stats = algo.step(batch)
    assert isinstance(algo, APTS) and len(algo.blocks) == 2 and stats["loss"] > 0


@pytest.mark.parametrize("overrides,key", [
    (["ddm.globalization=offo"], "ddm.local_method"),
    (["ddm.local_method=newton"], "ddm.local_method"),
    (["ddm.nonmonotone_window=0"], "ddm.nonmonotone_window"),
    (["ddm.global_pass=true", "ddm.globalization=none", "ddm.local_method=solver"], "ddm.global_pass"),
])
def test_bad_options_name_the_key(overrides, key):
    cfg = compose(["ddm=apts", *overrides])
    objective, task, _ = _objective(1)
    with pytest.raises(ConfigError, match=key):
        made = build_objective(cfg.ddm, objective.data, objective.partition)
        comm, acc = comm_for(made)
        build_algorithm(cfg.ddm, cfg.optimizer, _model("sage", task), made, comm)


def test_a_model_without_stages_is_refused():
    from gnnddm.testing.gallery import EdgeGNN

    objective, task, _ = _objective(1)
    comm, acc = comm_for(objective)
    with pytest.raises(ConfigError, match="ddm=apts"):
        APTS(EdgeGNN(task.in_channels, task.out_channels, edge_dim=3), objective, comm)


def test_offo_with_the_box_solver_and_a_checkpoint_round_trip():
    from gnnddm.ddm.solvers import BoxAdagrad

    kw = dict(blocks=2, local_method="solver", local_solver=partial(BoxAdagrad, lr=0.1), globalization="offo")
    algo, batch = _apts(**kw)
    algo.step(batch)
    state = copy.deepcopy(algo.state_dict())  # as read back from a file
    twin, _ = _apts(**kw)
    twin.set_flat(algo.flat())
    twin.load_state_dict(state)
    algo.step(batch), twin.step(batch)
    torch.testing.assert_close(algo.flat(), twin.flat(), rtol=0, atol=0)
