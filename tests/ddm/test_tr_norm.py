"""ddm.tr_norm: the trust-region ball in an optimizer's diagonal scaling Λ (gnnddm/ddm/base.py
RegionScaling, gnnddm/ddm/solvers.py Ball): Λ's formulas, the scaled ball's projection and steepest step,
accepted steps inside ‖Λ s‖ ≤ Δ, the scaled code path equal to the Euclidean one when Λ = I, checkpoints,
and bad values named."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from gnnddm.ddm.apts import APTS
from gnnddm.ddm.asm import ASM
from gnnddm.ddm.base import ADAM_BETA2, ADAM_EPS, RegionScaling
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.objective import Objective
from gnnddm.ddm.solvers import Ball
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.algorithms import make_algorithm, seeded_problem
from gnnddm.testing.gallery import comm_for, grid_data, real_models, to_dtype
from gnnddm.testing.runs import cli_error, tiny_run

ADAM = partial(torch.optim.Adam, lr=0.05)


def _scale(rng, n):
    return torch.as_tensor(np.exp(rng.normal(0, 1.5, n)))


# --------------------------------------------------------------------------------------- the ball
@pytest.mark.parametrize("seed", range(4))
def test_projection_onto_the_scaled_ball_is_feasible_and_nearest_in_its_norm(seed):
    rng = np.random.default_rng(seed)
    n = 3
    ball = Ball(torch.as_tensor(rng.normal(size=n)), 0.7, _scale(rng, n))
    theta = ball.center + torch.as_tensor(rng.normal(0, 3, n))
    p = ball.project(theta)
    assert ball.norm(p - ball.center) <= 0.7 * (1 + 1e-12)
    # nearest in ‖Λ·‖: no feasible point (boundary samples and interior ones) is closer to θ
    dirs = torch.as_tensor(rng.normal(size=(20000, n)))
    dirs = dirs / torch.linalg.vector_norm(dirs * ball.scale, dim=1, keepdim=True)
    radii = torch.as_tensor(rng.uniform(0, 1, (20000, 1))) ** (1 / n)
    feasible = ball.center + 0.7 * torch.cat([dirs, dirs * radii])
    best = float(torch.linalg.vector_norm((p - theta) * ball.scale))
    others = torch.linalg.vector_norm((feasible - theta) * ball.scale, dim=1)
    assert best <= float(others.min()) + 1e-12
    # a feasible point is its own projection; without a scale the ball is the Euclidean one
    inside = ball.center + 0.5 * (p - ball.center)
    assert torch.equal(ball.project(inside), inside)
    euclid = Ball(ball.center, 0.7)
    q = euclid.project(theta)
    d = theta - ball.center
    torch.testing.assert_close(q, ball.center + d * 0.7 / torch.linalg.vector_norm(d))


@pytest.mark.parametrize("seed", range(4))
def test_steepest_step_minimises_the_linear_model_over_the_scaled_ball(seed):
    rng = np.random.default_rng(seed)
    n = 3
    ball = Ball(torch.zeros(n, dtype=torch.float64), 0.3, _scale(rng, n))
    g = torch.as_tensor(rng.normal(size=n))
    d, predicted = ball.steepest(g)
    assert ball.norm(d) == pytest.approx(0.3, rel=1e-12)
    assert predicted == pytest.approx(-float(g @ d), rel=1e-12)
    assert predicted == pytest.approx(0.3 * float(torch.linalg.vector_norm(g / ball.scale)), rel=1e-12)
    dirs = torch.as_tensor(rng.normal(size=(20000, n)))
    boundary = 0.3 * dirs / torch.linalg.vector_norm(dirs * ball.scale, dim=1, keepdim=True)
    assert float(g @ d) <= float((boundary @ g).min()) + 1e-12
    assert Ball(ball.center, 0.3).steepest(g)[1] == pytest.approx(0.3 * float(torch.linalg.vector_norm(g)))
    zero, none = ball.steepest(torch.zeros(n, dtype=torch.float64))
    assert none == 0.0 and not zero.any()


# --------------------------------------------------------------------------------------- Λ
def test_scaling_is_the_square_root_of_adagrads_and_bias_corrected_adams_metric_of_unit_mean():
    g1 = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    g2 = torch.tensor([0.5, 1.0, -3.0, 0.0], dtype=torch.float64)
    ada, adam, euclid = RegionScaling("adagrad", 0.01), RegionScaling("adam", 0.01), RegionScaling("euclidean", 0.01)
    for g in (g1, g2):
        ada.update(g), adam.update(g), euclid.update(g)
    d = torch.sqrt(0.01 + g1**2 + g2**2)
    torch.testing.assert_close(ada.scale, torch.sqrt(d / d.mean()), rtol=1e-14, atol=0)
    v = ADAM_BETA2 * (1 - ADAM_BETA2) * g1**2 + (1 - ADAM_BETA2) * g2**2
    d = torch.sqrt(v / (1 - ADAM_BETA2**2)) + ADAM_EPS
    torch.testing.assert_close(adam.scale, torch.sqrt(d / d.mean()), rtol=1e-12, atol=0)
    for s in (ada.scale, adam.scale):
        assert float(torch.sqrt((s * s).mean())) == pytest.approx(1.0, rel=1e-12)
    assert euclid.scale is None and not euclid.scaled
    # a uniform scaling is the Euclidean ball: Λ = I
    flat = RegionScaling("adagrad", 0.0)
    flat.update(torch.full((5,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(flat.scale, torch.ones(5, dtype=torch.float64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("norm", ["adam", "adagrad"])
def test_steepest_step_of_the_scaled_ball_is_the_optimizers_direction_with_its_length(norm):
    """The ball's steepest step is along g/d, the optimizer's preconditioned direction (not g/d², which would
    be longest where the gradients are smallest), and a step of lr in every coordinate has ‖Λs‖ = lr·√P."""
    rng = np.random.default_rng(3)
    n = 50
    scaling = RegionScaling(norm, 1e-8)
    # gradients over six orders of magnitude, as a deep network's coordinates have
    g = torch.as_tensor(rng.normal(size=n) * 10.0 ** rng.uniform(-4, 2, size=n))
    for _ in range(3):
        scaling.update(g)
    d = scaling.moment.sqrt() if norm == "adagrad" else torch.sqrt(scaling.moment / (1 - ADAM_BETA2**3)) + ADAM_EPS
    step, _ = scaling.ball(torch.zeros(n, dtype=torch.float64), 0.5).steepest(g)
    direction = -g / d
    cosine = float(step @ direction) / float(torch.linalg.vector_norm(step) * torch.linalg.vector_norm(direction))
    assert cosine == pytest.approx(1.0, abs=1e-12)
    assert scaling.norm_of(torch.full((n,), 1e-3, dtype=torch.float64)) == pytest.approx(1e-3 * n**0.5, rel=1e-12)


# --------------------------------------------------------------------------------------- algorithms
def _apts(tr_norm="euclidean", **kw):
    data = grid_data(8, 16, neighbours=8)
    labels = np.zeros(data.num_nodes, dtype=np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, 0)
    task, objective = ForecastTask(data), Objective(data, partition)
    batch = to_dtype(task.batch(np.arange(2)), torch.float64)
    torch.manual_seed(0)
    model = real_models()["sage"](task.in_channels, task.out_channels, hidden=8, layers=3, residual=True).double()
    return APTS(model, objective, comm_for(objective)[0], tr_norm=tr_norm, **kw), batch


def _schwarz(cls, tr_norm, **kw):
    objective, model, batch = seeded_problem(parts=3, coarse=cls is TwoLevel)
    kw.setdefault("local_solver", ADAM)
    return make_algorithm(cls, objective, model, tr_norm=tr_norm, **kw), batch


CASES = [
    (ASM, dict(trial="separate")),
    (ASM, dict(trial="separate", combine="sum")),
    (MSM, dict(trial="separate", globalization="trust_region")),
    (TwoLevel, dict(trial="separate", coarse="additive")),
]


@pytest.mark.parametrize("norm", ["adam", "adagrad"])
@pytest.mark.parametrize("cls,kw", CASES + [(APTS, {}), (APTS, dict(local_method="solver"))])
def test_accepted_steps_stay_in_the_scaled_ball(cls, kw, norm):
    if cls is APTS:
        algo, batch = _apts(norm, radius0=0.02, **kw)
    else:
        algo, batch = _schwarz(cls, norm, radius0=0.02, **kw)
    accepted, on_boundary = 0, []
    for _ in range(6):
        before, radius = algo.flat(), algo.tr.radius
        stats = algo.step(batch)
        step = algo.flat() - before
        if stats["accepted"]:
            accepted += 1
            # Λ of this iteration (updated with its g_t before the local solves)
            assert algo.scaling.norm_of(step) <= radius * (1 + 1e-10)
            assert stats["step_tr_norm"] == pytest.approx(algo.scaling.norm_of(step), rel=1e-12)
            if algo.scaling.norm_of(step) > 0.99 * radius:
                on_boundary.append(abs(float(torch.linalg.vector_norm(step)) - algo.scaling.norm_of(step)) / radius)
        else:
            assert not step.any()
    assert accepted >= 1
    # steps cut by the scaled ball, whose Euclidean length is not Δ: the ball is not the Euclidean one
    assert on_boundary and max(on_boundary) > 1e-5  # 0 up to rounding (1e-16) for the Euclidean ball


def _unit(self, g):
    """Λ = I on the scaled code path."""
    self.count += 1
    self.scale = torch.ones_like(g)


@pytest.mark.parametrize("cls,kw", [
    (ASM, dict(trial="fused")), (ASM, dict(trial="separate", global_pass=True)),
    (ASM, dict(trial="separate", combine="span")), (MSM, dict(globalization="trust_region")),
    (TwoLevel, dict(trial="separate")), (APTS, dict(global_pass=True)), (APTS, dict(local_method="solver")),
])
def test_the_scaled_path_with_unit_scale_is_the_euclidean_trajectory_bitwise(cls, kw, monkeypatch):
    def run(norm):
        algo, batch = _apts(norm, **kw) if cls is APTS else _schwarz(cls, norm, radius0=0.05, **kw)
        return [(algo.step(batch), algo.flat())[1] for _ in range(4)], algo

    euclid, algo = run("euclidean")
    assert algo.scaling.scale is None
    monkeypatch.setattr(RegionScaling, "update", _unit)
    scaled, algo = run("adagrad")
    assert algo.scaling.scale is not None
    assert not torch.equal(euclid[0], euclid[-1])  # the trajectory moves
    for a, b in zip(euclid, scaled, strict=True):
        assert torch.equal(a, b)


def test_scaling_is_checkpointed():
    algo, batch = _schwarz(ASM, "adam", trial="separate")
    for _ in range(2):
        algo.step(batch)
    state = algo.state_dict()
    other, _ = _schwarz(ASM, "adam", trial="separate")
    other.set_flat(algo.flat())
    other.load_state_dict(state)
    assert other.scaling.count == 2 and torch.equal(other.scaling.moment, algo.scaling.moment)
    algo.step(batch), other.step(batch)  # from the same θ: the same g_t, so the same Λ
    assert other.scaling.count == 3 and torch.equal(algo.scaling.scale, other.scaling.scale)


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [ASM, MSM, APTS])
def test_bad_tr_norm_names_the_key(cls):
    make = partial(_apts) if cls is APTS else partial(_schwarz, cls)
    with pytest.raises(ConfigError, match=r"ddm\.tr_norm.*'manhattan'"):
        make("manhattan")
    with pytest.raises(ConfigError, match=r"ddm\.tr_norm.*globalization 'offo'"):
        make("adam", globalization="offo", **({"local_method": "solver"} if cls is APTS else {}))


def test_cli_refuses_a_tr_norm_without_trust_region_with_exit_2(capsys):
    cli_error(capsys, ["train", *tiny_run("ddm=asm", "ddm.tr_norm=adagrad", "ddm.globalization=none")],
              "ddm.tr_norm")
