"""ddm=global: one full-graph gradient per iteration and no communication (gnnddm/ddm/global_.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import torch

from gnnddm.ddm.global_ import Global
from gnnddm.testing.algorithms import check_counts, counting_setup, one_iteration

ADAM = partial(torch.optim.Adam, lr=0.01)


# -------------------------------------------------------------------- accounting
def test_global_accounting():
    objective, model, n_loc, _, _, batch = counting_setup()
    it, _, _ = one_iteration(Global, objective, batch, model)
    check_counts(it, 0, 0, 1.0)                                   # one full-graph gradient, no communication
