"""Local solvers of the Schwarz methods and the feasible sets they are kept in (DESIGN.md §4).

A local solver is a torch optimizer run for m steps on a subdomain's local model. The names a config
may use (``ddm.local_solver.name``):

- ``sgd``: θ ← θ − lr·∇h
- ``adam``: torch.optim.Adam
- ``adagrad``: θ_i ← θ_i − lr·∇h_i / (√(a_i) + eps), a_i ← a_i + ∇h_i² (torch.optim.Adagrad, no momentum)
- ``adagrad_box``: :class:`BoxAdagrad`, AdaGrad followed by the projection onto a per-coordinate box.

Feasible sets: :class:`Ball` (trust region ‖θ − c‖₂ ≤ r) and :class:`Box` (lo ≤ θ ≤ hi), both on the flat
parameter vector; ``project`` maps any point to the nearest feasible one (Euclidean projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gnnddm.errors import ConfigError

SOLVERS = ("sgd", "adam", "adagrad", "adagrad_box")


@dataclass(frozen=True)
class Ball:
    """The trust region {θ : ‖θ − center‖₂ ≤ radius} (flat vectors)."""

    center: torch.Tensor
    radius: float

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """θ if feasible, else center + radius·(θ − center)/‖θ − center‖."""
        d = theta - self.center
        norm = float(torch.linalg.vector_norm(d))
        if norm <= self.radius:
            return theta
        return self.center + d * (self.radius / norm)


@dataclass(frozen=True)
class Box:
    """The box {θ : lo ≤ θ ≤ hi} (flat vectors, coordinate-wise)."""

    lo: torch.Tensor
    hi: torch.Tensor

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(theta, self.hi), self.lo)


def project_ball_(params: list[torch.Tensor], center: list[torch.Tensor], radius: float) -> None:
    """Project the parameters, in place, onto ‖θ − center‖₂ ≤ radius (norm over all of them)."""
    with torch.no_grad():
        sq = sum(float(((p - c) ** 2).sum()) for p, c in zip(params, center, strict=True))
        norm = sq**0.5
        if norm > radius:
            scale = radius / norm
            for p, c in zip(params, center, strict=True):
                p.copy_(c + (p - c) * scale)


def project_box_(params: list[torch.Tensor], lo: list[torch.Tensor], hi: list[torch.Tensor]) -> None:
    """Clamp each parameter, in place, into [lo, hi] (per coordinate)."""
    with torch.no_grad():
        for p, a, b in zip(params, lo, hi, strict=True):
            p.copy_(torch.maximum(torch.minimum(p, b), a))


class BoxAdagrad(torch.optim.Adagrad):
    """AdaGrad whose every step ends with the projection onto a per-coordinate box.

    Update, per coordinate i:  a_i ← a_i + g_i²,  θ_i ← clamp(θ_i − lr·g_i/(√a_i + eps), lo_i, hi_i).
    The box is set with :meth:`set_box` (the OFFO box θ_t ± κ·Δ_t of the current outer iteration);
    without one the solver is plain AdaGrad.
    """

    def __init__(self, params, lr: float = 1e-2, initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        super().__init__(params, lr=lr, initial_accumulator_value=initial_accumulator_value, eps=eps)
        self._lo: list[torch.Tensor] | None = None
        self._hi: list[torch.Tensor] | None = None

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def set_box(self, lo: list[torch.Tensor] | None, hi: list[torch.Tensor] | None) -> None:
        """Bounds per parameter tensor (same shapes, same order as the parameters); None removes them."""
        if (lo is None) != (hi is None):
            raise ValueError("give both bounds or neither")
        if lo is not None:
            params = self._params()
            if len(lo) != len(params) or len(hi) != len(params):
                raise ValueError(f"expected bounds for {len(params)} parameter tensors")
            if any(bool((a > b).any()) for a, b in zip(lo, hi, strict=True)):
                raise ValueError("box with lo > hi")
        self._lo, self._hi = lo, hi

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if self._lo is not None:
            project_box_(self._params(), self._lo, self._hi)
        return loss


def make_local_solver(spec: dict, params, key: str = "ddm.local_solver") -> torch.optim.Optimizer:
    """The torch optimizer named by ``spec`` ({"name": ..., "lr": ..., other keyword arguments}).

    Raises
    ------
    ConfigError
        Unknown name, missing or non-positive lr, or keyword arguments the solver does not take.
    """
    spec = dict(spec or {})
    name = spec.pop("name", None)
    if name not in SOLVERS:
        raise ConfigError(f"{key}.name: expected one of {list(SOLVERS)}, got {name!r}")
    lr = spec.pop("lr", None)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"{key}.lr: expected a positive number, got {lr!r}")
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adagrad": torch.optim.Adagrad,
        "adagrad_box": BoxAdagrad,
    }[name]
    try:
        return cls(params, lr=float(lr), **spec)
    except TypeError as exc:
        raise ConfigError(f"{key}: {name} does not take the options {sorted(spec)} ({exc})") from None
