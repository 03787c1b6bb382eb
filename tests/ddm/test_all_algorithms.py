"""Properties several algorithms share: reduction to the local solver on one subdomain, convergence to a
known least-squares minimiser, resuming from a checkpoint, bad options named (docs/algorithms.md).
Each algorithm of conf/ddm/ has its own tests/ddm/test_<name>.py.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch

from gnnddm.config import options
from gnnddm.ddm.asm import ASM
from gnnddm.ddm.llcg import LLCG
from gnnddm.ddm.local_avg import LocalAvg
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.solvers import BoxAdagrad
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.errors import ConfigError
from gnnddm.testing.algorithms import (
    algorithm_and_accounting,
    flat_params,
    make_algorithm,
    optimizer_steps,
    seeded_model,
    seeded_problem,
    with_coarse,
)
from gnnddm.testing.gallery import LinearGNN, least_squares_problem, problem

ADAM = partial(torch.optim.Adam, lr=0.01)


# -------------------------------------------------------------------- test files
@pytest.mark.parametrize("name", options("ddm"))
def test_every_algorithm_has_its_test_file(name):
    assert (Path(__file__).parent / f"test_{name}.py").is_file(), f"ddm={name} has no tests/ddm/test_{name}.py"


# ------------------------------------------------------------------------- p = 1
P1_CASES = {
    "asm_none": (ASM, {"globalization": "none"}),
    "asm_tr_large_radius": (ASM, {"globalization": "trust_region", "radius0": 1e6, "radius_max": float("inf"),
                                  "trial": "separate"}),
    "asm_no_foc": (ASM, {"globalization": "none", "foc": False}),
    "msm": (MSM, {}),
    "local_avg": (LocalAvg, {}),
    "two_level_without_coarse": (TwoLevel, {"globalization": "none", "coarse_steps": 0}),
}


@pytest.mark.parametrize("case", sorted(P1_CASES))
@pytest.mark.slow
def test_one_subdomain_reduces_to_local_solver_on_global_loss(case):
    cls, kw = P1_CASES[case]
    _, _, objective, task, batch = problem(parts=1, overlap=0)
    model, ref = seeded_model(task), seeded_model(task)
    algo = make_algorithm(cls, objective, model, local_steps=3, local_solver=ADAM, **kw)
    for _ in range(2):
        stats = algo.step(batch)
        assert stats.get("accepted", 1.0) == 1.0
    # the local solver (one Adam, state kept across outer iterations) ran 2 x 3 steps on f
    torch.testing.assert_close(flat_params(model), optimizer_steps(ref, objective, batch, 6), rtol=1e-9, atol=1e-11)


# ------------------------------------------------------------------- convergence
@pytest.mark.parametrize(
    "cls,kw",
    [
        (ASM, {}),
        (ASM, {"local_solver": partial(torch.optim.SGD, lr=0.5), "combine": "average"}),
        (TwoLevel, {"coarse": "additive"}),
        (TwoLevel, {"coarse": "pre"}),
        (TwoLevel, {"coarse": "post"}),
    ],
    ids=["asm", "asm_sgd_average", "two_level_additive", "two_level_pre", "two_level_post"],
)
def test_converges_to_the_least_squares_minimiser(cls, kw):
    objective, task, truth, batch = least_squares_problem(parts=3, overlap=1)
    if cls is TwoLevel:
        objective = with_coarse(objective, clusters=8)
    torch.manual_seed(0)
    model = LinearGNN(task.in_channels, task.out_channels).double()
    opts = {"local_steps": 3, "local_solver": partial(torch.optim.Adam, lr=0.05), "radius0": 0.5, **kw}
    algo = make_algorithm(cls, objective, model, **opts)
    losses = objective.on(batch)
    start = float(losses.global_loss(model))
    for _ in range(100):
        algo.step(batch)
    assert float(losses.global_loss(model)) < 1e-6 * start
    torch.testing.assert_close(flat_params(model), flat_params(truth), rtol=0, atol=1e-3)


# ------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("cls,kw", [(ASM, {}), (ASM, {"globalization": "offo", "local_solver":
                                    partial(BoxAdagrad, lr=0.1)}), (LLCG, {})], ids=["asm", "offo", "llcg"])
def test_resuming_from_state_dict_continues_the_same_run(cls, kw):
    _, _, objective, task, batch = problem(parts=3, overlap=2)
    adam = lambda ps: torch.optim.Adam(ps, lr=0.01)  # noqa: E731
    model = seeded_model(task)
    algo = make_algorithm(cls, objective, model, adam, local_solver=ADAM, **kw) if not kw else \
        make_algorithm(cls, objective, model, adam, **kw)
    for _ in range(2):
        algo.step(batch)
    saved_model, saved_algo = copy.deepcopy(model.state_dict()), copy.deepcopy(algo.state_dict())
    for _ in range(2):
        algo.step(batch)
    resumed = seeded_model(task, seed=5)
    resumed.load_state_dict(saved_model)
    again = make_algorithm(cls, objective, resumed, adam, local_solver=ADAM, **kw) if not kw else \
        make_algorithm(cls, objective, resumed, adam, **kw)
    again.load_state_dict(saved_algo)
    for _ in range(2):
        again.step(batch)
    torch.testing.assert_close(flat_params(resumed), flat_params(model), rtol=0, atol=0)
    assert again.accounting.as_dict()["rounds"] == algo.accounting.as_dict()["rounds"]


@pytest.mark.parametrize("cls,kw", [(ASM, {}), (ASM, {"combine": "span"}), (TwoLevel, {"coarse": "pre"})],
                         ids=["asm", "asm_span", "two_level"])
@pytest.mark.slow
def test_fused_trial_resumes_from_its_checkpoint_state(cls, kw):
    objective, model, batch = seeded_problem(coarse=cls is TwoLevel)
    opts = {"local_solver": partial(torch.optim.Adam, lr=0.01), "trial": "fused", **kw}
    algo, _ = algorithm_and_accounting(cls, objective, model, **opts)
    for _ in range(2):
        algo.step(batch)
    assert algo.pending is not None
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(algo.state_dict())
    runs = [algo.step(batch) for _ in range(2)]
    resumed = copy.deepcopy(model)
    resumed.load_state_dict(saved_model)
    again, _ = algorithm_and_accounting(cls, objective, resumed, **opts)
    again.load_state_dict(saved)
    assert [again.step(batch) for _ in range(2)] == runs
    torch.testing.assert_close(flat_params(resumed), flat_params(model), rtol=0, atol=0)


# --------------------------------------------------------------------- bad input
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
    objective, model, _ = seeded_problem(coarse=cls is TwoLevel)
    with pytest.raises(ConfigError, match=rf"ddm\.{key}"):
        algorithm_and_accounting(cls, objective, model, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), **kw)
