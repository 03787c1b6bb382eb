"""ddm=msm: multiplicative Schwarz, sequential or by colours of non-adjacent parts (gnnddm/ddm/msm.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

from functools import partial

import torch

from gnnddm.ddm.msm import MSM
from gnnddm.partition.metrics import colour_classes
from gnnddm.testing.algorithms import (
    algorithm_and_accounting,
    check_counts,
    counting_setup,
    flat_params,
    make_algorithm,
    one_iteration,
    seeded_problem,
)
from gnnddm.testing.gallery import LinearGNN, least_squares_problem

ADAM = partial(torch.optim.Adam, lr=0.01)
SGD_SMALL = partial(torch.optim.SGD, lr=1e-3)   # short local steps: the trial is accepted


# ------------------------------------------------------------------- convergence
def test_msm_converges_and_colored_groups_are_independent():
    objective, task, truth, batch = least_squares_problem(parts=4, overlap=1)
    groups = colour_classes(objective.partition.parts, objective.data.edge_index, range(4))
    adjacent = {(int(a), int(b)) for a, b in objective.partition.part_adjacency.T}
    assert sorted(k for grp in groups for k in grp) == [0, 1, 2, 3]
    assert all((a, b) not in adjacent for grp in groups for a in grp for b in grp if a != b)
    for colored in (False, True):
        torch.manual_seed(0)
        model = LinearGNN(task.in_channels, task.out_channels).double()
        algo = make_algorithm(MSM, objective, model, colored=colored, globalization="trust_region", radius0=0.5,
                              local_solver=partial(torch.optim.Adam, lr=0.05))
        assert len(algo.groups) == (len(groups) if colored else 4)
        for _ in range(100):
            algo.step(batch)
        torch.testing.assert_close(flat_params(model), flat_params(truth), rtol=0, atol=1e-3)


# ------------------------------------------------------------------- fused trial
def test_msm_trust_region_with_fused_trial_decides_one_iteration_later():
    objective, model, batch = seeded_problem()
    algo, acc = algorithm_and_accounting(MSM, objective, model, globalization="trust_region", trial="fused",
                                         radius0=0.01,
                                         local_solver=SGD_SMALL)
    assert "accepted" not in algo.step(batch)
    assert acc.last["rounds"] == 1 + 3  # [g, f], one correction per subdomain, no trial collective
    assert algo.step(batch)["accepted"] == 1.0
    assert acc.last["rounds"] == 1 + 3


# -------------------------------------------------------------------- accounting
def test_msm_sequential_and_colored():
    objective, model, n_loc, loc, _, batch = counting_setup()
    # [g, f] then one all-reduce of the correction per subdomain; the first subdomain's first step uses g_t
    it, P, _ = one_iteration(MSM, objective, batch, model, local_steps=3, local_solver=ADAM)
    check_counts(it, 1 + 3, (P + 1) + 3 * P, n_loc + 2 * loc[0] + 3 * loc[1] + 3 * loc[2])
    # colored, trust region: [g, f], one [correction, predicted] per colour, then [f(θ_t + s)]; every
    # subdomain also evaluates h_k(θ_k) and f_k(θ_t + s)
    it, P, algo = one_iteration(MSM, objective, batch, model, local_steps=3, local_solver=ADAM, colored=True,
                                globalization="trust_region")
    c = len(algo.groups)
    # bands 0 | 1 | 2 of the grid: 0 and 2 do not touch; the most connected part (1) is coloured first, and
    # only the first colour starts at θ_t where its first step can use g_t
    assert algo.groups == [[1], [0, 2]]
    check_counts(it, 1 + c + 1, (P + 1) + c * (P + 1) + 1, n_loc + 2 * loc[1] + 3 * loc[0] + 3 * loc[2], 2 * n_loc)
