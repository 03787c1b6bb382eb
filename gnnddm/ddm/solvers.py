"""Local solvers of the Schwarz methods and the feasible sets they are kept in (docs/algorithms.md).

A local solver is a torch optimizer run for m steps on a subdomain's local model, given as a factory
``params -> Optimizer``: in a config, a node with ``_target_`` and ``_partial_: true`` (as the
``optimizer`` group), e.g. ``ddm.local_solver._target_``:

- ``torch.optim.SGD``: θ ← θ − lr·∇h
- ``torch.optim.Adam``
- ``torch.optim.Adagrad``: θ_i ← θ_i − lr·∇h_i / (√(a_i) + eps), a_i ← a_i + ∇h_i² (no momentum)
- ``gnnddm.ddm.solvers.BoxAdagrad``: AdaGrad for a per-coordinate box with the accumulator of ADAGB2
  (squared projected steps, not squared gradients).

Feasible sets: :class:`Ball` (trust region ‖Λ(θ − c)‖₂ ≤ r, Λ a positive diagonal scaling or the identity)
and :class:`Box` (lo ≤ θ ≤ hi), both on the flat parameter vector; ``project`` maps any point to the nearest
feasible one (in the ball's norm ‖Λ·‖; Euclidean for the box).

:func:`span_minimize` is the small solve of ``combine: span``: the best combination of p corrections, a
trust-region quasi-Newton method in the p coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gnnddm.errors import ConfigError


def scaled_norm(d: torch.Tensor, scale: torch.Tensor | None) -> float:
    """‖Λ d‖₂ with Λ = diag(``scale``) (‖d‖₂ for None)."""
    return float(torch.linalg.vector_norm(d if scale is None else scale * d))


@dataclass(frozen=True)
class Ball:
    """The trust region {θ : ‖Λ(θ − center)‖₂ ≤ radius} (flat vectors), Λ = diag(``scale``); without
    ``scale`` (None) Λ is the identity, the Euclidean ball.

    A scaled ball is the Euclidean ball of radius ``radius`` in the coordinates Λθ: its norm, its projection
    and its steepest-descent step are those of the Euclidean ball there (:meth:`norm`, :meth:`project`,
    :meth:`steepest`), so that a step, its predicted decrease and the radius update all speak of ‖Λ·‖.
    """

    center: torch.Tensor
    radius: float
    scale: torch.Tensor | None = None

    def norm(self, d: torch.Tensor) -> float:
        """‖Λ d‖₂ of a step d."""
        return scaled_norm(d, self.scale)

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """θ if feasible, else center + radius·(θ − center)/‖Λ(θ − center)‖: the nearest feasible point in
        the ball's own norm, argmin_{x in the ball} ‖Λ(x − θ)‖ (Euclidean when Λ = I)."""
        d = theta - self.center
        norm = self.norm(d)
        if norm <= self.radius:
            return theta
        return self.center + d * (self.radius / norm)

    def steepest(self, g: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The step to the boundary along steepest descent in the ball's norm, and its predicted decrease:
        d = −radius·Λ⁻²g / ‖Λ⁻¹g‖, −⟨g, d⟩ = radius·‖Λ⁻¹g‖ (d minimises ⟨g, d⟩ over ‖Λd‖ ≤ radius;
        −radius·g/‖g‖ when Λ = I). A zero gradient gives (0, 0)."""
        gd = g if self.scale is None else g / self.scale
        norm = float(torch.linalg.vector_norm(gd))
        if norm == 0:
            return torch.zeros_like(g), 0.0
        return -(self.radius / norm) * (gd if self.scale is None else gd / self.scale), self.radius * norm


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
    """AdaGrad for a per-coordinate box, with the accumulator of ADAGB2.

    Update, per coordinate i, with gradient g, box [lo, hi] and learning rate α:

        d_i = clamp(θ_i − g_i, lo_i, hi_i) − θ_i           (projected-gradient step)
        a_i ← a_i + d_i²                                    (a = w², a₀ = ``initial_accumulator_value``)
        θ_i ← clamp(θ_i + α·d_i / (√a_i + eps), lo_i, hi_i)

    This is the first-order step of ADAGB2 (Bellavia, Gratton, Morini, Toint, "Fast stochastic
    second-order Adagrad for nonconvex bound-constrained optimization", arXiv:2505.06374; no Hessian
    term, κ_s = 1): the accumulator w_i² = ς + Σ d_i² sums the squared *projected* steps, so a
    coordinate held at its bound (d_i = 0) does not use up its step size, and |θ_i⁺ − θ_i| ≤ α·|d_i|/w_i
    ≤ α. With α = 1 it is ADAGB2's step θ + d/w (clipped to the box). Without a box d = −g and the
    update is exactly torch.optim.Adagrad's (no decay). The box is set with :meth:`set_box` (the OFFO
    box θ_t ± κ·Δ_t of the current outer iteration); state (``sum`` = a, ``step``) is Adagrad's.
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
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                lo = hi = None
                if self._lo is not None:
                    lo, hi = self._lo[i], self._hi[i]
                i += 1
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                d = -p.grad if lo is None else torch.maximum(torch.minimum(p - p.grad, hi), lo) - p
                state["sum"].addcmul_(d, d, value=1)
                p.addcdiv_(d, state["sum"].sqrt().add_(group["eps"]), value=group["lr"])
                if lo is not None:
                    p.copy_(torch.maximum(torch.minimum(p, hi), lo))
        return loss


# ---------------------------------------------------------------------------------------- span solve
def _ball_step(g: torch.Tensor, H: torch.Tensor, radius: float) -> torch.Tensor:
    """argmin_d g·d + ½ dᵀHd subject to ‖d‖ ≤ radius, for a small symmetric positive definite H."""
    mu, Q = torch.linalg.eigh(H)
    gq = Q.T @ g

    def step(lam: float) -> torch.Tensor:
        return -(Q @ (gq / (mu + lam)))

    d = step(0.0)
    if float(torch.linalg.vector_norm(d)) <= radius:
        return d
    lo, hi = 0.0, float(torch.linalg.vector_norm(g)) / radius  # ‖step(hi)‖ ≤ ‖g‖ / hi = radius
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(torch.linalg.vector_norm(step(mid))) > radius:
            lo = mid
        else:
            hi = mid
    return step(hi)


def _bfgs_update(H: torch.Tensor, d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BFGS update of H with the pair (d, y); skipped unless the curvature dᵀy is clearly positive."""
    dy, Hd = float(d @ y), H @ d
    dHd = float(d @ Hd)
    if dy <= 1e-10 * float(torch.linalg.vector_norm(d) * torch.linalg.vector_norm(y)) or dHd <= 0:
        return H
    return H - torch.outer(Hd, Hd) / dHd + torch.outer(y, y) / dy


def span_minimize(gram: torch.Tensor, phi0: float, grad0: torch.Tensor, start: torch.Tensor, evaluate,
                  evaluations: int, radius: float | None = None) -> tuple[torch.Tensor, float, int]:
    """Approximately minimise φ(γ) = f(θ + Sγ) over the span of the rows of S [p, P].

    Works in p dimensions only: ``gram`` = S Sᵀ, φ(0) = ``phi0`` and ∇φ(0) = S∇f(θ) = ``grad0`` are known;
    ``evaluate(γ) -> (φ(γ), ∇φ(γ) = S∇f(θ + Sγ))`` costs one evaluation (the caller's collective).
    Coordinates z with γ = T z and ‖Sγ‖ = ‖z‖ (T from the eigen-decomposition of the Gram matrix; linearly
    dependent corrections are merged) make the region a ball. The first evaluation is at ``start`` (the
    ``average`` combination); a quadratic model, initialised with the curvature of the secant between
    γ = 0 and ``start`` and updated by BFGS, gives each further trial point inside an inner trust region
    (radius ‖start‖ at first; ×2 when ratio > 0.75 at its boundary, ×¼ of the step when < 0.25); with
    ``radius`` the model is minimised over ‖Sγ‖ ≤ ``radius`` and the step then shortened to the inner
    radius. Stops early when the model predicts no decrease.

    Returns
    -------
    gamma : Tensor [p], float64
        The best evaluated point (γ = 0 if no evaluation decreased φ below ``phi0``).
    phi : float
        φ(gamma).
    used : int
        Evaluations made (<= ``evaluations``).
    """
    gram = gram.double()
    lam, U = torch.linalg.eigh(0.5 * (gram + gram.T))
    if float(lam.max()) <= 0:  # every correction is zero: nothing to combine
        return torch.zeros_like(start, dtype=torch.float64), phi0, 0
    keep = lam > 1e-10 * float(lam.max())
    T = U[:, keep] / lam[keep].sqrt()          # γ = T z
    Tinv = (U[:, keep] * lam[keep].sqrt()).T   # z = Tinv γ (the component that moves θ)
    gamma = start.double()
    z = Tinv @ gamma
    if radius is not None and float(torch.linalg.vector_norm(z)) > radius:
        scale = radius / float(torch.linalg.vector_norm(z))
        gamma, z = gamma * scale, z * scale
    best = (torch.zeros_like(gamma), torch.zeros_like(z), float(phi0), T.T @ grad0.double())
    if evaluations < 1 or not float(z @ z) > 0:  # nothing to evaluate, or a start that does not move θ
        return best[0], best[2], 0
    phi, dphi = evaluate(gamma)
    point = (gamma, z, float(phi), T.T @ dphi.double())
    # initial curvature: along the secant from 0 to z, else from the quadratic through φ(0), φ'(0), φ(z)
    y, zz = point[3] - best[3], float(z @ z)
    curv = float(z @ y) / zz
    if curv <= 0:
        curv = 2.0 * (point[2] - best[2] - float(best[3] @ z)) / zz
    used, inner = 1, zz**0.5
    if point[2] < best[2]:
        best = point
    if curv <= 0:  # no positive curvature seen: a gradient step to the length of the first step
        curv = max(float(torch.linalg.vector_norm(best[3])) / inner, 1e-300)
    H = _bfgs_update(curv * torch.eye(len(z), dtype=torch.float64), z, y)
    while used < evaluations:
        if radius is None:
            d = _ball_step(best[3], H, inner)
        else:  # the model's minimiser in ‖z‖ ≤ radius, then at most ``inner`` away from the best point
            d = _ball_step(best[3] - H @ best[1], H, radius) - best[1]
            norm_d = float(torch.linalg.vector_norm(d))
            if norm_d > inner:  # the model is convex: still a descent step
                d = d * (inner / norm_d)
        z_new = best[1] + d
        predicted = -(float(best[3] @ d) + 0.5 * float(d @ H @ d))
        if not predicted > 1e-14 * (abs(best[2]) + 1e-300):
            break
        gamma_new = T @ z_new
        phi, dphi = evaluate(gamma_new)
        used += 1
        point = (gamma_new, z_new, float(phi), T.T @ dphi.double())
        H = _bfgs_update(H, d, point[3] - best[3])
        ratio, norm_d = (best[2] - point[2]) / predicted, float(torch.linalg.vector_norm(d))
        if ratio < 0.25:
            inner = 0.25 * norm_d
        elif ratio > 0.75 and norm_d >= 0.9 * inner:
            inner *= 2.0
        if point[2] < best[2]:
            best = point
    return best[0], best[2], used


def make_local_solver(factory, params, key: str = "ddm.local_solver") -> torch.optim.Optimizer:
    """``factory(params)``: a local solver from its factory, e.g. ``functools.partial(torch.optim.Adam,
    lr=1e-3)`` (what the config's ``_target_`` / ``_partial_: true`` node instantiates to).

    Raises
    ------
    ConfigError
        ``factory`` is not callable, has no positive ``lr``, or passes options the solver does not take.
    """
    if not callable(factory):
        raise ConfigError(f"{key}: expected a solver factory (a _target_ with _partial_: true, e.g. "
                          f"torch.optim.Adam), got {factory!r}")
    lr = getattr(factory, "keywords", {}).get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"{key}.lr: expected a positive number, got {lr!r}")
    try:
        return factory(params)
    except TypeError as exc:
        raise ConfigError(f"{key}: {getattr(factory, 'func', factory)!r} does not take these options ({exc})") from None
