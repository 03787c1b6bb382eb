"""Local solvers and their feasible sets."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from gnnddm.ddm.solvers import Ball, Box, BoxAdagrad, make_local_solver, project_ball_
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
