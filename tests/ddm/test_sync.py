"""ddm=sync: the global method's trajectory from summed subdomain gradients, one all-reduce per iteration
(gnnddm/ddm/sync.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

import time
from functools import partial

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.global_ import Global
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.sync import Sync
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


def _counting_setup():
    data, _, objective, task = problem(parts=3, overlap=2)
    objective = objective.with_coarse_level(coarsen(data.edge_index, data.num_nodes, 6, edge_weight=data.edge_weight,
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


# --------------------------------------------------------------------- baselines
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


# -------------------------------------------------------------------- accounting
def test_sync_accounting():
    objective, model, n_loc, _, _ = _counting_setup()
    it, P, _ = _one_iteration(Sync, objective, model)
    _check(it, 1, P + 1, n_loc)                             # all-reduce [g, f]
