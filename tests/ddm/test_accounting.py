"""Rounds, bytes and work of one outer iteration match hand counts; the modelled time formula.

Notation in the hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains with
n_loc = Σ_k |V_k ∪ H_k| / N (the work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

import time
from functools import partial

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.global_ import Global
from gnnddm.ddm.llcg import LLCG
from gnnddm.ddm.local_avg import LocalAvg
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.solvers import BoxAdagrad
from gnnddm.ddm.sync import Sync
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.distributed.accounting import Accounting
from gnnddm.gallery import EdgeGNN, comm_for, problem
from gnnddm.partition.coarse import coarsen

ADAM = partial(torch.optim.Adam, lr=0.01)


def test_model_time_is_sum_over_phases_of_slowest_rank_plus_collective():
    acc = Accounting(alpha=0.5, beta=0.01)
    acc.add_compute(0, 1.0)
    acc.add_compute(1, 2.0)
    acc.add_compute(0, 0.5)           # rank 0: 1.5, rank 1: 2.0 -> 2.0
    acc.add_work(grad_evals=0.7)
    acc.collective(100)               # + 0.5 + 100 * 0.01
    acc.add_compute(2, 3.0)
    acc.add_common(0.25)              # every rank: + 0.25
    it = acc.end_iteration()          # last phase without collective
    assert it["model_time"] == pytest.approx(2.0 + 0.5 + 1.0 + 3.0 + 0.25)
    assert (it["rounds"], it["comm_bytes"], it["grad_evals"]) == (1, 100, 0.7)
    acc.collective(8)
    acc.end_iteration()
    multinode = 2 * 25e-6 + 108 / 12.5e9  # one party: the ring factor is 1
    assert acc.as_dict() == {"rounds": 2, "comm_bytes": 108, "grad_evals": 0.7, "loss_evals": 0.0,
                             "model_time": pytest.approx(6.75 + 0.5 + 0.08),
                             "model_time_multinode": pytest.approx(5.25 + multinode),
                             "compute_time": pytest.approx(5.25)}
    assert acc.iterations == 2


def test_the_multinode_network_prices_each_kind_of_collective():
    """α = 25 µs; ring all-reduce 2(p−1)/p·b/12.5e9, all-gather (p−1)/p·b/12.5e9, halo and broadcast b/12.5e9."""
    b, p = 1_000_000, 8
    expected = {"all_reduce": 2 * 7 / 8 * b / 12.5e9, "all_gather": 7 / 8 * b / 12.5e9,
                "broadcast": b / 12.5e9, "halo": b / 12.5e9}
    for kind, seconds in expected.items():
        acc = Accounting(alpha=1e-5, beta=1e-9)
        acc.collective(b, kind=kind, parties=p)
        it = acc.end_iteration()
        assert it["model_time_multinode"] == pytest.approx(25e-6 + seconds)
        assert it["model_time"] == pytest.approx(1e-5 + 1e-9 * b)  # the default model ignores the kind
    with pytest.raises(ValueError, match="kind"):
        Accounting().collective(8, kind="scatter")


def _setup():
    data, _, objective, task = problem(parts=3, overlap=2)
    objective.add_coarse_level(coarsen(data.edge_index, data.num_nodes, 6, edge_weight=data.edge_weight,
                                       area=data.area, lat=data.lat, lon=data.lon))
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


def test_global_and_sync():
    objective, model, n_loc, _, _ = _setup()
    it, _, _ = _one_iteration(Global, objective, model)
    _check(it, 0, 0, 1.0)                                   # one full-graph gradient, no communication
    it, P, _ = _one_iteration(Sync, objective, model)
    _check(it, 1, P + 1, n_loc)                             # all-reduce [g, f]


def test_local_avg_and_llcg():
    objective, model, n_loc, _, _ = _setup()
    it, P, _ = _one_iteration(LocalAvg, objective, model, local_steps=3, local_solver=ADAM)
    _check(it, 1, P + 1, 3 * n_loc)                         # all-reduce [Σ ω_k θ_k, f]
    it, P, _ = _one_iteration(LLCG, objective, model, local_steps=3, local_solver=ADAM, server_steps=2)
    _check(it, 2, (P + 1) + P, 3 * n_loc + 2)               # + broadcast θ; 2 full-graph gradients


@pytest.mark.slow
def test_asm_variants():
    objective, model, n_loc, _, _ = _setup()
    # trust region + foc: [g, f(θ_t)], [s, predicted], [f(θ_t + s)]; m steps but the first uses g_t;
    # forward-only: h_k(θ_k) and f_k(θ_t + s) on every subdomain
    it, P, _ = _one_iteration(ASM, objective, model, local_steps=3, local_solver=ADAM)
    _check(it, 3, (P + 1) + (P + 1) + 1, n_loc + 2 * n_loc, 2 * n_loc)
    # offo: [g, f(θ_t)], [s]; no loss values
    it, P, _ = _one_iteration(ASM, objective, model, local_steps=3, local_solver=partial(BoxAdagrad, lr=0.1),
                           globalization="offo")
    _check(it, 2, (P + 1) + P, 3 * n_loc)
    # no foc, no globalisation: nothing needs g_t; one all-reduce [s, f(θ_t)], m full local steps
    it, P, _ = _one_iteration(ASM, objective, model, local_steps=3, local_solver=ADAM, foc=False,
                           globalization="none")
    _check(it, 1, P + 1, 3 * n_loc)
    # two global steps add two all-reduces [g, f]
    it, P, _ = _one_iteration(ASM, objective, model, local_steps=3, local_solver=ADAM, global_steps=2)
    _check(it, 5, (P + 1) + (P + 1) + 1 + 2 * (P + 1), 5 * n_loc, 2 * n_loc)


def test_msm_sequential_and_colored():
    objective, model, n_loc, loc, _ = _setup()
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


def test_two_level():
    objective, model, n_loc, _, n_c = _setup()
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
