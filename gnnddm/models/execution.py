"""How a model's stages execute: the precision of their products and their compilation.

Every model's ``encode``, ``layer`` and ``decode`` are :func:`stage` methods (see :mod:`gnnddm.models`,
Stages); two run settings change how they execute, never what they compute beyond rounding:

- ``trainer.precision: bf16`` (:func:`set_precision`). A stage runs under ``torch.autocast``: the dense
  products take bf16 operands (linear layers through autocast, and the products that the autograd Functions
  of the models write out, through :func:`compute_dtype` and :func:`lowered`, in their backward passes too).
  The sparse aggregations, for which CPUs have no bf16 kernel, and the attention kernels (whose softmax sums
  need float32) run in float32 (:func:`in_float32`). Parameters, gradients, the optimizer's state and the
  loss stay float32, and a stage returns its floating-point outputs in the parameters' dtype: what passes
  between stages (a halo exchange, a block's rows, a loss) is float32 as without it.
- ``trainer.compile: true`` (:func:`set_compile`). A stage runs through ``torch.compile(fullgraph=True)``
  (the inductor backend: fused C++/OpenMP loops on CPUs, Triton kernels on GPUs), compiled on its first
  call. A stage that cannot be compiled whole (a sparse CSR tensor inside, which torch.compile does not
  trace; no working C++ compiler) runs as it is, with one warning naming the stage and the reason. The
  seconds spent compiling, forward and backward graphs alike, are counted apart (:func:`compile_seconds`)
  so that a run reports them separately from its step time.
"""

from __future__ import annotations

import functools
import logging
import time

import torch
from torch import nn

from gnnddm.schema.root import PRECISIONS

log = logging.getLogger(__name__)

#: the dtype of a stage's dense products for each value of ``trainer.precision`` (None: the parameters')
COMPUTE_DTYPES = dict(zip(PRECISIONS, (None, torch.bfloat16), strict=True))
#: dynamo's limit of compiled variants per stage while compiling: one per layer index of a deep model
#: and per graph shape (subdomains, blocks, coarse levels), above its default of 8
RECOMPILE_LIMIT = 64


def staged_modules(model: nn.Module):
    """``model`` and the modules inside it that have stages (a rollout's base model, ...)."""
    return [m for m in model.modules() if all(hasattr(type(m), name) for name in ("encode", "layer", "decode"))]


def set_precision(model: nn.Module, precision: str) -> None:
    """Run the dense products of every stage of ``model`` in ``precision`` (``trainer.precision``)."""
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"precision: expected one of {', '.join(COMPUTE_DTYPES)}, got {precision!r}")
    for module in staged_modules(model):
        module.compute_dtype = COMPUTE_DTYPES[precision]


def set_compile(model: nn.Module, compile: bool) -> None:
    """Compile every stage of ``model`` on its first call (``trainer.compile``), or run them as they are."""
    for module in staged_modules(model):
        module.compiled_stages = {} if compile else None
    if compile:
        _clock.install()
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)


def stage(method):
    """A model stage (``encode``, ``layer``, ``decode``) run as the module's settings say (module docstring):
    compiled (``compiled_stages``) and in its ``compute_dtype``, returning float outputs in the parameters'
    dtype. Without either setting, the method itself."""
    name = method.__name__

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        dtype = getattr(self, "compute_dtype", None)
        compiled = getattr(self, "compiled_stages", None)
        if dtype is None and compiled is None:
            return method(self, *args, **kwargs)
        call = method if compiled is None else functools.partial(_compiled, compiled, method, name)
        if dtype is None:
            return call(self, *args, **kwargs)
        param = next(self.parameters())
        with torch.autocast(param.device.type, dtype=dtype):
            out = call(self, *args, **kwargs)
        return _cast_floats(out, param.dtype)

    return run


def _compiled(cache: dict, method, name: str, module, *args, **kwargs):
    """``method(module, ...)`` through its compiled form in ``cache``, compiled on first use; the method as
    it is, with one warning, where it cannot be compiled."""
    fn = cache.get(name)
    if fn is None:
        fn = cache[name] = torch.compile(method, fullgraph=True)
    if fn is False:
        return method(module, *args, **kwargs)
    try:
        return fn(module, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - dynamo and inductor raise many types; the method decides below
        out = method(module, *args, **kwargs)  # an error of the model's own is raised here, as uncompiled
        cache[name] = False
        _warn_uncompiled(type(module).__name__, name, exc)
        return out


@functools.cache
def _warn_uncompiled(cls: str, name: str, exc: Exception) -> None:
    reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    log.warning("trainer.compile: %s.%s cannot be compiled (%s: %s); it runs uncompiled", cls, name,
                type(exc).__name__, reason[:300])


def _cast_floats(out, dtype: torch.dtype):
    if isinstance(out, tuple):
        return tuple(_cast_floats(o, dtype) for o in out)
    return out.to(dtype) if torch.is_tensor(out) and out.is_floating_point() else out


def compute_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast gives the dense products on ``x``'s device now, None where it is off: what the
    autograd Functions of the models pass to their backward pass, which autocast does not reach."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def lowered(dtype: torch.dtype | None, *tensors):
    """``tensors`` in ``dtype`` (None: as they are; None entries stay None)."""
    return tuple(t if dtype is None or t is None else t.to(dtype) for t in tensors)


def in_float32(forward):
    """An autograd Function's ``forward`` run with autocast off and its bf16/fp16 inputs in float32: for
    the kernels without a low-precision form (the CPU's sparse products) and those whose sums need float32
    (the attention's softmax). Without autocast, the forward as it is."""

    @functools.wraps(forward)
    def run(ctx, *args):
        device = next(a for a in args if torch.is_tensor(a)).device.type
        if not torch.is_autocast_enabled(device):
            return forward(ctx, *args)
        with torch.autocast(device, enabled=False):
            return forward(ctx, *(a.float() if _low(a) else a for a in args))

    return run


def _low(a) -> bool:
    return torch.is_tensor(a) and a.layout == torch.strided and a.dtype in (torch.bfloat16, torch.float16)


class _CompileClock:
    """Seconds spent compiling in this process (dynamo's forward graphs and the lazy backward ones), from
    dynamo's compile callbacks; nested events count once."""

    def __init__(self):
        self.seconds, self._depth, self._start, self._installed = 0.0, 0, 0.0, False

    def install(self) -> None:
        if self._installed:
            return
        try:
            from torch._dynamo.callback import callback_handler
        except ImportError:  # a torch without the callbacks: compile time is not measured apart
            log.warning("trainer.compile: this torch reports no compile events; compile time is counted in "
                        "the step time")
            return
        callback_handler.register_start_callback(self._begin)
        callback_handler.register_end_callback(self._end)
        self._installed = True

    def _begin(self, *_):
        if self._depth == 0:
            self._start = time.perf_counter()
        self._depth += 1

    def _end(self, *_):
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._start


_clock = _CompileClock()


def compile_seconds() -> float:
    """Seconds this process has spent compiling stages so far (0 without ``trainer.compile``)."""
    return _clock.seconds
