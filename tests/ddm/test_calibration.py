"""Calibrated Schwarz methods: the predicted decrease, radius bounds, the fused trial, the span combination,
the global pass, the damped additive coarse correction and the ADAGB2 local solver (gnnddm/ddm/asm.py,
msm.py, two_level.py, solvers.py).

Hand counts: P parameters, float64 (8 bytes per number), p = 3 subdomains, n_loc = Σ_k |V_k ∪ H_k| / N,
m = 3 local steps.
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
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.solvers import BoxAdagrad, span_minimize
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.errors import ConfigError
from gnnddm.gallery import EdgeGNN, comm_for, problem
from gnnddm.partition.coarse import coarsen

SGD_SMALL = partial(torch.optim.SGD, lr=1e-3)   # short local steps: the trial is accepted
SGD_HUGE = partial(torch.optim.SGD, lr=1e3)     # overshooting local steps: the trial is rejected


def _setup(parts=3, seed=0, coarse=False):
    data, _, objective, task = problem(parts=parts, overlap=2)
    if coarse:
        objective.add_coarse_level(coarsen(data.edge_index, data.num_nodes, 6, edge_weight=data.edge_weight,
                                           area=data.area, lat=data.lat, lon=data.lon))
    torch.manual_seed(seed)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=3, layers=2).double()
    return objective, model


def _algo(cls, objective, model, **kw):
    comm, acc = comm_for(objective)
    return cls(model, objective, comm, acc, **kw), acc


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _n_loc(objective):
    return sum(objective.local_work(k) for k in range(objective.num_parts))


# ------------------------------------------------------------------------------ predicted decrease
def _rho(combine, radius):
    objective, model = _setup()
    algo, _ = _algo(ASM, objective, model, local_solver=partial(torch.optim.SGD, lr=1.0), combine=combine,
                    radius0=radius, radius_min=0.0, trial="separate")
    return algo.step()["rho"]


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


# ------------------------------------------------------------------------------ radius bounds
def test_radius_is_clamped_into_its_bounds():
    objective, model = _setup()
    # every iteration rejected: the radius shrinks by 0.9 but stops at radius_min
    algo, _ = _algo(ASM, objective, model, local_solver=SGD_HUGE, radius0=50.0, radius_min=44.0, trial="separate")
    radii = [algo.step()["tr_radius"] for _ in range(3)]
    assert radii == [pytest.approx(45.0), 44.0, 44.0]
    # every iteration accepted with ρ > η₂: the radius grows by 1.2 up to radius_max
    algo, _ = _algo(ASM, objective, _setup()[1], local_solver=SGD_SMALL, radius0=0.01, radius_max=0.013,
                    trial="separate")
    radii = [algo.step()["tr_radius"] for _ in range(2)]
    assert radii == [pytest.approx(0.012), 0.013]


# ------------------------------------------------------------------------------ fused trial
@pytest.mark.slow
def test_fused_trial_costs_two_collectives_when_accepted_and_three_when_rejected():
    objective, model = _setup()
    n_loc = _n_loc(objective)
    algo, acc = _algo(ASM, objective, model, local_solver=SGD_SMALL, radius0=0.01, trial="fused")
    P = algo.num_params
    first = algo.step()
    # [g, f], [s, predicted]; no loss value of the trial yet; θ stays at θ_0 with a pending trial
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2, 8 * (2 * (P + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc) and it["loss_evals"] == pytest.approx(n_loc)
    assert "rho" not in first and algo.pending is not None
    theta0 = _flat(model)
    s0 = algo.pending[0].clone()
    stats = algo.step()
    assert stats["accepted"] == 1.0 and stats["rho"] > 0.75
    # [∇f(θ+s), f(θ+s), f(θ)] then [s, predicted]: the trial's gradient is this iteration's g_t
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2, 8 * ((P + 2) + (P + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc) and it["loss_evals"] == pytest.approx(2 * n_loc)
    torch.testing.assert_close(_flat(model), theta0 + s0, rtol=0, atol=0)

    objective, model = _setup()
    algo, acc = _algo(ASM, objective, model, local_solver=SGD_HUGE, radius0=50.0, trial="fused")
    theta0 = _flat(model)
    algo.step()
    stats = algo.step()
    assert stats["accepted"] == 0.0 and stats["actual"] < 0
    assert algo.tr.radius == pytest.approx(50.0 * 0.9)
    # + [g, f] at θ_t after the rejection; θ unchanged
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (3, 8 * ((P + 2) + 2 * (P + 1)))
    assert it["grad_evals"] == pytest.approx(4 * n_loc) and it["loss_evals"] == pytest.approx(2 * n_loc)
    torch.testing.assert_close(_flat(model), theta0, rtol=0, atol=0)


def test_fused_trial_with_one_subdomain_is_the_local_solver_one_iteration_late():
    objective, model = _setup(parts=1)
    ref = copy.deepcopy(model)
    adam = partial(torch.optim.Adam, lr=0.01)
    algo, _ = _algo(ASM, objective, model, local_solver=adam, radius0=1e6, trial="fused")
    for _ in range(3):
        stats = algo.step()
        assert stats.get("accepted", 1.0) == 1.0
    # 3 iterations of 3 local Adam steps each; the third iteration's trial is still pending
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for i in range(9):
        if i == 6:
            torch.testing.assert_close(_flat(model), _flat(ref), rtol=1e-9, atol=1e-11)
        opt.zero_grad()
        objective.global_loss(ref).backward()
        opt.step()
    torch.testing.assert_close(_flat(model) + algo.pending[0], _flat(ref), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cls,kw", [(ASM, {}), (ASM, {"combine": "span"}), (TwoLevel, {"coarse": "pre"})],
                         ids=["asm", "asm_span", "two_level"])
@pytest.mark.slow
def test_fused_trial_resumes_from_its_checkpoint_state(cls, kw):
    objective, model = _setup(coarse=cls is TwoLevel)
    opts = {"local_solver": partial(torch.optim.Adam, lr=0.01), "trial": "fused", **kw}
    algo, _ = _algo(cls, objective, model, **opts)
    for _ in range(2):
        algo.step()
    assert algo.pending is not None
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(algo.state_dict())
    runs = [algo.step() for _ in range(2)]
    resumed = copy.deepcopy(model)
    resumed.load_state_dict(saved_model)
    again, _ = _algo(cls, objective, resumed, **opts)
    again.load_state_dict(saved)
    assert [again.step() for _ in range(2)] == runs
    torch.testing.assert_close(_flat(resumed), _flat(model), rtol=0, atol=0)


# ------------------------------------------------------------------------------ span
def test_span_combination_beats_average_and_is_accounted():
    objective, model = _setup()
    n_loc, p = _n_loc(objective), 3
    opts = {"local_solver": partial(torch.optim.Adam, lr=0.05), "radius0": 1.0, "trial": "separate"}
    f_t = float(objective.global_loss(model).detach())
    avg, _ = _algo(ASM, objective, copy.deepcopy(model), combine="average", **opts)
    f_avg = f_t - avg.step()["actual"]
    span, acc = _algo(ASM, objective, model, combine="span", span_steps=4, **opts)
    P = span.num_params
    stats = span.step()
    f_span = f_t - stats["actual"]
    assert stats["accepted"] == 1.0
    assert f_span < f_avg - 0.1 * (f_t - f_avg)  # a better combination than the fixed weights
    assert float(objective.global_loss(model)) == pytest.approx(f_span, rel=1e-12)
    # [g, f]; one all-gather of the p corrections; one all-reduce [Sᵀ∇f, f] per evaluation; the span's
    # f is known, so the separate trial costs nothing; no local predicted decreases
    e = int(stats["span_evaluations"])
    assert 2 <= e <= 4
    it = acc.last
    assert (it["rounds"], it["comm_bytes"]) == (2 + e, 8 * ((P + 1) + p * P + e * (p + 1)))
    assert it["grad_evals"] == pytest.approx(3 * n_loc + e * n_loc) and it["loss_evals"] == 0.0


def test_span_minimize_improves_on_the_start_within_its_region():
    # φ(γ) = ½‖Sγ − b‖² in P = 6 dimensions, p = 3 directions; the minimiser over the span is known
    torch.manual_seed(0)
    S, b = torch.randn(3, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    calls = []

    def evaluate(gamma):
        calls.append(gamma)
        r = gamma @ S - b
        return 0.5 * float(r @ r), S @ r

    start = torch.full((3,), 1 / 3, dtype=torch.float64)
    phi_start = evaluate(start)[0]
    calls.clear()
    gamma, phi, used = span_minimize(S @ S.T, 0.5 * float(b @ b), -(S @ b), start, evaluate, 6)
    assert used == len(calls) <= 6 and torch.equal(calls[0], start)
    best = torch.linalg.lstsq(S.T, b).solution
    phi_best = evaluate(best)[0]
    assert phi < phi_start and phi - phi_best < 1e-3 * (phi_start - phi_best)
    gamma, phi, _ = span_minimize(S @ S.T, 0.5 * float(b @ b), -(S @ b), start, evaluate, 6, radius=0.1)
    assert float(torch.linalg.vector_norm(gamma @ S)) <= 0.1 * (1 + 1e-9)


# ------------------------------------------------------------------------------ global pass, two_level
def test_global_pass_is_one_tested_global_step_and_one_collective():
    objective, model = _setup()
    algo, acc = _algo(ASM, objective, model, local_solver=SGD_SMALL, radius0=0.01, global_pass=True,
                      trial="fused")
    theta0 = _flat(model)
    g = algo.subdomain_gradients()[0]
    acc.end_iteration()
    stats = algo.step()
    assert stats["global_accepted"] == 1.0 and stats["global_rho"] > 0.75
    # the global step went to the region's boundary along −g; then 1 more round than without the pass
    expected = theta0 - 0.01 * g / torch.linalg.vector_norm(g)
    torch.testing.assert_close(_flat(model), expected, rtol=1e-12, atol=1e-14)
    assert acc.last["rounds"] == 3
    with pytest.raises(ConfigError, match=r"ddm\.global_pass"):
        _algo(ASM, objective, model, globalization="none", global_pass=True)


def test_two_level_additive_keeps_the_sum_of_both_corrections_in_the_region():
    objective, model = _setup(coarse=True)
    theta0 = _flat(model)
    algo, _ = _algo(TwoLevel, objective, model, coarse="additive", coarse_steps=3, radius0=0.01,
                    local_solver=partial(torch.optim.SGD, lr=1.0), trial="separate", globalization="trust_region")
    stats = algo.step()
    assert 0.9 * 0.005 < stats["coarse_step_norm"] <= 0.005 * (1 + 1e-12)  # half the region each
    if stats["accepted"]:
        assert float(torch.linalg.vector_norm(_flat(model) - theta0)) <= 0.01 * (1 + 1e-12)
    assert stats["step_norm"] <= 0.01 * (1 + 1e-12)


def test_msm_trust_region_with_fused_trial_decides_one_iteration_later():
    objective, model = _setup()
    algo, acc = _algo(MSM, objective, model, globalization="trust_region", trial="fused", radius0=0.01,
                      local_solver=SGD_SMALL)
    assert "accepted" not in algo.step()
    assert acc.last["rounds"] == 1 + 3  # [g, f], one correction per subdomain, no trial collective
    assert algo.step()["accepted"] == 1.0
    assert acc.last["rounds"] == 1 + 3


# ------------------------------------------------------------------------------ ADAGB2
def test_box_adagrad_step_is_the_adagb2_step():
    # θ = (0, 0.1, 0.05), g = (1, −3, 0.1), box [−0.2, 0.1], lr 0.5, a₀ = 1:
    # d = clamp(θ − g) − θ = (−0.2, 0, −0.1), a = a₀ + d² = (1.04, 1, 1.01), θ⁺ = clamp(θ + 0.5·d/√a).
    # Coordinate 2 sits at its bound with the gradient pointing out: it neither moves nor accumulates;
    # raw-g² AdaGrad would have a₁ = 2 and jump to the bound −0.2.
    x = torch.nn.Parameter(torch.tensor([0.0, 0.1, 0.05], dtype=torch.float64))
    opt = BoxAdagrad([x], lr=0.5, initial_accumulator_value=1.0)
    opt.set_box([torch.full((3,), -0.2, dtype=torch.float64)], [torch.full((3,), 0.1, dtype=torch.float64)])
    x.grad = torch.tensor([1.0, -3.0, 0.1], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(opt.state[x]["sum"], torch.tensor([1.04, 1.0, 1.01], dtype=torch.float64))
    expected = [-0.5 * 0.2 / 1.04**0.5, 0.1, 0.05 - 0.5 * 0.1 / 1.01**0.5]
    torch.testing.assert_close(x.detach(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("cls,kw,key", [
    (ASM, {"combine": "max"}, "combine"),
    (TwoLevel, {"coarse": "middle"}, "coarse"),
    (ASM, {"radius_min": -1.0}, "radius_min"),
    (ASM, {"radius_min": 0.5, "radius_max": 0.2}, "radius_max"),
    (ASM, {"radius0": 20.0, "radius_max": 10.0}, "radius0"),
    (MSM, {"radius0": 1e-5}, "radius0"),
    (ASM, {"trial": "later"}, "trial"),
    (ASM, {"span_steps": 0}, "span_steps"),
    (ASM, {"combine": "span", "globalization": "offo"}, "combine"),
    (ASM, {"global_steps": 1, "trial": "fused"}, "global_steps"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_options_name_their_key(cls, kw, key):
    objective, model = _setup(coarse=cls is TwoLevel)
    with pytest.raises(ConfigError, match=rf"ddm\.{key}"):
        _algo(cls, objective, model, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), **kw)


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
