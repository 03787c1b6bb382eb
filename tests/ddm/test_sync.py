"""ddm=sync: the global method's trajectory from summed subdomain gradients, one all-reduce per iteration
(gnnddm/ddm/sync.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from gnnddm.ddm.global_ import Global
from gnnddm.ddm.sync import Sync
from gnnddm.testing.algorithms import (
    check_counts,
    counting_setup,
    flat_params,
    make_algorithm,
    one_iteration,
    seeded_model,
)
from gnnddm.testing.gallery import problem

ADAM = partial(torch.optim.Adam, lr=0.01)


# --------------------------------------------------------------------- baselines
def test_sync_reproduces_global_trajectory_with_adam():
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    m_global, m_sync = seeded_model(task), seeded_model(task)
    adam = lambda ps: torch.optim.Adam(ps, lr=0.05)  # noqa: E731
    g = make_algorithm(Global, objective, m_global, adam)
    s = make_algorithm(Sync, objective, m_sync, adam)
    for _ in range(6):
        lg, ls = g.step(batch)["loss"], s.step(batch)["loss"]
        assert ls == pytest.approx(lg, rel=1e-12)
    torch.testing.assert_close(flat_params(m_sync), flat_params(m_global), rtol=1e-9, atol=1e-11)
    assert float(torch.linalg.vector_norm(flat_params(m_sync) - flat_params(seeded_model(task)))) > 0.05  # it did move


# -------------------------------------------------------------------- accounting
def test_sync_accounting():
    objective, model, n_loc, _, _, batch = counting_setup()
    it, P, _ = one_iteration(Sync, objective, batch, model)
    check_counts(it, 1, P + 1, n_loc)                             # all-reduce [g, f]
