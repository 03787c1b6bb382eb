"""ddm=two_level: ASM with a coarse correction (additive, pre or post), first-order coherent local and
coarse models (gnnddm/ddm/two_level.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

import time
from functools import partial

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.gallery import EdgeGNN, comm_for, problem
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


def _with_coarse(objective, data, clusters=6):
    objective = objective.with_coarse_level(coarsen(
        data.edge_index, data.num_nodes, clusters, edge_weight=data.edge_weight, area=data.area, lat=data.lat,
        lon=data.lon))
    return objective


def _setup(parts=3, seed=0, coarse=False):
    data, _, objective, task = problem(parts=parts, overlap=2)
    if coarse:
        objective = objective.with_coarse_level(coarsen(
            data.edge_index, data.num_nodes, 6, edge_weight=data.edge_weight, area=data.area, lat=data.lat,
            lon=data.lon))
    torch.manual_seed(seed)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2).double()
    return objective, model


def _algo_acc(cls, objective, model, **kw):
    comm, acc = comm_for(objective)
    return cls(model, objective, comm, acc, **kw), acc


def _counting_setup():
    data, _, objective, task = problem(parts=3, overlap=2)
    objective = objective.with_coarse_level(coarsen(
        data.edge_index, data.num_nodes, 6, edge_weight=data.edge_weight, area=data.area, lat=data.lat,
        lon=data.lon))
    torch.manual_seed(0)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3).double()
    n_loc = sum(objective.local_work(k) for k in range(3))
    loc = [objective.local_work(k) for k in range(3)]
    return objective, model, n_loc, loc, objective.coarse_work(0)


def _one_iteration(cls, objective, model, **kw):
    if issubclass(cls, ASM | MSM):  # the hand counts below are those of a trial with its own all-reduce
        kw.setdefault("trial", "separate")
    comm, acc = comm_for(objective, alpha=1.0, beta=1e-3)
    algo = cls(model, objective, comm, acc, lambda ps: torch.optim.Adam(ps, lr=0.01), **kw)
    start = time.perf_counter()
    algo.step()
    elapsed = time.perf_counter() - start
    it = acc.last
    comm_time = it["rounds"] * 1.0 + it["comm_bytes"] * 1e-3
    # the modelled time = collectives + slowest compute per phase, which cannot exceed the serial run
    assert comm_time < it["model_time"] <= comm_time + elapsed
    return it, algo.num_params, algo


def _check(it, rounds, numbers, grad_evals, loss_evals=0.0):
    assert it["rounds"] == rounds
    assert it["comm_bytes"] == 8 * numbers
    assert it["grad_evals"] == pytest.approx(grad_evals)
    assert it["loss_evals"] == pytest.approx(loss_evals)


# -------------------------------------------------------------------- reductions
def test_two_level_without_coarse_steps_is_asm():
    _, _, objective, task = problem(parts=3, overlap=2)
    m_asm, m_two = _model(task), _model(task)
    a = _algo(ASM, objective, m_asm, local_solver=ADAM)
    t = _algo(TwoLevel, objective, m_two, local_solver=ADAM, coarse_steps=0)
    for _ in range(3):
        assert t.step() == a.step()
    torch.testing.assert_close(_flat(m_two), _flat(m_asm), rtol=0, atol=0)


# --------------------------------------------------------------------- coherence
def test_local_models_are_first_order_coherent():
    data, _, objective, task = problem(parts=3, overlap=2)
    objective = _with_coarse(objective, data)
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


# ------------------------------------------------------------- coarse correction
def test_two_level_additive_keeps_the_sum_of_both_corrections_in_the_region():
    objective, model = _setup(coarse=True)
    theta0 = _flat(model)
    algo, _ = _algo_acc(TwoLevel, objective, model, coarse="additive", coarse_steps=3, radius0=0.01,
                        local_solver=partial(torch.optim.SGD, lr=1.0), trial="separate", globalization="trust_region")
    stats = algo.step()
    assert 0.9 * 0.005 < stats["coarse_step_norm"] <= 0.005 * (1 + 1e-12)  # half the region each
    if stats["accepted"]:
        assert float(torch.linalg.vector_norm(_flat(model) - theta0)) <= 0.01 * (1 + 1e-12)
    assert stats["step_norm"] <= 0.01 * (1 + 1e-12)


# -------------------------------------------------------------------- accounting
def test_two_level():
    objective, model, n_loc, _, n_c = _counting_setup()
    # additive: as asm; the coarse solve is redundant on all p = 3 modelled ranks: ∇f_c(θ_t) and m_c - 1 = 1
    # further gradient (the first step uses g_t), plus h_c(θ_c) forward for the predicted decrease
    it, P, _ = _one_iteration(TwoLevel, objective, model, local_steps=3, local_solver=ADAM, coarse="additive",
                           coarse_steps=2)
    _check(it, 3, (P + 1) + (P + 1) + 1, 3 * n_loc + 3 * 2 * n_c, 2 * n_loc + 3 * n_c)
    # pre / post: one more all-reduce [g, f] at the intermediate point
    for mode in ("pre", "post"):
        it, P, _ = _one_iteration(TwoLevel, objective, model, local_steps=3, local_solver=ADAM, coarse=mode,
                               coarse_steps=2)
        _check(it, 4, 3 * (P + 1) + 1, 4 * n_loc + 3 * 2 * n_c, 2 * n_loc + 3 * n_c)
