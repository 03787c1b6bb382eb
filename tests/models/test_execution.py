"""How stages execute (gnnddm.models.execution): bf16 products with float32 parameters, halos and loss
(``trainer.precision``), and compiled stages with their fallback (``trainer.compile``)."""

from __future__ import annotations

import functools
import json
import logging

import pytest
import torch

import gnnddm.models.execution as execution
from gnnddm.config import compose
from gnnddm.ddm.halo_sync import HaloSync
from gnnddm.models.execution import compile_seconds, set_compile, set_precision
from gnnddm.schema.root import bf16_supported
from gnnddm.testing.gallery import comm_for, model_graph, problem, real_models
from gnnddm.testing.runs import cli_error, tiny_run_in
from gnnddm.training import train

F_IN, F_OUT, EDGE_DIM = 5, 3, 3
needs_bf16 = pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16 products")


def twins(name: str, setting: str = "bf16", hidden: int = 16, layers: int = 3, **kw):
    """The model ``name`` twice with the same weights: as built, and with ``setting`` (a precision, or
    ``compiled``)."""
    cls = real_models()[name]
    torch.manual_seed(0)
    ref = cls(F_IN, F_OUT, EDGE_DIM, hidden=hidden, layers=layers, **kw)
    other = cls(F_IN, F_OUT, EDGE_DIM, hidden=hidden, layers=layers, **kw)
    other.load_state_dict(ref.state_dict())
    if setting == "compiled":
        set_compile(other, True)
    else:
        set_precision(other, setting)
    return ref, other


def loss_and_grads(model, x, graph):
    model.zero_grad()
    out = model(x, graph)
    (out ** 2).mean().backward()
    return out, torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def relative(a, b) -> float:
    return float(((a - b).norm() / b.norm()).detach())


@needs_bf16
@pytest.mark.parametrize("name,kw", [*((n, {}) for n in sorted(real_models())), ("sage", {"residual": True}),
                                     ("sage", {"aggr": "sum"})])
def test_bf16_products_give_float32_outputs_and_gradients_close_to_float32(name, kw):
    """Every model: float32 outputs and parameter gradients within bf16's rounding of the float32 model's, and
    not equal to them (the products did run in bf16). The gradients' bound is wider: a pre-activation that
    bf16 rounds across zero flips its ReLU, and the error compounds backwards through the layers (a few
    per cent on the first layer's gradient of a sum aggregation); a wrong term would be of order one."""
    ref, low = twins(name, **kw)
    graph, x = model_graph(), torch.randn(2, 32, F_IN)
    out_ref, g_ref = loss_and_grads(ref, x, graph)
    out_low, g_low = loss_and_grads(low, x, graph)
    assert out_low.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in low.parameters())
    assert 0 < relative(out_low, out_ref) < 0.02
    assert 0 < relative(g_low, g_ref) < 0.05


@needs_bf16
def test_sage_narrow_output_layer_aggregates_in_float32_after_bf16_products():
    """GraphSAGE's layers narrower than their input aggregate the projected side (``f_out < f_in``)."""
    ref, low = twins("sage", hidden=2)
    graph, x = model_graph(), torch.randn(2, 32, F_IN)
    (out_ref, g_ref), (out_low, g_low) = loss_and_grads(ref, x, graph), loss_and_grads(low, x, graph)
    assert 0 < relative(out_low, out_ref) < 0.02 and 0 < relative(g_low, g_ref) < 0.02


@needs_bf16
def test_stages_return_float32_so_halo_sync_exchanges_float32_and_follows_global():
    """halo_sync's per-layer exchange sees float32 states; its gradient in bf16 on 3 parts is within bf16's
    rounding of the whole graph's float32 gradient."""
    data, _, objective, task, batch = problem(parts=3, overlap=1, dtype=torch.float32)
    torch.manual_seed(0)
    model = real_models()["sage"](task.in_channels, task.out_channels, hidden=8, layers=2)
    losses = objective.on(batch)
    model.zero_grad()
    losses.global_loss(model).backward()
    g_whole = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    set_precision(model, "bf16")
    state = model.encode(batch.x.transpose(0, 1), objective.full_graph)
    assert all(s.dtype == torch.float32 for s in model.layer(0, state, objective.full_graph))
    algo = HaloSync(model, objective, comm_for(objective)[0], lambda params: torch.optim.SGD(params, lr=0.0))
    model.zero_grad()
    algo.path.loss_backward(model, functools.partial(algo.inputs, losses))
    g_parts = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert 0 < relative(g_parts, g_whole) < 0.02


def test_float32_precision_changes_nothing():
    """``trainer.precision=float32`` is the model as it is: bitwise the same outputs."""
    a, b = twins("sage", "float32", hidden=8, layers=2)
    x = torch.randn(2, 32, F_IN)
    assert torch.equal(a(x, model_graph()), b(x, model_graph()))
    with pytest.raises(ValueError, match="precision: expected one of float32, bf16"):
        set_precision(b, "fp16")


def test_a_stage_that_cannot_be_compiled_runs_uncompiled_with_one_warning(monkeypatch, caplog):
    """The fallback: a stage whose compilation fails runs as it is (the same outputs), with one warning naming
    the stage and the reason, and is not tried again."""
    calls = []

    def failing_compile(fn, **kw):
        def compiled(*args, **kwargs):
            calls.append(fn.__name__)
            raise RuntimeError("Sparse tensor creation not supported\nmore detail")
        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    a, b = twins("sage", "compiled", hidden=8, layers=2)
    x = torch.randn(2, 32, F_IN)
    with caplog.at_level(logging.WARNING, logger="gnnddm.models.execution"):
        for _ in range(3):
            assert torch.equal(b(x, model_graph()), a(x, model_graph()))
    assert sorted(calls) == ["decode", "encode", "layer"]  # each tried once
    warned = [r.getMessage() for r in caplog.records if "trainer.compile" in r.getMessage()]
    assert len(warned) == 3 and any("GraphSAGE.layer cannot be compiled (RuntimeError: Sparse tensor creation "
                                    "not supported); it runs uncompiled" in w for w in warned), warned


def test_a_model_error_inside_a_compiled_stage_is_the_model_error(monkeypatch):
    """An error of the model's own (bad input) is raised as uncompiled, not swallowed by the fallback."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    model = real_models()["interaction"](F_IN, F_OUT, EDGE_DIM + 1, hidden=8, layers=1)
    set_compile(model, True)
    with pytest.raises(Exception, match="model.edge_dim: 4, but the graph has edge features of width 3"):
        model(torch.randn(2, 32, F_IN), model_graph())


def inductor_error() -> str | None:
    """Why torch.compile's inductor cannot compile a trivial function here (no C++ compiler, no Python
    headers), None when it can."""
    try:
        torch.compile(lambda t: t * 2 + 1, fullgraph=True)(torch.ones(3))
    except Exception as exc:  # noqa: BLE001 - whatever the toolchain raises
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@pytest.mark.slow
def test_compiled_stages_give_the_same_outputs_and_gradients_to_float32_rounding():
    """torch.compile (inductor) of the interaction network's stages: the outputs and gradients of the
    uncompiled model to float32 rounding, and the compile time counted apart. Slow: compiling takes ~30 s."""
    error = inductor_error()
    if error is not None:
        pytest.skip(f"inductor cannot compile on this machine ({error}); the fallback is tested above")
    ref, fast = twins("interaction", "compiled", hidden=8, layers=2)
    graph, x = model_graph(), torch.randn(2, 32, F_IN)
    before = compile_seconds()
    (out_ref, g_ref), (out_fast, g_fast) = loss_and_grads(ref, x, graph), loss_and_grads(fast, x, graph)
    assert compile_seconds() > before  # the forward and backward graphs were compiled, and timed
    assert fast.compiled_stages["layer"] is not False  # compiled, not fallen back
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)


@needs_bf16
def test_a_run_in_bf16_trains_as_float32_within_rounding(tmp_path):
    """``gnnddm train trainer.precision=bf16``: the tiny run's final validation loss within 2 % of float32's."""
    runs = {p: train(compose(tiny_run_in(tmp_path, f"trainer.precision={p}", "tracking.enabled=false",
                                         out=p))) for p in ("float32", "bf16")}
    a, b = (runs[p]["final"]["val_loss"] for p in ("float32", "bf16"))
    assert a != b and abs(b - a) / a < 0.02


def test_bf16_where_the_device_has_none_is_one_error_naming_the_key(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("gnnddm.schema.root.bf16_supported", lambda device: False)
    cli_error(capsys, ["train", *tiny_run_in(tmp_path, "trainer.precision=bf16")], "trainer.precision",
              "bf16", "no bf16 instructions", "trainer.precision=float32")
    written = {p.name for p in (tmp_path / "out").iterdir()}  # the failed run's record, nothing else
    assert written <= {".hydra", "summary.json", "train.log"}, written
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "failed"


def test_an_unknown_precision_names_the_choices(capsys, tmp_path):
    cli_error(capsys, ["train", *tiny_run_in(tmp_path, "trainer.precision=fp16")], "trainer.precision", "fp16",
              "float32", "bf16")


def test_the_compile_clock_counts_nested_events_once():
    clock = execution._CompileClock()
    clock._begin()
    clock._begin()
    clock._end()
    assert clock.seconds == 0.0
    clock._end()
    assert clock.seconds > 0.0


def test_the_compute_an_algorithm_accounts_leaves_out_the_compiling(monkeypatch):
    """``Algorithm.timed`` subtracts the compile seconds that passed inside it from the measured compute."""
    import time

    import gnnddm.ddm.base as base
    from gnnddm.ddm.global_ import Global

    _, _, objective, task, _ = problem(parts=1, overlap=0, dtype=torch.float32)
    model = real_models()["sage"](task.in_channels, task.out_channels, hidden=4, layers=1)
    algo = Global(model, objective, comm_for(objective)[0], lambda params: torch.optim.SGD(params, lr=0.1))
    clock = iter([1.0, 1.15])  # 0.15 s of compiling inside the region
    monkeypatch.setattr(base, "compile_seconds", lambda: next(clock))
    with algo.timed(0):
        time.sleep(0.2)
    measured = algo.accounting._phase[0]
    assert 0.04 < measured < 0.1, measured
