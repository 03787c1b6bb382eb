"""``asm``: additive Schwarz in data space with trust-region (APTS) or OFFO globalisation (DESIGN.md §4).

One outer iteration from θ_t, p subdomains, weights ω_k (``combine: sum`` ω_k = 1, ``average``
ω_k = n_k/n), W = Σ_k ω_k:

1. g_t = Σ_k ∇f_k(θ_t), f(θ_t) = Σ_k f_k(θ_t)                                  [all-reduce, P + 1]
   (skipped without ``foc`` and without OFFO: nothing needs g_t)
2. local model   h_k(θ) = p·f_k(θ) + ⟨g_t − p·∇f_k(θ_t), θ − θ_t⟩   (``foc``; else h_k = p·f_k)
   so that ∇h_k(θ_t) = g_t; m local-solver steps on h_k from θ_t, each projected onto
   - ``trust_region``: the ball ‖θ − θ_t‖ ≤ Δ_t / W   (W = p for ``sum``, as in DESIGN.md: Δ_t/p)
   - ``offo``: the box |θ_i − θ_t,i| ≤ κ·Δ_t,i / W, Δ_t,i = |g_t,i| / w_t,i, w_t² = ς + Σ_{τ≤t} g_τ²
   - ``none``: no constraint
3. s_t = Σ_k ω_k (θ_k − θ_t), predicted decrease Σ_k ω_k (h_k(θ_t) − h_k(θ_k))  [all-reduce, P (+1) (+1)]
4. ``trust_region``: f(θ_t + s_t) = Σ_k f_k(θ_t + s_t)                          [all-reduce, 1]
   ρ = (f(θ_t) − f(θ_t + s_t)) / predicted; accept if ρ > η₁ (else θ_{t+1} = θ_t, Δ ← γ_dec·Δ);
   Δ ← γ_inc·Δ if ρ > η₂. ``offo`` and ``none`` always accept (OFFO evaluates no loss values).
5. ``global_steps`` n: n steps of the global optimizer with Σ_k ∇f_k               [n all-reduces, P + 1]

The division by W keeps the combined step inside the global region (‖s_t‖ ≤ Δ_t, |s_t,i| ≤ κΔ_t,i).
The loss values f_k used in ρ are the subdomain losses, exact when the overlap δ ≥ L.
"""

from __future__ import annotations

import torch

from gnnddm.ddm.base import Algorithm, TrustRegion, check_bool, check_choice, check_float, check_int
from gnnddm.ddm.solvers import Ball, Box

GLOBALIZATIONS = ("trust_region", "offo", "none")


class ASM(Algorithm):
    """Additive Schwarz (APTS in data space); see the module docstring for the update.

    Parameters
    ----------
    local_steps : int
        m >= 1 local-solver steps per subdomain and outer iteration.
    local_solver : dict
        ``{"name": sgd | adam | adagrad | adagrad_box, "lr": ..., ...}``; one per subdomain.
    foc : bool
        First-order coherence term in h_k.
    combine : {"sum", "average"}
    globalization : {"trust_region", "offo", "none"}
    eta1, eta2, gamma_dec, gamma_inc, radius0 : float
        Trust-region parameters (APTS defaults 0.25, 0.75, 0.9, 1.2, 0.1).
    kappa, varsigma : float
        OFFO box scale κ and accumulator offset ς.
    global_steps : int
        Steps of the global optimizer after each combination (needs the ``optimizer`` group).
    """

    name = "asm"
    uses_full_batch = False

    def __init__(self, model, objective, comm, accounting, optimizer=None, local_steps: int = 3,
                 local_solver: dict | None = None, foc: bool = True, combine: str = "sum",
                 globalization: str = "trust_region", eta1: float = 0.25, eta2: float = 0.75,
                 gamma_dec: float = 0.9, gamma_inc: float = 1.2, radius0: float = 0.1, kappa: float = 1.0,
                 varsigma: float = 1e-2, global_steps: int = 0):
        super().__init__(model, objective, comm, accounting, optimizer)
        self.local_steps = check_int("local_steps", local_steps, 1)
        self.local_solver = dict(local_solver or {"name": "adam", "lr": 1e-3})
        self.foc = check_bool("foc", foc)
        self.combine = check_choice("combine", combine, ("sum", "average"))
        self.globalization = check_choice("globalization", globalization, GLOBALIZATIONS)
        self.tr = TrustRegion(radius0, eta1, eta2, gamma_dec, gamma_inc)
        self.kappa = check_float("kappa", kappa)
        self.varsigma = check_float("varsigma", varsigma)
        self.global_steps = check_int("global_steps", global_steps, 0)
        if self.global_steps:
            self._global_optimizer()
        for k in self.parts:
            self._make_solver(f"part{k}", self.local_solver)
        self.omega = {
            k: 1.0 if self.combine == "sum" else objective.weight(k)
            for k in range(comm.num_parts)
            if objective.num_owned[k] > 0
        }
        self.weight_sum = sum(self.omega.values())
        self.accumulator: torch.Tensor | None = None  # OFFO: ς + Σ g², per coordinate
        self._box_half: torch.Tensor | None = None

    # ------------------------------------------------------------------ pieces
    @property
    def needs_gradient(self) -> bool:
        return self.foc or self.globalization == "offo"

    def _update_offo(self, g: torch.Tensor) -> None:
        """Accumulate g_t² and set the box half-widths κ·|g_t| / w_t (before division by W)."""
        if self.accumulator is None:
            self.accumulator = torch.full_like(g, self.varsigma)
        self.accumulator += g * g
        self._box_half = self.kappa * g.abs() / torch.sqrt(self.accumulator)

    def constraint(self, center: torch.Tensor, share: float) -> Ball | Box | None:
        """The feasible set of one correction around ``center``, scaled by ``share`` of the region."""
        if self.globalization == "trust_region":
            return Ball(center, self.tr.radius * share)
        if self.globalization == "offo":
            half = self._box_half * share
            return Box(center - half, center + half)
        return None

    def subdomain_model(self, k: int, anchor: torch.Tensor, g, per_part: dict):
        """h_k around ``anchor`` and, with ``foc``, its known value and gradient there: (h_k, first).

        h_k(θ) = p·f_k(θ) + ⟨g − p·∇f_k(θ_t), θ − anchor⟩ with (f_k(θ_t), ∇f_k(θ_t)) = ``per_part[k]``,
        so ∇h_k(θ_t) = g when ``anchor`` is θ_t; without ``foc`` h_k = p·f_k.
        """
        p = float(self.num_parts)
        if not self.foc:
            return self.local_model(self._local(k), scale=p), None
        f_k, grad_k = per_part[k]
        h = self.local_model(self._local(k), scale=p, corr=g - p * grad_k, anchor=anchor)
        return h, (f_k, g)

    def subdomain_correction(self, anchor: torch.Tensor, g, per_part: dict, need_f: bool):
        """Local solves from ``anchor`` and their combination (one all-reduce).

        Returns ``(s, predicted, f_anchor)``: s = Σ_k ω_k (θ_k − anchor); predicted =
        Σ_k ω_k (h_k(anchor) − h_k(θ_k)) with trust region, else None; f_anchor = Σ_k f_k(anchor) when
        ``need_f``, else None.
        """
        tr = self.globalization == "trust_region"
        constraint = self.constraint(anchor, 1.0 / self.weight_sum)
        s = torch.zeros_like(anchor)
        pred = torch.zeros(1, dtype=anchor.dtype, device=anchor.device)
        f_anchor = torch.zeros(1, dtype=anchor.dtype, device=anchor.device)
        for k in self.parts:
            with self.timed(k):
                h, first = self.subdomain_model(k, anchor, g, per_part)
                theta_k, f_start, pred_k = self.local_solve(
                    h, anchor, self.local_steps, self.solvers[f"part{k}"], constraint=constraint, predict=tr,
                    first=first,
                )
                s += self.omega[k] * (theta_k - anchor)
                if tr:
                    pred += self.omega[k] * pred_k
                f_anchor += f_start
        self.comm.all_reduce_sum_([s] + ([pred] if tr else []) + ([f_anchor] if need_f else []))
        self.set_flat(anchor)
        return s, (float(pred) if tr else None), (float(f_anchor) if need_f else None)

    def finish(self, theta_t: torch.Tensor, s: torch.Tensor, predicted, f_t) -> dict[str, float]:
        """Globalisation (accept / reject, radius update) and the optional global steps."""
        stats = {"step_norm": float(torch.linalg.vector_norm(s))}
        if f_t is not None:
            stats["loss"] = f_t
        if self.globalization == "trust_region":
            self.set_flat(theta_t + s)
            f_new = self.subdomain_losses()
            rho, accepted = self.tr.update(f_t - f_new, predicted)
            if not accepted:
                self.set_flat(theta_t)
            stats.update(rho=rho, accepted=float(accepted), tr_radius=self.tr.radius, predicted=predicted,
                         actual=f_t - f_new)
        else:
            self.set_flat(theta_t + s)
            stats["accepted"] = 1.0
            if self.globalization == "offo":
                stats["box_width"] = float(self._box_half.mean())
        for _ in range(self.global_steps):
            g, _, _ = self.subdomain_gradients()
            self.optimizer_step(g)
        return stats

    # ------------------------------------------------------------------ the outer iteration
    def _step(self) -> dict[str, float]:
        theta_t = self.flat()
        g, f_t, per_part = None, None, {}
        if self.needs_gradient:
            g, f_t, per_part = self.subdomain_gradients(keep=self.foc)
            if self.globalization == "offo":
                self._update_offo(g)
        s, predicted, f_sub = self.subdomain_correction(theta_t, g, per_part, need_f=f_t is None)
        return self.finish(theta_t, s, predicted, f_t if f_t is not None else f_sub)

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict:
        return {"radius": self.tr.radius, "accumulator": self.accumulator}

    def _load_extra_state(self, state: dict) -> None:
        self.tr.radius = float(state["radius"])
        self.accumulator = state["accumulator"]
