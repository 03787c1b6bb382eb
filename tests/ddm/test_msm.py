"""ddm=msm: multiplicative Schwarz, sequential or by colours of non-adjacent parts (gnnddm/ddm/msm.py).

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
from gnnddm.gallery import EdgeGNN, LinearGNN, comm_for, least_squares_problem, problem
from gnnddm.partition.coarse import coarsen
from gnnddm.partition.metrics import colour_classes

ADAM = partial(torch.optim.Adam, lr=0.01)
SGD_SMALL = partial(torch.optim.SGD, lr=1e-3)   # short local steps: the trial is accepted


def _algo(cls, objective, model, optimizer=None, **kw):
    comm, accounting = comm_for(objective)
    return cls(model, objective, comm, accounting, optimizer, **kw)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


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


# ------------------------------------------------------------------- convergence
def test_msm_converges_and_colored_groups_are_independent():
    objective, task, truth = least_squares_problem(parts=4, overlap=1)
    groups = colour_classes(objective.partition.parts, objective.data.edge_index, range(4))
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


# ------------------------------------------------------------------- fused trial
def test_msm_trust_region_with_fused_trial_decides_one_iteration_later():
    objective, model = _setup()
    algo, acc = _algo_acc(MSM, objective, model, globalization="trust_region", trial="fused", radius0=0.01,
                          local_solver=SGD_SMALL)
    assert "accepted" not in algo.step()
    assert acc.last["rounds"] == 1 + 3  # [g, f], one correction per subdomain, no trial collective
    assert algo.step()["accepted"] == 1.0
    assert acc.last["rounds"] == 1 + 3


# -------------------------------------------------------------------- accounting
def test_msm_sequential_and_colored():
    objective, model, n_loc, loc, _ = _counting_setup()
    # [g, f] then one all-reduce of the correction per subdomain; the first subdomain's first step uses g_t
    it, P, _ = _one_iteration(MSM, objective, model, local_steps=3, local_solver=ADAM)
    _check(it, 1 + 3, (P + 1) + 3 * P, n_loc + 2 * loc[0] + 3 * loc[1] + 3 * loc[2])
    # colored, trust region: [g, f], one [correction, predicted] per colour, then [f(θ_t + s)]; every
    # subdomain also evaluates h_k(θ_k) and f_k(θ_t + s)
    it, P, algo = _one_iteration(MSM, objective, model, local_steps=3, local_solver=ADAM, colored=True,
                                 globalization="trust_region")
    c = len(algo.groups)
    # bands 0 | 1 | 2 of the grid: 0 and 2 do not touch; the most connected part (1) is coloured first, and
    # only the first colour starts at θ_t where its first step can use g_t
    assert algo.groups == [[1], [0, 2]]
    _check(it, 1 + c + 1, (P + 1) + c * (P + 1) + 1, n_loc + 2 * loc[1] + 3 * loc[0] + 3 * loc[2], 2 * n_loc)
