"""Local solvers and their feasible sets."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from gnnddm.ddm.solvers import Ball, Box, BoxAdagrad, make_local_solver, project_ball_, span_minimize
from gnnddm.errors import ConfigError


def test_box_adagrad_never_leaves_its_box():
    torch.manual_seed(0)
    x = torch.nn.Parameter(torch.zeros(50, dtype=torch.float64))
    lo, hi = -0.1 * torch.rand(50, dtype=torch.float64), 0.05 * torch.rand(50, dtype=torch.float64)
    target = 3.0 * torch.randn(50, dtype=torch.float64)  # unconstrained minimiser far outside the box
    opt = BoxAdagrad([x], lr=5.0)
    opt.set_box([lo], [hi])
    for _ in range(30):
        opt.zero_grad()
        ((x - target) ** 2).sum().backward()
        opt.step()
        assert bool(((x >= lo) & (x <= hi)).all())
    # it reaches the box corner closest to the target (the constrained minimiser)
    torch.testing.assert_close(x.detach(), torch.clamp(target, lo, hi), rtol=0, atol=1e-6)


def test_box_adagrad_without_box_is_adagrad():
    torch.manual_seed(0)
    a, b = (torch.nn.Parameter(torch.randn(5)) for _ in range(2))
    b.data.copy_(a.data)
    oa, ob = BoxAdagrad([a], lr=0.3), torch.optim.Adagrad([b], lr=0.3)
    for _ in range(4):
        for p, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (p**4).sum().backward()
            o.step()
    torch.testing.assert_close(a, b)


def test_projections_are_onto_the_nearest_feasible_point():
    c = torch.tensor([1.0, 0.0])
    assert torch.allclose(Ball(c, 2.0).project(torch.tensor([5.0, 0.0])), torch.tensor([3.0, 0.0]))
    inside = torch.tensor([1.5, 0.5])
    assert Ball(c, 2.0).project(inside) is inside
    box = Box(torch.tensor([0.0, -1.0]), torch.tensor([1.0, 1.0]))
    assert torch.equal(box.project(torch.tensor([2.0, -3.0])), torch.tensor([1.0, -1.0]))
    params = [torch.tensor([3.0, 4.0]), torch.tensor([12.0])]
    project_ball_(params, [torch.zeros(2), torch.zeros(1)], 6.5)  # ‖(3, 4, 12)‖ = 13
    assert torch.allclose(torch.cat(params), torch.tensor([1.5, 2.0, 6.0]))


def test_make_local_solver_names_the_bad_key():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_local_solver(partial(BoxAdagrad, lr=0.1), p), BoxAdagrad)
    with pytest.raises(ConfigError, match=r"ddm.local_solver: expected a solver factory"):
        make_local_solver({"lr": 0.1}, p)
    with pytest.raises(ConfigError, match=r"ddm.local_solver.lr"):
        make_local_solver(partial(torch.optim.SGD), p)
    with pytest.raises(ConfigError, match=r"ddm.local_solver: .*Adam.* does not take"):
        make_local_solver(partial(torch.optim.Adam, lr=0.1, nesterov=True), p)


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
