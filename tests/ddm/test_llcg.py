"""ddm=llcg: local averaging, then server correction steps on the full graph (gnnddm/ddm/llcg.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import torch

from gnnddm.ddm.llcg import LLCG
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
def test_llcg_is_local_avg_then_server_steps_on_the_full_graph():
    _, _, objective, task, batch = problem(parts=3, overlap=0)
    m_llcg, ref = seeded_model(task), seeded_model(task)
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    make_algorithm(LLCG, objective, m_llcg, sgd, local_steps=2, local_solver=ADAM, server_steps=2).step(batch)
    make_algorithm(LocalAvg, objective, ref, local_steps=2, local_solver=ADAM).step(batch)
    optimizer_steps(ref, objective, batch, 2, sgd)
    torch.testing.assert_close(flat_params(m_llcg), flat_params(ref), rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------- accounting
def test_llcg_accounting():
    objective, model, n_loc, _, _, batch = counting_setup()
    it, P, _ = one_iteration(LLCG, objective, batch, model, local_steps=3, local_solver=ADAM, server_steps=2)
    check_counts(it, 2, (P + 1) + P, 3 * n_loc + 2)               # + broadcast θ; 2 full-graph gradients
