"""ddm=asm: the trust region, OFFO, the predicted decrease, radius bounds, the fused trial, the span
combination, the global pass and the accounting of its variants (gnnddm/ddm/asm.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N (the
work of one gradient on every subdomain, in epochs), m = 3 local steps.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import sys
from functools import partial

import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.solvers import BoxAdagrad
from gnnddm.errors import ConfigError
from gnnddm.testing.algorithms import (
    algorithm_and_accounting,
    check_counts,
    counting_setup,
    flat_params,
    make_algorithm,
    one_iteration,
    seeded_model,
    seeded_problem,
)
from gnnddm.testing.gallery import problem

ADAM = partial(torch.optim.Adam, lr=0.01)
SGD_SMALL = partial(torch.optim.SGD, lr=1e-3)   # short local steps: the trial is accepted
SGD_HUGE = partial(torch.optim.SGD, lr=1e3)     # overshooting local steps: the trial is rejected


def _n_loc(objective):
    return sum(objective.local_work(k) for k in range(objective.num_parts))


# ----------------------------------------------------------------- globalisation
def test_rejected_step_leaves_parameters_and_shrinks_radius():
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    model = seeded_model(task)
    theta0 = flat_params(model).clone()
    # huge SGD steps inside a huge region overshoot: f increases, ρ < η₁
    algo = make_algorithm(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1e3), radius0=50.0,
                          radius_max=float("inf"),
                          trial="separate")
    stats = algo.step(batch)
    assert stats["accepted"] == 0.0 and stats["rho"] < 0.25
    assert stats["actual"] < 0  # the loss went up
    torch.testing.assert_close(flat_params(model), theta0, rtol=0, atol=0)
    assert algo.tr.radius == pytest.approx(50.0 * 0.9)


def test_accepted_steps_stay_in_the_trust_region_and_grow_it_on_good_agreement():
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    model = seeded_model(task)
    algo = make_algorithm(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1e-3), radius0=0.01,
                          trial="separate")
    theta0 = flat_params(model).clone()
    stats = algo.step(batch)
    assert stats["accepted"] == 1.0 and stats["rho"] > 0.75
    assert algo.tr.radius == pytest.approx(0.01 * 1.2)
    assert float(torch.linalg.vector_norm(flat_params(model) - theta0)) <= 0.01 * (1 + 1e-12)
    # with large local steps the combined step is cut to the radius Δ (each local one to Δ/p)
    algo = make_algorithm(ASM, objective, seeded_model(task), local_solver=partial(torch.optim.SGD, lr=1.0),
                          radius0=0.01, combine="sum")
    assert algo.step(batch)["step_norm"] <= 0.01 * (1 + 1e-12)


def test_offo_keeps_the_combined_step_in_the_adagrad_box_and_evaluates_no_loss():
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    model = seeded_model(task)
    algo = make_algorithm(ASM, objective, model, globalization="offo", kappa=0.5, varsigma=1e-2,
                          local_solver=partial(BoxAdagrad, lr=10.0))
    for _ in range(3):
        theta_t = flat_params(model).clone()
        g = algo.subdomain_gradients(objective.on(batch))[0]
        algo.accounting.end_iteration()
        acc = (1e-2 if algo.accumulator is None else algo.accumulator) + g * g
        half = 0.5 * g.abs() / acc.sqrt()
        stats = algo.step(batch)
        assert stats["accepted"] == 1.0
        step = flat_params(model) - theta_t
        assert bool((step.abs() <= half * (1 + 1e-9) + 1e-15).all())
        assert float(step.abs().max()) > 0.2 * float(half.max())  # large lr: the box is what limits the step
    assert algo.accounting.as_dict()["loss_evals"] == 0.0


# ------------------------------------------------------------ predicted decrease
def _rho(combine, radius):
    objective, model, batch = seeded_problem()
    algo, _ = algorithm_and_accounting(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1.0),
                                       combine=combine, radius0=radius, radius_min=0.0, trial="separate")
    return algo.step(batch)["rho"]


def test_average_is_calibrated_and_sum_under_counts_curvature():
    # At a fixed point, Σ_k ω_k ∇²h_k = W ∇²f: for `average` (W = 1) the predicted decrease is right to
    # second order, 1 − ρ = O(Δ²); `sum` (local steps Δ/p on p·f_k) counts the curvature 1/p times, so
    # its 1 − ρ = O(Δ) and does not vanish like the calibrated one.
    radii = (1e-3, 1e-4)
    avg = [1.0 - _rho("average", r) for r in radii]
    sum_ = [1.0 - _rho("sum", r) for r in radii]
    assert abs(avg[-1]) < 1e-5                          # ρ → 1
    assert sum_[-1] > 10 * abs(avg[-1]) and sum_[-1] > 1e-4
    slope_avg = math.log10(abs(avg[0]) / abs(avg[1]))   # ≈ 2 (second-order error)
    slope_sum = math.log10(sum_[0] / sum_[1])           # ≈ 1 (first-order error)
    assert 1.7 < slope_avg < 2.3 and 0.8 < slope_sum < 1.2


# ----------------------------------------------------------------- radius bounds
def test_radius_is_clamped_into_its_bounds():
    objective, model, batch = seeded_problem()
    # every iteration rejected: the radius shrinks by 0.9 but stops at radius_min
    algo, _ = algorithm_and_accounting(ASM, objective, model, local_solver=SGD_HUGE, radius0=50.0, radius_min=44.0,
                                       radius_max=float("inf"),
                                       trial="separate")
    radii = [algo.step(batch)["tr_radius"] for _ in range(3)]
    assert radii == [pytest.approx(45.0), 44.0, 44.0]
    # every iteration accepted with ρ > η₂: the radius grows by 1.2 up to radius_max
    algo, _ = algorithm_and_accounting(ASM, objective, seeded_problem()[1], local_solver=SGD_SMALL, radius0=0.01,
                                       radius_max=0.013,
                                       trial="separate")
    radii = [algo.step(batch)["tr_radius"] for _ in range(2)]
    assert radii == [pytest.approx(0.012), 0.013]


# ------------------------------------------------------------------- fused trial
@pytest.mark.slow
def test_fused_trial_costs_two_collectives_when_accepted_and_three_when_rejected():
    objective, model, batch = seeded_problem()
    n_loc = _n_loc(objective)
    algo, acc = algorithm_and_accounting(ASM, objective, model, local_solver=SGD_SMALL, radius0=0.01, trial="fused")
    P = algo.num_params
    first = algo.step(batch)
    # [g, f], [s, predicted]; no loss value of the trial yet; θ stays at θ_0 with a pending trial
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2, 8 * (2 * (P + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc) and it["loss_evals"] == pytest.approx(n_loc)
    assert "rho" not in first and algo.pending is not None
    theta0 = flat_params(model)
    s0 = algo.pending[0].clone()
    stats = algo.step(batch)
    assert stats["accepted"] == 1.0 and stats["rho"] > 0.75
    # [∇f(θ+s), f(θ+s), f(θ)] then [s, predicted]: the trial's gradient is this iteration's g_t
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2, 8 * ((P + 2) + (P + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc) and it["loss_evals"] == pytest.approx(2 * n_loc)
    torch.testing.assert_close(flat_params(model), theta0 + s0, rtol=0, atol=0)

    objective, model, batch = seeded_problem()
    algo, acc = algorithm_and_accounting(ASM, objective, model, local_solver=SGD_HUGE, radius0=50.0, trial="fused",
                                         radius_max=float("inf"))
    theta0 = flat_params(model)
    algo.step(batch)
    stats = algo.step(batch)
    assert stats["accepted"] == 0.0 and stats["actual"] < 0
    assert algo.tr.radius == pytest.approx(50.0 * 0.9)
    # + [g, f] at θ_t after the rejection; θ unchanged
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (3, 8 * ((P + 2) + 2 * (P + 1)))
    assert it["grad_evals"] == pytest.approx(4 * n_loc) and it["loss_evals"] == pytest.approx(2 * n_loc)
    torch.testing.assert_close(flat_params(model), theta0, rtol=0, atol=0)


def test_fused_trial_with_one_subdomain_is_the_local_solver_one_iteration_late():
    objective, model, batch = seeded_problem(parts=1)
    ref = copy.deepcopy(model)
    adam = partial(torch.optim.Adam, lr=0.01)
    algo, _ = algorithm_and_accounting(ASM, objective, model, local_solver=adam, radius0=1e6, trial="fused",
                                       radius_max=float("inf"))
    for _ in range(3):
        stats = algo.step(batch)
        assert stats.get("accepted", 1.0) == 1.0
    # 3 iterations of 3 local Adam steps each; the third iteration's trial is still pending
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for i in range(9):
        if i == 6:
            torch.testing.assert_close(flat_params(model), flat_params(ref), rtol=1e-9, atol=1e-11)
        opt.zero_grad()
        objective.on(batch).global_loss(ref).backward()
        opt.step()
    torch.testing.assert_close(flat_params(model) + algo.pending[0], flat_params(ref), rtol=1e-9, atol=1e-11)


# -------------------------------------------------------------------------- span
def test_span_combination_beats_average_and_is_accounted():
    objective, model, batch = seeded_problem()
    n_loc, p = _n_loc(objective), 3
    opts = {"local_solver": partial(torch.optim.Adam, lr=0.05), "radius0": 1.0, "trial": "separate"}
    f_t = float(objective.on(batch).global_loss(model).detach())
    avg, _ = algorithm_and_accounting(ASM, objective, copy.deepcopy(model), combine="average", **opts)
    f_avg = f_t - avg.step(batch)["actual"]
    span, acc = algorithm_and_accounting(ASM, objective, model, combine="span", span_steps=4, **opts)
    P = span.num_params
    stats = span.step(batch)
    f_span = f_t - stats["actual"]
    assert stats["accepted"] == 1.0
    assert f_span < f_avg - 0.1 * (f_t - f_avg)  # a better combination than the fixed weights
    assert float(objective.on(batch).global_loss(model)) == pytest.approx(f_span, rel=1e-12)
    # [g, f]; one all-gather of the p corrections; one all-reduce [Sᵀ∇f, f] per evaluation; the span's
    # f is known, so the separate trial costs nothing; no local predicted decreases
    e = int(stats["span_evaluations"])
    assert 2 <= e <= 4
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2 + e, 8 * ((P + 1) + p * P + e * (p + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc + e * n_loc) and it["loss_evals"] == 0.0


# ------------------------------------------------------------------- global pass
def test_global_pass_is_one_tested_global_step_and_one_collective():
    objective, model, batch = seeded_problem()
    algo, acc = algorithm_and_accounting(ASM, objective, model, local_solver=SGD_SMALL, radius0=0.01, global_pass=True,
                                         trial="fused")
    theta0 = flat_params(model)
    g = algo.subdomain_gradients(objective.on(batch))[0]
    acc.end_iteration()
    stats = algo.step(batch)
    assert stats["global_accepted"] == 1.0 and stats["global_rho"] > 0.75
    # the global step went to the region's boundary along −g; then 1 more round than without the pass
    expected = theta0 - 0.01 * g / torch.linalg.vector_norm(g)
    torch.testing.assert_close(flat_params(model), expected, rtol=1e-12, atol=1e-14)
    assert acc.last["rounds"] == 3
    with pytest.raises(ConfigError, match=r"ddm\.global_pass"):
        algorithm_and_accounting(ASM, objective, model, globalization="none", global_pass=True)


# -------------------------------------------------------------------- accounting
@pytest.mark.slow
def test_asm_variants():
    objective, model, n_loc, _, _, batch = counting_setup()
    # trust region + foc: [g, f(θ_t)], [s, predicted], [f(θ_t + s)]; m steps but the first uses g_t;
    # forward-only: h_k(θ_k) and f_k(θ_t + s) on every subdomain
    it, P, _ = one_iteration(ASM, objective, batch, model, local_steps=3, local_solver=ADAM)
    check_counts(it, 3, (P + 1) + (P + 1) + 1, n_loc + 2 * n_loc, 2 * n_loc)
    # offo: [g, f(θ_t)], [s]; no loss values
    it, P, _ = one_iteration(ASM, objective, batch, model, local_steps=3, local_solver=partial(BoxAdagrad, lr=0.1),
                             globalization="offo")
    check_counts(it, 2, (P + 1) + P, 3 * n_loc)
    # no foc, no globalisation: nothing needs g_t; one all-reduce [s, f(θ_t)], m full local steps
    it, P, _ = one_iteration(ASM, objective, batch, model, local_steps=3, local_solver=ADAM, foc=False,
                             globalization="none")
    check_counts(it, 1, P + 1, 3 * n_loc)
    # two global steps add two all-reduces [g, f]
    it, P, _ = one_iteration(ASM, objective, batch, model, local_steps=3, local_solver=ADAM, global_steps=2)
    check_counts(it, 5, (P + 1) + (P + 1) + 1 + 2 * (P + 1), 5 * n_loc, 2 * n_loc)


# --------------------------------------------------------------------- bad input
@pytest.mark.slow
def test_cli_refuses_a_negative_radius_bound_with_exit_2(tmp_path):
    exe = shutil.which("gnnddm")
    cmd = [exe] if exe else [sys.executable, "-m", "gnnddm"]
    args = ["train", "data=synthetic", "data.resolution=5.625", "data.steps=40", "model.hidden=8",
            "partition.num_parts=2", "trainer.max_iterations=1", "trainer.progress=false", "ddm=asm",
            "ddm.radius_min=-1", "tracking.enabled=false", "hydra.run.dir=run"]
    out = subprocess.run([*cmd, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 2
    assert "ddm.radius_min: must be >= 0, got -1" in out.stderr and "Traceback" not in out.stderr
