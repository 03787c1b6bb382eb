"""ddm=local_avg: local steps on each subdomain, then the weighted average (gnnddm/ddm/local_avg.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import torch

from gnnddm.ddm.local_avg import LocalAvg
from gnnddm.testing.algorithms import (
    check_counts,
    counting_setup,
    flat_params,
    make_algorithm,
    one_iteration,
    optimizer_steps,
    seeded_model,
)
from gnnddm.testing.gallery import problem

ADAM = partial(torch.optim.Adam, lr=0.01)


# --------------------------------------------------------------------- baselines
def test_local_avg_with_one_sgd_step_is_one_global_sgd_step():
    # Σ_k ω_k ∇(f_k / ω_k) = Σ_k ∇f_k = ∇f with exact overlaps, for any number of parts
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    model, ref = seeded_model(task), seeded_model(task)
    algo = make_algorithm(LocalAvg, objective, model, local_steps=1, local_solver=partial(torch.optim.SGD, lr=0.1))
    algo.step(batch)
    expected = optimizer_steps(ref, objective, batch, 1, lambda ps: torch.optim.SGD(ps, lr=0.1))
    torch.testing.assert_close(flat_params(model), expected, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------- accounting
def test_local_avg_accounting():
    objective, model, n_loc, _, _, batch = counting_setup()
    it, P, _ = one_iteration(LocalAvg, objective, batch, model, local_steps=3, local_solver=ADAM)
    check_counts(it, 1, P + 1, 3 * n_loc)                         # all-reduce [Σ ω_k θ_k, f]
