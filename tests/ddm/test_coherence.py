"""ddm.coherence: the first-order coherence of the data-space Schwarz methods on inexact subdomains (overlap
1 < 3 layers). ``exact``: ∇h_k(θ_t) = ∇f(θ_t) of the whole problem, computed on the graph parts through the
halo exchange, and the loss values of the trust-region test are f's; ``local``: the truncated problem's
gradient, measurably different. Bad values named (gnnddm/ddm/asm.py)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from gnnddm.ddm.asm import ASM
from gnnddm.ddm.msm import MSM
from gnnddm.ddm.objective import Objective
from gnnddm.ddm.two_level import TwoLevel
from gnnddm.errors import ConfigError
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.algorithms import make_algorithm, seeded_problem, with_coarse
from gnnddm.testing.gallery import grid_data, real_models, to_dtype
from gnnddm.testing.runs import cli_error, tiny_run

ADAM = partial(torch.optim.Adam, lr=0.05)


def _inexact(cls, parts=3, coherence="exact", **kw):
    """``cls`` with a 3-layer SAGE on ``parts`` bands of the 8 x 16 grid with a one-hop overlap (inexact
    subdomains), and its batch."""
    data = grid_data(8, 16, neighbours=8)
    labels = (np.arange(data.num_nodes) * parts // data.num_nodes).astype(np.int64)
    partition = build_partition(data.edge_index, data.num_nodes, labels, 1)
    task, objective = ForecastTask(data), Objective(data, partition)
    if cls is TwoLevel:
        objective = with_coarse(objective)
    batch = to_dtype(task.batch(np.arange(2)), torch.float64)
    torch.manual_seed(0)
    model = real_models()["sage"](task.in_channels, task.out_channels, hidden=8, layers=3, residual=True).double()
    return make_algorithm(cls, objective, model, local_solver=ADAM, coherence=coherence, **kw), batch


def _global(algo, batch) -> tuple[float, torch.Tensor]:
    """f and ∇f of the whole problem on the full graph at the algorithm's θ."""
    algo.model.zero_grad(set_to_none=True)
    f = algo.objective.on(batch).global_loss(algo.model)
    f.backward()
    g = algo.flat_grad()
    algo.model.zero_grad(set_to_none=True)
    return float(f.detach()), g


def _model_gradients(algo, batch) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """g_t and ∇h_k(θ_t) of every subdomain's local model, each by its own backward pass at θ_t."""
    losses = algo.objective.on(batch)
    theta = algo.flat()
    g, _, per_part = algo.subdomain_gradients(losses, keep=True)
    grads = {}
    for k in algo.parts:
        h, _ = algo.subdomain_model(losses, k, theta, g, per_part)
        algo.set_flat(theta)
        grads[k] = algo._loss_grad(h)[1]
    return g, grads


@pytest.mark.parametrize("cls", [ASM, MSM, TwoLevel])
@pytest.mark.parametrize("parts", [2, 3])
def test_exact_coherence_gives_every_local_model_the_global_gradient(cls, parts):
    algo, batch = _inexact(cls, parts)
    f, grad_f = _global(algo, batch)
    g, grads = _model_gradients(algo, batch)
    torch.testing.assert_close(g, grad_f, rtol=1e-10, atol=1e-12)
    for k, grad_h in grads.items():
        torch.testing.assert_close(grad_h, grad_f, rtol=1e-10, atol=1e-12, msg=f"part {k}")
    # summed with the combination's weights: Σ_k ω_k ∇h_k(θ_t) = W·∇f(θ_t)
    total = sum(algo.omega[k] * grads[k] for k in grads)
    torch.testing.assert_close(total, algo.weight_sum * grad_f, rtol=1e-10, atol=1e-12)
    assert float(algo.subdomain_losses(algo.objective.on(batch))) == pytest.approx(f, rel=1e-12)
    if cls is TwoLevel:  # the coarse model is τ-corrected with the same exact gradient
        h_c, _ = algo.coarse_model(algo.objective.on(batch), 0, algo.flat(), g)
        algo.set_flat(algo.flat())
        torch.testing.assert_close(algo._loss_grad(h_c)[1], grad_f, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [ASM, MSM])
def test_local_coherence_on_inexact_subdomains_is_the_truncated_gradient(cls):
    algo, batch = _inexact(cls, coherence="local")
    f, grad_f = _global(algo, batch)
    g, grads = _model_gradients(algo, batch)
    gap = float(torch.linalg.vector_norm(g - grad_f) / torch.linalg.vector_norm(grad_f))
    assert gap > 1e-3  # the difference exact coherence removes is real (here about 1 %)
    for grad_h in grads.values():
        torch.testing.assert_close(grad_h, g, rtol=1e-10, atol=1e-12)
    assert abs(float(algo.subdomain_losses(algo.objective.on(batch))) - f) > 1e-8 * f  # beyond round-off


@pytest.mark.parametrize("trial", ["separate", "fused"])
def test_exact_coherence_tests_the_step_with_the_whole_problem(trial):
    algo, batch = _inexact(ASM, trial=trial, radius0=0.05)
    for _ in range(4):
        f, _ = _global(algo, batch)
        before = algo.flat()
        stats = algo.step(batch)
        if trial == "separate":
            assert stats["loss"] == pytest.approx(f, rel=1e-12)
            algo.set_flat(before + (algo.flat() - before if stats["accepted"] else 0))
            if stats["accepted"]:
                assert stats["actual"] == pytest.approx(f - _global(algo, batch)[0], rel=1e-9, abs=1e-13)
        elif "actual" in stats:  # the pending trial of the previous iteration, decided on this batch
            assert stats["loss"] == pytest.approx(_global(algo, batch)[0], rel=1e-12)
    assert algo.tr.radius != 0.05


def test_exact_coherence_is_the_same_with_one_part_and_with_three():
    one, batch = _inexact(ASM, parts=1, trial="separate")
    three, _ = _inexact(ASM, parts=3, trial="separate")
    losses1, losses3 = one.objective.on(batch), three.objective.on(batch)
    g1, f1, _ = one.subdomain_gradients(losses1)
    g3, f3, _ = three.subdomain_gradients(losses3)
    torch.testing.assert_close(g3, g1, rtol=1e-10, atol=1e-12)
    assert f3 == pytest.approx(f1, rel=1e-12)


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("options,words", [
    (dict(coherence="global"), ["ddm.coherence", "'global'"]),
    (dict(coherence="exact", foc=False), ["ddm.coherence", "foc"]),
    (dict(coherence="exact", combine="span"), ["ddm.coherence", "span"]),
])
def test_bad_coherence_names_the_key(options, words):
    objective, model, batch = seeded_problem(parts=2)
    with pytest.raises(ConfigError) as err:
        make_algorithm(ASM, objective, model, **options)
    for word in words:
        assert word in str(err.value)


def test_exact_coherence_needs_a_model_that_exposes_its_layers():
    objective, model, batch = seeded_problem(parts=2)  # EdgeGNN: one forward, no stages
    with pytest.raises(ConfigError, match=r"ddm\.coherence=exact"):
        make_algorithm(ASM, objective, model, coherence="exact")


def test_cli_refuses_exact_coherence_without_foc_with_exit_2(capsys):
    cli_error(capsys, ["train", *tiny_run("ddm=asm", "ddm.coherence=exact", "ddm.foc=false")], "ddm.coherence")
