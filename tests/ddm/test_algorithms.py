"""Properties of the training algorithms that users rely on (docs/algorithms.md)."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.global_ import Global
from gnnddm.ddm.llcg import LLCG
from gnnddm.ddm.local_avg import LocalAvg
from gnnddm.ddm.msm import MSM, colour_parts
from gnnddm.ddm.solvers import BoxAdagrad
from gnnddm.ddm.sync import Sync
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.gallery import EdgeGNN, LinearGNN, comm_for, least_squares_problem, problem
from gnnddm.partition.coarse import coarsen

ADAM = partial(torch.optim.Adam, lr=0.01)


def _model(task, seed=0):
    torch.manual_seed(seed)
    return EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2).double()


def _algo(cls, objective, model, optimizer=None, **kw):
    comm, accounting = comm_for(objective)
    return cls(model, objective, comm, accounting, optimizer, **kw)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _solver_steps(model, objective, steps, make_opt=lambda ps: torch.optim.Adam(ps, lr=0.01)):
    """Reference: ``steps`` steps of a torch optimizer on the global loss."""
    opt = make_opt(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        objective.global_loss(model).backward()
        opt.step()
    return _flat(model)


def _with_coarse(objective, data, clusters=6):
    objective.add_coarse_level(coarsen(data.edge_index, data.num_nodes, clusters, edge_weight=data.edge_weight,
                                       area=data.area, lat=data.lat, lon=data.lon))
    return objective


# ------------------------------------------------------------------------------------ baselines
def test_sync_reproduces_global_trajectory_with_adam():
    _, _, objective, task = problem(parts=3, overlap=2)
    m_global, m_sync = _model(task), _model(task)
    adam = lambda ps: torch.optim.Adam(ps, lr=0.05)  # noqa: E731
    g = _algo(Global, objective, m_global, adam)
    s = _algo(Sync, objective, m_sync, adam)
    for _ in range(6):
        lg, ls = g.step()["loss"], s.step()["loss"]
        assert ls == pytest.approx(lg, rel=1e-12)
    torch.testing.assert_close(_flat(m_sync), _flat(m_global), rtol=1e-9, atol=1e-11)
    assert float(torch.linalg.vector_norm(_flat(m_sync) - _flat(_model(task)))) > 0.05  # it did move


def test_local_avg_with_one_sgd_step_is_one_global_sgd_step():
    # Σ_k ω_k ∇(f_k / ω_k) = Σ_k ∇f_k = ∇f with exact overlaps, for any number of parts
    _, _, objective, task = problem(parts=3, overlap=2)
    model, ref = _model(task), _model(task)
    algo = _algo(LocalAvg, objective, model, local_steps=1, local_solver=partial(torch.optim.SGD, lr=0.1))
    algo.step()
    expected = _solver_steps(ref, objective, 1, lambda ps: torch.optim.SGD(ps, lr=0.1))
    torch.testing.assert_close(_flat(model), expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------ p = 1
P1_CASES = {
    "asm_none": (ASM, {"globalization": "none"}),
    "asm_tr_large_radius": (ASM, {"globalization": "trust_region", "radius0": 1e6, "trial": "separate"}),
    "asm_no_foc": (ASM, {"globalization": "none", "foc": False}),
    "msm": (MSM, {}),
    "local_avg": (LocalAvg, {}),
    "two_level_without_coarse": (TwoLevel, {"globalization": "none", "coarse_steps": 0}),
}


@pytest.mark.parametrize("case", sorted(P1_CASES))
@pytest.mark.slow
def test_one_subdomain_reduces_to_local_solver_on_global_loss(case):
    cls, kw = P1_CASES[case]
    _, _, objective, task = problem(parts=1, overlap=0)
    model, ref = _model(task), _model(task)
    algo = _algo(cls, objective, model, local_steps=3, local_solver=ADAM, **kw)
    for _ in range(2):
        stats = algo.step()
        assert stats.get("accepted", 1.0) == 1.0
    # the local solver (one Adam, state kept across outer iterations) ran 2 x 3 steps on f
    torch.testing.assert_close(_flat(model), _solver_steps(ref, objective, 6), rtol=1e-9, atol=1e-11)


def test_two_level_without_coarse_steps_is_asm():
    _, _, objective, task = problem(parts=3, overlap=2)
    m_asm, m_two = _model(task), _model(task)
    a = _algo(ASM, objective, m_asm, local_solver=ADAM)
    t = _algo(TwoLevel, objective, m_two, local_solver=ADAM, coarse_steps=0)
    for _ in range(3):
        assert t.step() == a.step()
    torch.testing.assert_close(_flat(m_two), _flat(m_asm), rtol=0, atol=0)


def test_llcg_is_local_avg_then_server_steps_on_the_full_graph():
    _, _, objective, task = problem(parts=3, overlap=0)
    m_llcg, ref = _model(task), _model(task)
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    _algo(LLCG, objective, m_llcg, sgd, local_steps=2, local_solver=ADAM, server_steps=2).step()
    _algo(LocalAvg, objective, ref, local_steps=2, local_solver=ADAM).step()
    _solver_steps(ref, objective, 2, sgd)
    torch.testing.assert_close(_flat(m_llcg), _flat(ref), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------ coherence
def test_local_models_are_first_order_coherent():
    data, _, objective, task = problem(parts=3, overlap=2)
    _with_coarse(objective, data)
    model = _model(task)
    full = objective.global_loss(model)
    grad_f = torch.autograd.grad(full, list(model.parameters()))
    grad_f = torch.cat([g.reshape(-1) for g in grad_f])
    for foc in (True, False):
        algo = _algo(TwoLevel, objective, model, foc=foc, local_solver=ADAM)
        theta = algo.flat()
        g, _, per_part = algo.subdomain_gradients(keep=True)
        torch.testing.assert_close(g, grad_f, rtol=1e-10, atol=1e-12)
        models = [algo.subdomain_model(k, theta, g, per_part)[0] for k in range(3)]
        models.append(algo.coarse_model(0, theta, g)[0])
        for h in models:
            algo.set_flat(theta)
            grad_h = torch.cat([x.reshape(-1) for x in torch.autograd.grad(h(model), algo.params)])
            if foc or h is models[-1]:  # the coarse model is always τ-corrected
                torch.testing.assert_close(grad_h, grad_f, rtol=1e-9, atol=1e-11)
            else:  # without the coherence term ∇h_k(θ_t) = p ∇f_k(θ_t), far from ∇f
                assert float(torch.linalg.vector_norm(grad_h - grad_f)) > 0.1 * float(torch.linalg.vector_norm(grad_f))


# ------------------------------------------------------------------------------------ globalisation
def test_rejected_step_leaves_parameters_and_shrinks_radius():
    _, _, objective, task = problem(parts=3, overlap=2)
    model = _model(task)
    theta0 = _flat(model).clone()
    # huge SGD steps inside a huge region overshoot: f increases, ρ < η₁
    algo = _algo(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1e3), radius0=50.0, trial="separate")
    stats = algo.step()
    assert stats["accepted"] == 0.0 and stats["rho"] < 0.25
    assert stats["actual"] < 0  # the loss went up
    torch.testing.assert_close(_flat(model), theta0, rtol=0, atol=0)
    assert algo.tr.radius == pytest.approx(50.0 * 0.9)


def test_accepted_steps_stay_in_the_trust_region_and_grow_it_on_good_agreement():
    _, _, objective, task = problem(parts=3, overlap=2)
    model = _model(task)
    algo = _algo(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1e-3), radius0=0.01, trial="separate")
    theta0 = _flat(model).clone()
    stats = algo.step()
    assert stats["accepted"] == 1.0 and stats["rho"] > 0.75
    assert algo.tr.radius == pytest.approx(0.01 * 1.2)
    assert float(torch.linalg.vector_norm(_flat(model) - theta0)) <= 0.01 * (1 + 1e-12)
    # with large local steps the combined step is cut to the radius Δ (each local one to Δ/p)
    algo = _algo(ASM, objective, _model(task), local_solver=partial(torch.optim.SGD, lr=1.0), radius0=0.01,
                 combine="sum")
    assert algo.step()["step_norm"] <= 0.01 * (1 + 1e-12)


def test_offo_keeps_the_combined_step_in_the_adagrad_box_and_evaluates_no_loss():
    _, _, objective, task = problem(parts=3, overlap=2)
    model = _model(task)
    algo = _algo(ASM, objective, model, globalization="offo", kappa=0.5, varsigma=1e-2,
                 local_solver=partial(BoxAdagrad, lr=10.0))
    for _ in range(3):
        theta_t = _flat(model).clone()
        g = algo.subdomain_gradients()[0]
        algo.accounting.end_iteration()
        acc = (1e-2 if algo.accumulator is None else algo.accumulator) + g * g
        half = 0.5 * g.abs() / acc.sqrt()
        stats = algo.step()
        assert stats["accepted"] == 1.0
        step = _flat(model) - theta_t
        assert bool((step.abs() <= half * (1 + 1e-9) + 1e-15).all())
        assert float(step.abs().max()) > 0.2 * float(half.max())  # large lr: the box is what limits the step
    assert algo.accounting.as_dict()["loss_evals"] == 0.0


# ------------------------------------------------------------------------------------ convergence
@pytest.mark.parametrize(
    "cls,kw",
    [
        (ASM, {}),
        (ASM, {"local_solver": partial(torch.optim.SGD, lr=0.5), "combine": "average"}),
        (TwoLevel, {"coarse": "additive"}),
        (TwoLevel, {"coarse": "pre"}),
        (TwoLevel, {"coarse": "post"}),
    ],
    ids=["asm", "asm_sgd_average", "two_level_additive", "two_level_pre", "two_level_post"],
)
def test_converges_to_the_least_squares_minimiser(cls, kw):
    objective, task, truth = least_squares_problem(parts=3, overlap=1)
    if cls is TwoLevel:
        _with_coarse(objective, objective.data, clusters=8)
    torch.manual_seed(0)
    model = LinearGNN(task.in_channels, task.out_channels).double()
    opts = {"local_steps": 3, "local_solver": partial(torch.optim.Adam, lr=0.05), "radius0": 0.5, **kw}
    algo = _algo(cls, objective, model, **opts)
    start = float(objective.global_loss(model))
    for _ in range(100):
        algo.step()
    assert float(objective.global_loss(model)) < 1e-6 * start
    torch.testing.assert_close(_flat(model), _flat(truth), rtol=0, atol=1e-3)


def test_msm_converges_and_colored_groups_are_independent():
    objective, task, truth = least_squares_problem(parts=4, overlap=1)
    groups = colour_parts(objective.partition.parts, objective.data.edge_index, range(4))
    adjacent = {(int(a), int(b)) for a, b in objective.partition.part_adjacency.T}
    assert sorted(k for grp in groups for k in grp) == [0, 1, 2, 3]
    assert all((a, b) not in adjacent for grp in groups for a in grp for b in grp if a != b)
    for colored in (False, True):
        torch.manual_seed(0)
        model = LinearGNN(task.in_channels, task.out_channels).double()
        algo = _algo(MSM, objective, model, colored=colored, globalization="trust_region", radius0=0.5,
                     local_solver=partial(torch.optim.Adam, lr=0.05))
        assert len(algo.groups) == (len(groups) if colored else 4)
        for _ in range(100):
            algo.step()
        torch.testing.assert_close(_flat(model), _flat(truth), rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("cls,kw", [(ASM, {}), (ASM, {"globalization": "offo", "local_solver":
                                    partial(BoxAdagrad, lr=0.1)}), (LLCG, {})], ids=["asm", "offo", "llcg"])
def test_resuming_from_state_dict_continues_the_same_run(cls, kw):
    _, _, objective, task = problem(parts=3, overlap=2)
    adam = lambda ps: torch.optim.Adam(ps, lr=0.01)  # noqa: E731
    model = _model(task)
    algo = _algo(cls, objective, model, adam, local_solver=ADAM, **kw) if not kw else \
        _algo(cls, objective, model, adam, **kw)
    for _ in range(2):
        algo.step()
    saved_model, saved_algo = copy.deepcopy(model.state_dict()), copy.deepcopy(algo.state_dict())
    for _ in range(2):
        algo.step()
    resumed = _model(task, seed=5)
    resumed.load_state_dict(saved_model)
    again = _algo(cls, objective, resumed, adam, local_solver=ADAM, **kw) if not kw else \
        _algo(cls, objective, resumed, adam, **kw)
    again.load_state_dict(saved_algo)
    for _ in range(2):
        again.step()
    torch.testing.assert_close(_flat(resumed), _flat(model), rtol=0, atol=0)
    assert again.accounting.as_dict()["rounds"] == algo.accounting.as_dict()["rounds"]
