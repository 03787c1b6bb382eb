"""ddm=two_level: ASM with a coarse correction (additive, pre or post), first-order coherent local and
coarse models (gnnddm/ddm/two_level.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.testing.algorithms import (
    algorithm_and_accounting,
    check_counts,
    counting_setup,
    flat_params,
    make_algorithm,
    one_iteration,
    seeded_model,
    seeded_problem,
    with_coarse,
)
from gnnddm.testing.gallery import problem

ADAM = partial(torch.optim.Adam, lr=0.01)


# -------------------------------------------------------------------- reductions
def test_two_level_without_coarse_steps_is_asm():
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    m_asm, m_two = seeded_model(task), seeded_model(task)
    a = make_algorithm(ASM, objective, m_asm, local_solver=ADAM)
    t = make_algorithm(TwoLevel, objective, m_two, local_solver=ADAM, coarse_steps=0)
    for _ in range(3):
        assert t.step(batch) == a.step(batch)
    torch.testing.assert_close(flat_params(m_two), flat_params(m_asm), rtol=0, atol=0)


# --------------------------------------------------------------------- coherence
def test_local_models_are_first_order_coherent():
    data, _, objective, task, batch = problem(parts=3, overlap=2)
    objective = with_coarse(objective)
    model = seeded_model(task)
    losses = objective.on(batch)
    full = losses.global_loss(model)
    grad_f = torch.autograd.grad(full, list(model.parameters()))
    grad_f = torch.cat([g.reshape(-1) for g in grad_f])
    for foc in (True, False):
        algo = make_algorithm(TwoLevel, objective, model, foc=foc, local_solver=ADAM)
        theta = algo.flat()
        g, _, per_part = algo.subdomain_gradients(losses, keep=True)
        torch.testing.assert_close(g, grad_f, rtol=1e-10, atol=1e-12)
        models = [algo.subdomain_model(losses, k, theta, g, per_part)[0] for k in range(3)]
        models.append(algo.coarse_model(losses, 0, theta, g)[0])
        for h in models:
            algo.set_flat(theta)
            grad_h = torch.cat([x.reshape(-1) for x in torch.autograd.grad(h(model), algo.params)])
            if foc or h is models[-1]:  # the coarse model is always τ-corrected
                torch.testing.assert_close(grad_h, grad_f, rtol=1e-9, atol=1e-11)
            else:  # without the coherence term ∇h_k(θ_t) = p ∇f_k(θ_t), far from ∇f
                assert float(torch.linalg.vector_norm(grad_h - grad_f)) > 0.1 * float(torch.linalg.vector_norm(grad_f))


# ------------------------------------------------------------- coarse correction
def test_two_level_additive_keeps_the_sum_of_both_corrections_in_the_region():
    objective, model, batch = seeded_problem(coarse=True)
    theta0 = flat_params(model)
    algo, _ = algorithm_and_accounting(TwoLevel, objective, model, coarse="additive", coarse_steps=3, radius0=0.01,
                                       local_solver=partial(torch.optim.SGD, lr=1.0), trial="separate",
                                       globalization="trust_region")
    stats = algo.step(batch)
    assert 0.9 * 0.005 < stats["coarse_step_norm"] <= 0.005 * (1 + 1e-12)  # half the region each
    if stats["accepted"]:
        assert float(torch.linalg.vector_norm(flat_params(model) - theta0)) <= 0.01 * (1 + 1e-12)
    assert stats["step_norm"] <= 0.01 * (1 + 1e-12)


# -------------------------------------------------------------------- accounting
def test_two_level():
    objective, model, n_loc, _, n_c, batch = counting_setup()
    # additive: as asm; the coarse solve is redundant on all p = 3 modelled ranks: ∇f_c(θ_t) and m_c - 1 = 1
    # further gradient (the first step uses g_t), plus h_c(θ_c) forward for the predicted decrease
    it, P, _ = one_iteration(TwoLevel, objective, batch, model, local_steps=3, local_solver=ADAM,
                             coarse="additive", coarse_steps=2)
    check_counts(it, 3, (P + 1) + (P + 1) + 1, 3 * n_loc + 3 * 2 * n_c, 2 * n_loc + 3 * n_c)
    # pre / post: one more all-reduce [g, f] at the intermediate point
    for mode in ("pre", "post"):
        it, P, _ = one_iteration(TwoLevel, objective, batch, model, local_steps=3, local_solver=ADAM, coarse=mode,
                                 coarse_steps=2)
        check_counts(it, 4, 3 * (P + 1) + 1, 4 * n_loc + 3 * 2 * n_c, 2 * n_loc + 3 * n_c)
