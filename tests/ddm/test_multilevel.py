"""ddm=multilevel: reduction to global, first-order coherence at every level (of the model builder and of
the models a cycle solves), the trust-region test's predicted decrease, monotone accepted cycles, the OFFO
box, accounting, bad input; two_level on the grid hierarchy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from gnnddm.config import compose
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.objective import Objective
from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.algorithms import record_trust_region
from gnnddm.testing.gallery import EdgeGNN, comm_for, grid_data, station_data, to_dtype


def _problem(data=None, parts: int = 1, batch: int = 2):
    data = grid_data(16, 32, neighbours=8) if data is None else data
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    objective = Objective(data, build_partition(data.edge_index, data.num_nodes, labels, 2 if parts > 1 else 0))
    task = ForecastTask(data)
    return objective, task, to_dtype(task.batch(np.arange(batch)), torch.float64)


def _algorithm(overrides, objective=None, task=None, seed: int = 0):
    if objective is None:
        objective, task, _ = _problem()
    cfg = compose(overrides)
    objective = _with_levels(cfg, objective)
    torch.manual_seed(seed)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3).double()
    comm, acc = comm_for(objective)
    return build_algorithm(cfg.ddm, cfg.optimizer, model, objective, comm)


def _with_levels(cfg, objective):
    """The objective of ``cfg.ddm``'s algorithm: ``objective``'s problem, with its coarse levels."""
    return build_objective(cfg.ddm, objective.data, objective.partition, graph_builder=objective.graph_builder)


def test_one_level_is_the_global_method():
    objective, task, batch = _problem()
    ml = _algorithm(["ddm=multilevel", "ddm.levels=1", "ddm.pre_smooth=0", "ddm.post_smooth=1"], objective, task)
    glob = _algorithm(["ddm=global"], objective, task)
    for _ in range(4):
        ml.step(batch)
        glob.step(batch)
    torch.testing.assert_close(ml.flat(), glob.flat(), rtol=0, atol=0)
    assert ml.accounting.total["grad_evals"] == glob.accounting.total["grad_evals"] == 4
    assert ml.fine_grads == 4


def test_every_level_is_first_order_coherent_with_the_fine_gradient():
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=3"], objective, task)
    losses = algo.objective.on(batch)
    theta = algo.flat()
    f, g = algo._fine_grad(losses)
    g_up = g
    for level in (1, 2):
        h, _ = algo.coherent_model(losses, level, theta, g_up)
        algo.set_flat(theta)
        algo.model.zero_grad(set_to_none=True)
        h(algo.model).backward()
        grad_h = algo.flat_grad()
        torch.testing.assert_close(grad_h, g, rtol=1e-10, atol=1e-12)
        # the coarse loss alone is not coherent: the correction does real work
        algo.model.zero_grad(set_to_none=True)
        losses.coarse_loss(algo.model, level - 1).backward()
        assert not torch.allclose(algo.flat_grad(), g, rtol=1e-3, atol=1e-6)
        g_up = grad_h



def _gradient(algo, loss_fn, theta):
    """∇loss_fn(θ) by autograd (flat); the algorithm's gradients and accounting are left alone."""
    algo.set_flat(theta)
    grads = torch.autograd.grad(loss_fn(algo.model), algo.params)
    return torch.cat([g.reshape(-1) for g in grads])


def _record_coherence(algo):
    """Wrap ``algo.coherent_model``: for every coarse model h_ℓ a cycle builds, at its anchor θ_t (the point
    the cycle reached on level ℓ − 1), record ``(ℓ, θ_t, ∇h_ℓ(θ_t), ∇h_{ℓ−1}(θ_t), ∇f_ℓ(θ_t))`` with
    h_{ℓ−1} the model the same cycle solves on the level above (h_0 = f, the fine loss)."""
    build = algo.coherent_model
    above = {}
    seen = []

    def record(losses, level, anchor, g_up):
        above[0] = algo.objective.whole().on(losses)
        h, f_anchor = build(losses, level, anchor, g_up)
        seen.append((level, anchor.clone(), _gradient(algo, h, anchor), _gradient(algo, above[level - 1], anchor),
                     _gradient(algo, h.loss_fn, anchor)))
        above[level] = h
        algo.set_flat(anchor)
        return h, f_anchor

    algo.coherent_model = record
    return seen


@pytest.mark.parametrize("levels,coarsening,pre", [(3, "grid", "0"), (3, "grid", "[0,1,1]"),
                                                   (4, "matching", "[1,1,2,1]")])
def test_the_models_a_cycle_solves_are_coherent_with_the_corrected_model_above(levels, coarsening, pre):
    # the same θ on every level, so restriction is the identity: ∇h_ℓ(θ_t) = ∇h_{ℓ−1}(θ_t), through the cycle
    objective, task, batch = _problem(grid_data(8, 16, neighbours=8))
    algo = _algorithm(["ddm=multilevel", f"ddm.levels={levels}", f"ddm.coarsening={coarsening}",
                       f"ddm.pre_smooth={pre}", "ddm.post_smooth=[1,2,2]", "ddm.coarse_solver.lr=0.05",
                       "ddm.radius0=1.0"], objective, task)
    seen = _record_coherence(algo)
    for _ in range(2):
        seen.clear()
        algo.step(batch)
        assert [level for level, *_ in seen] == list(range(1, levels))
        for level, _, grad_h, grad_above, grad_f in seen:
            torch.testing.assert_close(grad_h, grad_above, rtol=1e-10, atol=1e-12,
                                       msg=lambda m, level=level: f"level {level}: {m}")
            # the coarse loss alone is not coherent: the correction does real work on every level
            assert not torch.allclose(grad_f, grad_above, rtol=1e-3, atol=1e-6)
        if pre != "0":  # level 2 starts where level 1's pre-smoothing ended, not at the fine anchor
            assert not torch.equal(seen[0][1], seen[1][1])


@pytest.mark.parametrize("pre", ["0", "[0,1,1]"])
def test_the_trust_region_test_predicts_the_decrease_of_the_corrected_coarse_model(pre):
    # ρ = (f(θ_a) − f(θ_c)) / (h_1(θ_a) − h_1(θ_c)), h_1(θ) = f_1(θ) + ⟨∇f(θ_a) − ∇f_1(θ_a), θ − θ_a⟩, made here
    objective, task, batch = _problem(grid_data(8, 16, neighbours=8))
    algo = _algorithm(["ddm=multilevel", "ddm.levels=3", f"ddm.pre_smooth={pre}", "ddm.post_smooth=[1,3,3]",
                       "ddm.coarse_solver.lr=0.05", "ddm.radius0=1.0"], objective, task)
    tests, ends = record_trust_region(algo)
    losses = algo.objective.on(batch)
    fine, coarse = losses.global_loss, functools.partial(losses.coarse_loss, level=0)
    for _ in range(3):
        tests.clear()
        ends.clear()
        stats = algo.step(batch)
        theta = algo.flat()
        [(actual, predicted)], [(theta_a, theta_c)] = tests, ends
        corr = _gradient(algo, fine, theta_a) - _gradient(algo, coarse, theta_a)
        with torch.no_grad():
            algo.set_flat(theta_a)
            f_a, f1_a = float(fine(algo.model)), float(coarse(algo.model))
            algo.set_flat(theta_c)
            f_c, f1_c = float(fine(algo.model)), float(coarse(algo.model))
        algo.set_flat(theta)
        linear = float(torch.dot(corr, theta_c - theta_a))
        h_decrease = f1_a - (f1_c + linear)
        assert predicted == pytest.approx(h_decrease, rel=1e-9, abs=1e-15)
        assert stats["predicted"] == predicted and actual == pytest.approx(f_a - f_c, rel=1e-9, abs=1e-15)
        assert stats["rho"] == pytest.approx(actual / predicted)
        # f_1's own decrease differs: the test would be a different one without the correction
        assert abs(linear) > 1e-3 * abs(h_decrease) and stats["coarse_step_norm"] > 0

@pytest.mark.parametrize("post", ["[0,3,3]", "[1,3,3]"])
def test_an_accepted_cycle_never_increases_f_and_a_rejected_one_changes_nothing(post):
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=3", f"ddm.post_smooth={post}", "ddm.radius0=2.0",
                       "ddm.radius_max=5.0", "ddm.coarse_solver.lr=0.05"], objective, task)
    seen = set()
    losses = objective.on(batch)
    for _ in range(12):
        theta_a = algo.flat()
        with torch.no_grad():
            f_a = float(losses.global_loss(algo.model))
        fine_before = algo.fine_grads
        # the fine smoothing (global optimizer) comes after the test: stop the cycle there to see its end point
        stats = _cycle_without_post_smoothing(algo, batch)
        with torch.no_grad():
            f_end = float(losses.global_loss(algo.model))
        accepted = bool(stats["accepted"])
        seen.add(accepted)
        if accepted:
            assert f_end <= f_a
            assert stats["rho"] > 0.25 and stats["actual"] >= 0
        else:
            torch.testing.assert_close(algo.flat(), theta_a, rtol=0, atol=0)
        assert algo.fine_grads - fine_before == (2 if post.startswith("[1") else 1)
    assert True in seen


@pytest.mark.parametrize("post,forwards", [("[0,3]", 1), ("[1,3]", 0)])
def test_the_trust_region_tests_fine_forward_pass_is_counted(post, forwards):
    """Without fine post-smoothing the test evaluates f(θ_a + s) by one fine forward pass, counted in
    ``fine_loss_evals``; with it the first post-smoothing gradient brings f along, and nothing is counted."""
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=2", f"ddm.post_smooth={post}"], objective, task)
    for i in range(1, 3):
        stats = algo.step(batch)
        assert stats["fine_loss_evals"] == forwards * i
    fine_forward = algo.accounting.total["loss_evals"] - (
        2 * algo.objective.coarse[0]["num_clusters"] / objective.num_nodes)  # each cycle's h-value on level 1
    assert fine_forward == pytest.approx(2 * forwards)


def _cycle_without_post_smoothing(algo, batch):
    """One outer iteration on ``batch`` with the fine post-smoothing replaced by nothing (the test's end
    point)."""
    smooth = algo._smooth_fine
    calls = []

    def record(losses, steps, grad=None):
        calls.append(steps)
        if grad is None and steps:  # the fine gradient the post-smoothing would take, counted as the method does
            algo._fine_grad(losses)

    algo._smooth_fine = record
    try:
        return algo.step(batch)
    finally:
        algo._smooth_fine = smooth


@pytest.mark.parametrize("solver", ["gnnddm.ddm.solvers.BoxAdagrad", "torch.optim.Adam"])
def test_offo_cycles_never_leave_the_box_the_fine_level_allows(solver):
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=3", "ddm.globalization=offo", "ddm.post_smooth=[0,4,4]",
                       "ddm.pre_smooth=[0,2,2]", f"ddm.coarse_solver._target_={solver}", "ddm.coarse_solver.lr=0.5",
                       "ddm.kappa=0.05"], objective, task)
    iterates = []
    solve = algo.local_solve

    def record(*args, **kwargs):
        out = solve(*args, **kwargs)
        iterates.append(out[0].clone())
        return out

    algo.local_solve = record
    fine = objective.whole().on(objective.on(batch))
    for _ in range(4):
        theta_a = algo.flat()
        _, g = algo._loss_grad(fine)
        acc_before = torch.full_like(g, algo.varsigma) if algo.accumulator is None else algo.accumulator.clone()
        iterates.clear()
        algo.step(batch)
        half = algo.kappa * g.abs() / torch.sqrt(acc_before + g * g)
        assert iterates, "the coarse levels did no step"
        for theta in [*iterates, algo.flat()]:
            assert bool(((theta - theta_a).abs() <= half * (1 + 1e-9) + 1e-15).all())
        assert float((algo.flat() - theta_a).abs().max()) > 0


def test_fine_and_coarse_work_are_counted_per_level():
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=2", "ddm.post_smooth=[1,3]", "ddm.globalization=none"],
                      objective, task)
    algo.step(batch)
    n, n1 = objective.num_nodes, algo.objective.coarse[0]["num_clusters"]
    # fine: g at θ_a and the post-smoothing gradient; level 1: coherence, then 3 steps of which the first
    # reuses the coherent gradient (still at the anchor); one forward h-value at the level's end
    assert algo.accounting.total["grad_evals"] == pytest.approx(2 + (1 + 2) * n1 / n)
    assert algo.accounting.total["loss_evals"] == pytest.approx(n1 / n)
    assert algo.fine_grads == 2


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["ddm.pre_smooth=0", "ddm.post_smooth=0"], r"ddm.pre_smooth / ddm.post_smooth: ν = 0 at every level"),
        (["ddm.levels=9"], r"ddm.levels: the 16 x 32 grid allows at most 4 levels .* got 9"),
        (["ddm.post_smooth=[1,2,2,2]"], r"ddm.post_smooth: expected one integer or a list of 1 to 3 values"),
        (["ddm.coarsening=octree"], r"ddm.coarsening: unknown coarsening .octree."),
        (["ddm.levels=0"], r"ddm.levels: must be >= 1"),
    ],
)
def test_bad_options_name_their_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        _algorithm(["ddm=multilevel", *overrides])


def test_grid_coarsening_on_stations_names_the_key():
    objective, task, batch = _problem(station_data(40, k=4))
    with pytest.raises(ConfigError, match=r"ddm.coarsening: grid .*stations"):
        _algorithm(["ddm=multilevel", "ddm.levels=2", "ddm.post_smooth=[0,4]"], objective, task)
    algo = _algorithm(["ddm=multilevel", "ddm.levels=2", "ddm.coarsening=matching", "ddm.post_smooth=[1,2]"],
                      *_problem(station_data(40, k=4))[:2])
    assert np.isfinite(algo.step(batch)["loss"])


@pytest.mark.slow
def test_multilevel_trains_the_fine_loss_down():
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.levels=3", "ddm.coarse_solver.lr=0.01", "optimizer.lr=0.01"],
                      objective, task)
    first = algo.step(batch)["loss"]
    for _ in range(15):
        last = algo.step(batch)["loss"]
    assert last < 0.8 * first


def test_two_level_takes_the_grid_hierarchy_as_coarse_space():
    objective, task, batch = _problem(parts=4)
    algo = _algorithm(["ddm=two_level", "ddm.coarsening=grid", "ddm.coarse_levels=2"], objective, task)
    assert [c["num_clusters"] for c in algo.objective.coarse] == [8 * 16, 4 * 8]
    stats = algo.step(batch)
    assert np.isfinite(stats["loss"]) and stats["coarse_step_norm"] > 0
    with pytest.raises(ConfigError, match=r"ddm.coarse_levels: the 16 x 32 grid allows at most 3 levels .* got 5"):
        _algorithm(["ddm=two_level", "ddm.coarsening=grid", "ddm.coarse_levels=5"], *_problem(parts=4)[:2])


def test_coarse_solvers_take_the_global_rate_unless_given_and_list_lengths_follow_the_levels():
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "optimizer.lr=0.02"], objective, task)
    assert [s.param_groups[0]["lr"] for s in algo.solvers.values()] == [0.02, 0.02]
    algo = _algorithm(["ddm=multilevel", "optimizer.lr=0.02", "ddm.coarse_solver.lr=0.005"], objective, task)
    assert [s.param_groups[0]["lr"] for s in algo.solvers.values()] == [0.005, 0.005]
    with pytest.raises(ConfigError, match=r"ddm.post_smooth: .*\(ddm.levels=2\).*\[0, 4, 8\]; set ddm.post_smooth"):
        _algorithm(["ddm=multilevel", "ddm.levels=2"], *_problem()[:2])


def test_checkpoint_state_round_trips():
    objective, task, batch = _problem()
    algo = _algorithm(["ddm=multilevel", "ddm.globalization=offo"], objective, task)
    algo.step(batch)
    state = algo.state_dict()
    other = _algorithm(["ddm=multilevel", "ddm.globalization=offo"], objective, task)
    other.load_state_dict(state)
    assert other.fine_grads == algo.fine_grads and torch.equal(other.accumulator, algo.accumulator)
    assert OmegaConf.is_config(compose(["ddm=multilevel"]).ddm)
