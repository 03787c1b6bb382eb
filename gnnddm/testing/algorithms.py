"""What the tests of a training algorithm share: seeded models and problems, algorithms on the one-process
communicator, a reference run of a torch optimizer, and one accounted iteration checked by hand counts.

The problems come from :mod:`gnnddm.testing.gallery`; the checks assert with ``pytest`` (the ``test`` extra).

A test that ``sync`` on 2 subdomains with a 2-hop overlap (as deep as the model) follows ``global``:

>>> from gnnddm.ddm.sync import Sync
>>> objective, model, batch = seeded_problem(parts=2)
>>> _, reference, _ = seeded_problem(parts=2)  # the same initial weights
>>> assert_follows_global(Sync, objective, batch, reference, model, steps=2)
"""

from __future__ import annotations

import time

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.msm import MSM
from gnnddm.partition.coarse import coarsen
from gnnddm.testing.gallery import EdgeGNN, comm_for, problem


def seeded_model(task, seed=0):
    """The two-layer EdgeGNN of the tests, float64, seeded."""
    torch.manual_seed(seed)
    return EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2).double()


def make_algorithm(cls, objective, model, optimizer=None, **kw):
    """``cls`` on ``objective`` with the one-process communicator and its accounting."""
    return cls(model, objective, comm_for(objective)[0], optimizer, **kw)


def algorithm_and_accounting(cls, objective, model, **kw):
    """``(algorithm, accounting)``: ``cls`` on ``objective`` with the one-process communicator."""
    comm, acc = comm_for(objective)
    return cls(model, objective, comm, **kw), acc


def flat_params(model):
    """The model's parameters as one vector (a copy)."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach()


def assert_follows_global(cls, objective, batch, m_global, m_dd, steps: int, lr: float = 0.02) -> None:
    """``cls`` training ``m_dd`` follows ``global`` training ``m_global`` (Adam ``lr``, the same initial
    weights), each stepped ``steps`` times on ``batch``: the same loss at each iteration and the same
    parameters after them (float64)."""
    from gnnddm.ddm.global_ import Global

    def adam(ps):
        return torch.optim.Adam(ps, lr=lr)

    g, d = make_algorithm(Global, objective, m_global, adam), make_algorithm(cls, objective, m_dd, adam)
    for _ in range(steps):
        assert d.step(batch)["loss"] == pytest.approx(g.step(batch)["loss"], rel=1e-10)
    torch.testing.assert_close(flat_params(m_dd), flat_params(m_global), rtol=1e-8, atol=1e-10)


def optimizer_steps(model, objective, batch, steps, make_opt=lambda ps: torch.optim.Adam(ps, lr=0.01)):
    """Reference: ``steps`` steps of a torch optimizer on the global loss on ``batch``; the parameters after
    them."""
    opt = make_opt(model.parameters())
    losses = objective.on(batch)
    for _ in range(steps):
        opt.zero_grad()
        losses.global_loss(model).backward()
        opt.step()
    return flat_params(model)


def with_coarse(objective, clusters=6):
    """``objective`` with one coarse level of ``clusters`` METIS clusters of its data."""
    data = objective.data
    return objective.with_coarse_level(coarsen(
        data.edge_index, data.num_nodes, clusters, edge_weight=data.edge_weight, area=data.area, lat=data.lat,
        lon=data.lon))


def seeded_problem(parts=3, seed=0, coarse=False):
    """(objective, model, batch): ``parts`` subdomains with a 2-hop overlap, optionally a coarse level of 6
    clusters, and the batch to step on."""
    _, _, objective, task, batch = problem(parts=parts, overlap=2)
    if coarse:
        objective = with_coarse(objective)
    torch.manual_seed(seed)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2).double()
    return objective, model, batch


def counting_setup():
    """(objective, model, n_loc, per-part work, coarse work, batch) of the hand counts: p = 3, 6 coarse
    clusters."""
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    objective = with_coarse(objective)
    torch.manual_seed(0)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3).double()
    n_loc = sum(objective.local_work(k) for k in range(3))
    loc = [objective.local_work(k) for k in range(3)]
    return objective, model, n_loc, loc, objective.coarse_work(0), batch


def one_iteration(cls, objective, batch, model, **kw):
    """One outer iteration on ``batch`` under α = 1 s, β = 1 ms/byte: (its counters, P, the algorithm)."""
    if issubclass(cls, ASM | MSM):  # the hand counts below are those of a trial with its own all-reduce
        kw.setdefault("trial", "separate")
    comm, acc = comm_for(objective, alpha=1.0, beta=1e-3)
    algo = cls(model, objective, comm, lambda ps: torch.optim.Adam(ps, lr=0.01), **kw)
    start = time.perf_counter()
    algo.step(batch)
    elapsed = time.perf_counter() - start
    it = acc.last
    comm_time = it["rounds"] * 1.0 + it["comm_bytes"] * 1e-3
    # the modelled time = collectives + slowest compute per phase, which cannot exceed the serial run
    assert comm_time < it["model_time"] <= comm_time + elapsed
    return it, algo.num_params, algo


def check_counts(it, rounds, numbers, grad_evals, loss_evals=0.0):
    """The iteration's collectives, payload (float64 numbers) and work against the hand counts."""
    assert it["rounds"] == rounds
    assert it["comm_bytes"] == 8 * numbers
    assert it["grad_evals"] == pytest.approx(grad_evals)
    assert it["loss_evals"] == pytest.approx(loss_evals)


def record_trust_region(algo):
    """Wrap a multilevel algorithm's trust-region update and coarse cycle: returns ``(tests, ends)``, filled
    at every step with the ``(actual, predicted)`` decreases the test compares and the ``(anchor, θ_c)`` of
    each level-1 cycle (clear both before a step)."""
    tests, ends = [], []
    update, cycle = algo.tr.update, algo.coarse_cycle

    def record_test(actual, predicted):
        tests.append((actual, predicted))
        return update(actual, predicted)

    def record_cycle(losses, level, anchor, g_up, constraint):
        theta_c, decrease = cycle(losses, level, anchor, g_up, constraint)
        if level == 1:
            ends.append((anchor.clone(), theta_c.clone()))
        return theta_c, decrease

    algo.tr.update, algo.coarse_cycle = record_test, record_cycle
    return tests, ends
