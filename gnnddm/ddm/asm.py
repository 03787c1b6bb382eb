"""``asm``: additive Schwarz in data space with trust-region (APTS) or OFFO globalisation (docs/algorithms.md).

One outer iteration from θ_t, p subdomains, weights ω_k (``combine: sum`` ω_k = 1; ``average`` and
``span`` ω_k = n_k/n), W = Σ_k ω_k (p for ``sum``, 1 otherwise), local scales c_k = W/ω_k (p for ``sum``,
n/n_k otherwise):

1. g_t = Σ_k ∇f_k(θ_t), f(θ_t) = Σ_k f_k(θ_t)                                  [all-reduce, P + 1]
   (skipped when nothing needs g_t: no ``foc``, no OFFO, no ``span``, no ``global_pass``). With
   ``trial: fused`` this is the evaluation that decides the previous iteration's trial (below).
2. ``global_pass``: one global trust-region step d = −Δ_t g_t/‖g_t‖ (predicted decrease Δ_t‖g_t‖),
   tested with [∇f, f] at θ_t + d                                                [all-reduce, P + 1]
3. local model   h_k(θ) = c_k·f_k(θ) + ⟨g_t − c_k·∇f_k(θ_t), θ − θ_t⟩   (``foc``; else h_k = c_k·f_k)
   so that ∇h_k(θ_t) = g_t and Σ_k ω_k ∇²h_k = W·∇²f; m local-solver steps on h_k from θ_t, each
   projected onto
   - ``trust_region``: the ball ‖Λ(θ − θ_t)‖ ≤ Δ_t / W, Λ = I (``tr_norm: euclidean``) or the diagonal
     scaling of Adam / AdaGrad kept from the g_t of the outer iterations (``tr_norm: adam | adagrad``,
     :class:`~gnnddm.ddm.base.RegionScaling`; the projection is the nearest point in ‖Λ·‖),
   - ``offo``: the box |θ_i − θ_t,i| ≤ κ·Δ_t,i / W, Δ_t,i = |g_t,i| / w_t,i, w_t² = ς + Σ_{τ≤t} g_τ²,
   - ``none``: no constraint.
4. combination of the corrections s_k = θ_k − θ_t:
   - ``sum`` / ``average``: s_t = Σ_k ω_k s_k, predicted decrease Σ_k ω_k (h_k(θ_t) − h_k(θ_k))
                                                                               [all-reduce, P (+1) (+1)]
   - ``span``: all-gather of the s_k [p·P], then s_t = Σ_k γ_k s_k with γ from ``span_steps``
     evaluations of φ(γ) = f(θ_t + Sγ) and Sᵀ∇f (:func:`~gnnddm.ddm.solvers.span_minimize`, from
     γ = ω, within ‖Sγ‖ ≤ Δ_t)                                            [one all-reduce of p + 1 each]
     predicted decrease: f(θ_t) − f(θ_t + s_t) on the batch it was fitted on.
5. ``trust_region``: ρ = (f(θ_t) − f(θ_t + s_t)) / predicted; accept if ρ > η₁ (else θ_{t+1} = θ_t,
   Δ ← γ_dec·Δ); Δ ← γ_inc·Δ if ρ > η₂; Δ clamped into [radius_min, radius_max].
   - ``trial: separate``: f(θ_t + s_t) on this batch                            [all-reduce, 1]
     (``span``: already known, no collective)
   - ``trial: fused``: θ stays θ_t and (s_t, predicted) is pending; step 1 of the next iteration
     evaluates, on the next mini-batch, ∇f and f at θ_t + s_t and f at θ_t (forward only) in its one
     all-reduce [P + 2]. Accepted: θ_{t+1} = θ_t + s_t and that gradient is g_{t+1}; rejected: g at θ_t
     costs one more all-reduce [P + 1]. ρ is thus measured on a fresh mini-batch (an unbiased
     estimate of the decrease, not the batch the step was fitted on); the pending trial of the last
     iteration is never applied.
   ``offo`` and ``none`` always accept (OFFO evaluates no loss values).
6. ``global_steps`` n: n steps of the global optimizer with Σ_k ∇f_k               [n all-reduces, P + 1]

The division by W keeps the combined step inside the global region (‖Λ s_t‖ ≤ Δ_t, |s_t,i| ≤ κΔ_t,i);
``span`` measures ‖Λ Sγ‖ with the Gram matrix of the rows of S Λ, and the global pass's step is the
steepest descent of that norm, d = −Δ_t Λ⁻²g_t/‖Λ⁻¹g_t‖ with predicted decrease Δ_t‖Λ⁻¹g_t‖.

Coherence (``coherence``). ``local``: g_t = Σ_k ∇f_k(θ_t) and f = Σ_k f_k, the subdomain losses, which are
f and ∇f only when the overlap δ ≥ L (exact subdomains); with δ < L, ∇h_k(θ_t) = g_t is the truncated
problem's gradient. ``exact``: g_t = ∇f(θ_t) and every f in ρ are those of the whole problem, computed
by the exact pass of ``halo_sync`` (each rank the loss of its owned rows through one halo exchange per
layer, then the all-reduce; one process: the same on all parts), and the coherence terms use the
subdomains' own c_k·∇f_k(θ_t), so that ∇h_k(θ_t) = ∇f(θ_t) for any overlap: step 1 costs the exact
gradient plus one subdomain gradient per part, and each loss value of the test one exact forward pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from gnnddm.ddm.base import (
    Algorithm,
    RegionScaling,
    ScaledTrustRegionConfig,
    SolverConfig,
    TrustRegion,
    global_pass,
    offo_box,
)
from gnnddm.ddm.halo_sync import fine_path, require_stages
from gnnddm.ddm.solvers import Ball, Box, span_minimize
from gnnddm.schema.fields import Invalid, at_least, one_of

COMBINES = ("sum", "average", "span")
TRIALS = ("fused", "separate")
COHERENCES = ("local", "exact")


@dataclass
class SchwarzConfig(ScaledTrustRegionConfig):
    """The keys the Schwarz methods share (conf/ddm_shared/schwarz.yaml)."""

    local_steps: int = field(default=3, metadata=at_least(1))
    local_solver: SolverConfig = field(default_factory=SolverConfig)
    foc: bool = True
    coherence: str = field(default="local", metadata=one_of(*COHERENCES, noun="coherence"))
    trial: str = field(default="fused", metadata=one_of(*TRIALS, noun="trial"))
    global_pass: bool = False
    global_steps: int = field(default=0, metadata=at_least(0))

    def __post_init__(self):
        super().__post_init__()
        tr = self.globalization == "trust_region"
        if self.coherence == "exact" and not self.foc:
            raise Invalid("coherence", "exact computes the gradient of the first-order coherence term, which "
                                       "foc: false drops; set ddm.foc=true or ddm.coherence=local")
        if self.global_pass and not tr:
            raise Invalid("global_pass", f"needs globalization trust_region, got {self.globalization!r}")
        if self.global_steps and tr and self.trial == "fused":
            raise Invalid("global_steps", "global-optimizer steps would move θ away from the pending trial of "
                                          "trial: fused; set ddm.trial=separate")


@dataclass
class ASMConfig(SchwarzConfig):
    _target_: str = "gnnddm.ddm.asm.ASM"
    name: str = "asm"
    combine: str = field(default="average", metadata=one_of(*COMBINES, noun="combination"))
    span_steps: int = field(default=4, metadata=at_least(1))

    def __post_init__(self):
        super().__post_init__()
        if self.combine == "span" and self.globalization == "offo":
            raise Invalid("combine", "span evaluates the loss, which globalization offo never does; use "
                                     "trust_region or none")
        if self.combine == "span" and self.coherence == "exact":
            raise Invalid("coherence", "exact evaluates f on the exact data path, which the span solve's "
                                       "subdomain evaluations do not; use ddm.combine=average or sum")

class ASM(Algorithm):
    """Additive Schwarz (APTS in data space); see the module docstring for the update.

    Parameters
    ----------
    model, objective, comm, optimizer, config, **options
        See :class:`~gnnddm.ddm.base.Algorithm`; the keys of ``config`` (:class:`ASMConfig`) are:
    local_steps : int
        m >= 1 local-solver steps per subdomain and outer iteration.
    local_solver : callable or SolverConfig
        ``params -> torch.optim.Optimizer`` (e.g. ``functools.partial(torch.optim.Adam, lr=1e-3)``); one
        per subdomain. The constructor's ``local_solver`` argument takes the built factory; without it the
        factory is the config node's class with its ``lr`` (:meth:`~gnnddm.ddm.base.SolverConfig.factory`).
    foc : bool
        First-order coherence term in h_k.
    coherence : {"local", "exact"}
        g_t and f of the subdomain losses, or of the whole problem through the halo exchange (module
        docstring; ``exact`` needs ``foc`` and a model that exposes its layers).
    tr_norm : {"euclidean", "adam", "adagrad"}
        The norm of the trust-region ball (:class:`~gnnddm.ddm.base.RegionScaling`).
    combine : {"average", "sum", "span"}
    globalization : {"trust_region", "offo", "none"}
    eta1, eta2, gamma_dec, gamma_inc, radius0 : float
        Trust-region parameters (APTS defaults 0.25, 0.75, 0.9, 1.2, 0.1).
    radius_min, radius_max : float
        The radius is kept in [radius_min, radius_max] (0 <= radius_min <= radius0 <= radius_max).
    trial : {"separate", "fused"}
        Where the trust-region test evaluates f(θ_t + s_t): in an all-reduce of its own at the end of
        the iteration, or fused with the next iteration's gradient (conf/ddm sets ``fused``).
    global_pass : bool
        One global trust-region step with the global gradient per iteration (APTS's global pass).
    span_steps : int
        ``combine: span``: evaluations of f on the span of the corrections (>= 1).
    kappa, varsigma : float
        OFFO box scale κ and accumulator offset ς.
    global_steps : int
        Steps of the global optimizer after each combination (needs the ``optimizer`` group).
    """

    name = "asm"
    Config = ASMConfig
    uses_full_batch = False

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None, config: ASMConfig | None = None,
                 **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        c = self.config
        self.local_steps, self.foc, self.combine, self.globalization = c.local_steps, c.foc, c.combine, c.globalization
        self.local_solver = local_solver or c.local_solver.factory()
        self.tr = TrustRegion.of(c)
        self.trial, self.global_pass = c.trial, c.global_pass
        self.span_steps = c.span_steps if c.combine == "span" else None
        self.kappa, self.varsigma, self.global_steps = float(c.kappa), float(c.varsigma), c.global_steps
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
        self.scaling = RegionScaling(c.tr_norm, c.varsigma)  # Λ of the ball (tr_norm)
        self.coherence = c.coherence
        if self.coherence == "exact":  # g_t and f through the halo exchange of halo_sync (module docstring)
            require_stages(model, "ddm.coherence=exact")
            self.exact_path, self.exact_inputs = fine_path(objective, comm, self.timed)
            self.exact_work = self.exact_path.work(objective.num_nodes)
        self._box_half: torch.Tensor | None = None
        self.pending: tuple[torch.Tensor, float] | None = None  # trial: fused: (s_t, predicted_t)
        self.span_evaluations = 0  # combine: span: evaluations of the last span solve

    # ------------------------------------------------------------------ global gradient and loss
    def local_gradients(self, losses, keep: bool = False):
        """This rank's share of g_t and f before the all-reduce, and (``keep``) its parts' (f_k, ∇f_k).

        ``coherence: local``: Σ_k ∇f_k and Σ_k f_k over the rank's subdomains
        (:meth:`Algorithm.local_gradients <gnnddm.ddm.base.Algorithm.local_gradients>`). ``exact``: the
        exact pass, ∇ and value of the loss of the rank's owned rows through the halo exchange of
        ``halo_sync`` (summed over the ranks: ∇f(θ) and f(θ) of the whole problem, whatever the overlap),
        with each part's subdomain (f_k, ∇f_k) for the coherence terms when ``keep``.
        """
        if self.coherence == "local":
            return super().local_gradients(losses, keep)
        per_part = super().local_gradients(losses, keep=True)[2] if keep else {}
        self.model.zero_grad(set_to_none=True)
        f = self.exact_path.loss_backward(self.model, functools.partial(self.exact_inputs, losses))
        self.accounting.add_work(grad_evals=self.exact_work)
        g = self.flat_grad()
        return g, f.to(device=g.device, dtype=g.dtype), per_part

    def local_losses(self, losses) -> torch.Tensor:
        """This rank's share of f before the all-reduce: Σ_k f_k (``coherence: local``) or the loss of its
        owned rows on the exact pass (``exact``), forward only."""
        if self.coherence == "local":
            return super().local_losses(losses)
        theta = self.params[0]
        f = self.exact_path.loss(self.model, functools.partial(self.exact_inputs, losses))
        self.accounting.add_work(loss_evals=self.exact_work)
        return f.to(device=theta.device, dtype=theta.dtype)

    # ------------------------------------------------------------------ pieces
    @property
    def needs_gradient(self) -> bool:
        return (self.foc or self.globalization == "offo" or self.combine == "span" or self.global_pass
                or self.scaling.scaled)

    @property
    def fused(self) -> bool:
        return self.globalization == "trust_region" and self.trial == "fused"

    def _update_offo(self, g: torch.Tensor) -> None:
        """Accumulate g_t² and set the box half-widths κ·|g_t| / w_t (before division by W)."""
        self.accumulator, self._box_half = offo_box(self.accumulator, g, self.kappa, self.varsigma)

    def constraint(self, center: torch.Tensor, share: float) -> Ball | Box | None:
        """The feasible set of one correction around ``center``, scaled by ``share`` of the region."""
        if self.globalization == "trust_region":
            return self.scaling.ball(center, self.tr.radius * share)
        if self.globalization == "offo":
            half = self._box_half * share
            return Box(center - half, center + half)
        return None

    def subdomain_model(self, losses, k: int, anchor: torch.Tensor, g, per_part: dict):
        """h_k around ``anchor`` on the batch of ``losses`` and, with ``foc``, its known value and gradient
        there: (h_k, first).

        h_k(θ) = c_k·f_k(θ) + ⟨g − c_k·∇f_k(θ_t), θ − anchor⟩ with c_k = W/ω_k and (f_k(θ_t), ∇f_k(θ_t)) =
        ``per_part[k]``, so ∇h_k(θ_t) = g when ``anchor`` is θ_t; without ``foc`` h_k = c_k·f_k.
        """
        c = self.weight_sum / self.omega[k]
        if not self.foc:
            return self.local_model(self._local(losses, k), scale=c), None
        f_k, grad_k = per_part[k]
        h = self.local_model(self._local(losses, k), scale=c, corr=g - c * grad_k, anchor=anchor)
        return h, (f_k, g)

    def _local_corrections(self, losses, anchor: torch.Tensor, g, per_part: dict, constraint, predict: bool):
        """θ_k − anchor, h_k(anchor) − h_k(θ_k) (when ``predict``) and f_k(anchor) per part of this rank."""
        out = {}
        for k in self.parts:
            with self.timed(k):
                h, first = self.subdomain_model(losses, k, anchor, g, per_part)
                theta_k, f_start, pred_k = self.local_solve(
                    h, anchor, self.local_steps, self.solvers[f"part{k}"], constraint=constraint,
                    predict=predict, first=first,
                )
                out[k] = (theta_k - anchor, pred_k, f_start)
        self.set_flat(anchor)
        return out

    def subdomain_correction(self, losses, anchor: torch.Tensor, g, per_part: dict, f_anchor: float | None,
                             share: float = 1.0):
        """Local solves from ``anchor`` within ``share`` of the region on the batch of ``losses``, and their
        combination.

        Returns ``(s, predicted, f_anchor, f_end)``: the combined correction; its predicted decrease
        (trust region only, else None); Σ_k f_k(anchor) (given, or riding along in the all-reduce);
        f(anchor + s) when the combination already evaluated it (``span``), else None.
        """
        if self.combine == "span":
            return self.span_correction(losses, anchor, g, per_part, f_anchor, share)
        tr = self.globalization == "trust_region"
        need_f = f_anchor is None
        parts = self._local_corrections(losses, anchor, g, per_part, self.constraint(anchor, share / self.weight_sum),
                                        tr)
        s = torch.zeros_like(anchor)
        pred = torch.zeros(1, dtype=anchor.dtype, device=anchor.device)
        f_sum = torch.zeros(1, dtype=anchor.dtype, device=anchor.device)
        for k, (s_k, pred_k, f_k) in parts.items():
            s += self.omega[k] * s_k
            if tr:
                pred += self.omega[k] * pred_k
            f_sum += f_k
        self.comm.all_reduce_sum_([s] + ([pred] if tr else []) + ([f_sum] if need_f else []))
        return s, (float(pred) if tr else None), (float(f_sum) if need_f else f_anchor), None

    def span_correction(self, losses, anchor: torch.Tensor, g: torch.Tensor, per_part: dict, f_anchor: float,
                        share: float = 1.0):
        """``combine: span``: the best combination Σ_k γ_k s_k of the local corrections (see module doc).

        One all-gather of the p corrections, then one all-reduce of [Sᵀ∇f, f] (p + 1 numbers) per
        evaluation of φ(γ) = f(anchor + Sγ); every rank solves the p-dimensional problem alike.
        """
        tr = self.globalization == "trust_region"
        parts = self._local_corrections(losses, anchor, g, per_part, self.constraint(anchor, share), predict=False)
        mine = {k: parts[k][0] if k in parts else torch.zeros_like(anchor) for k in self.comm.parts_of_rank}
        gathered = self.comm.all_gather_parts(mine)
        order = sorted(self.omega)
        S = torch.stack([gathered[k].to(anchor) for k in order])

        def evaluate(gamma: torch.Tensor):
            self.set_flat(anchor + gamma.to(S.dtype) @ S)
            vec = torch.zeros(len(order) + 1, dtype=anchor.dtype, device=anchor.device)
            for k in self.parts:
                with self.timed(k):
                    f_k, g_k = self._loss_grad(self._local(losses, k))
                    vec[:-1] += S @ g_k
                    vec[-1] += f_k
            self.comm.all_reduce_sum_([vec])
            return float(vec[-1]), vec[:-1].double().cpu()

        with self.timed(None):
            SD = S if self.scaling.scale is None else S * self.scaling.scale  # ‖Sγ‖ measured as ‖Λ Sγ‖
            gram, grad0 = (SD @ SD.T).double().cpu(), (S @ g).double().cpu()
        omega = torch.tensor([self.omega[k] for k in order], dtype=torch.float64)
        gamma, phi, self.span_evaluations = span_minimize(gram, f_anchor, grad0, omega, evaluate, self.span_steps,
                                                          radius=self.tr.radius * share if tr else None)
        self.model.zero_grad(set_to_none=True)
        self.set_flat(anchor)
        s = gamma.to(S) @ S
        return s, (f_anchor - phi if tr else None), f_anchor, phi

    # ------------------------------------------------------------------ trust region
    def decide_pending(self, losses, stats: dict):
        """``trial: fused``: test the pending (s, predicted) of the previous iteration on this iteration's
        batch (that of ``losses``, not the one the step was fitted on).

        One all-reduce of [Σ∇f_k(θ + s), Σf_k(θ + s), Σf_k(θ)] (the gradient only when the iteration needs
        one); a rejection costs one more all-reduce [g, f] at θ. Returns (θ_t, g_t, f_t, per_part).
        """
        s, predicted = self.pending
        self.pending = None
        base = self.flat()
        trial = base + s
        grad = self.needs_gradient
        f_base = self.local_losses(losses)
        self.set_flat(trial)
        g, per_part = None, {}
        if grad:
            g, f_trial, per_part = self.local_gradients(losses, keep=self.foc)
        else:
            f_trial = self.local_losses(losses)
        f = torch.cat([f_trial, f_base])  # [f(θ + s), f(θ)]
        self.comm.all_reduce_sum_(([g] if grad else []) + [f])
        self.model.zero_grad(set_to_none=True)
        f_trial, f_base = float(f[0]), float(f[1])
        rho, accepted = self.tr.update(f_base - f_trial, predicted)
        stats.update(rho=rho, accepted=float(accepted), predicted=predicted, actual=f_base - f_trial)
        if accepted:
            return trial, g, f_trial, per_part
        self.set_flat(base)
        g, per_part = None, {}
        if grad:
            g, _, per_part = self.subdomain_gradients(losses, keep=self.foc)
        return base, g, f_base, per_part

    def global_step(self, losses, theta: torch.Tensor, g: torch.Tensor, f: float, per_part: dict, stats: dict):
        """APTS's global pass: θ + d, d = −Δ Λ⁻²g/‖Λ⁻¹g‖ (−Δ g/‖g‖ with the Euclidean norm), tested with
        ρ = (f(θ) − f(θ + d)) / (Δ‖Λ⁻¹g‖).

        One all-reduce [∇f, f] at θ + d, which is also the gradient of the next phase when accepted.
        """
        def evaluate():
            g1, f1, per_part1 = self.subdomain_gradients(losses, keep=self.foc)
            return f1, (g1, f1, per_part1)

        accepted = global_pass(self, theta, g, f, evaluate, stats)
        if accepted is None:
            return theta, g, f, per_part
        trial, (g1, f1, per_part1) = accepted
        return trial, g1, f1, per_part1

    def start(self, losses, stats: dict):
        """Steps 1-2 on the batch of ``losses``: decide a pending trial, g_t at θ_t when needed, the global pass.

        Returns (θ_t, g_t, f_t, per_part); g_t and f_t are None when nothing needed them.
        """
        if self.pending is not None:
            theta_t, g, f_t, per_part = self.decide_pending(losses, stats)
        else:
            theta_t, g, f_t, per_part = self.flat(), None, None, {}
            if self.needs_gradient:
                g, f_t, per_part = self.subdomain_gradients(losses, keep=self.foc)
        if self.globalization == "offo":
            self._update_offo(g)
        self.scaling.update(g)
        if self.global_pass:
            theta_t, g, f_t, per_part = self.global_step(losses, theta_t, g, f_t, per_part, stats)
        return theta_t, g, f_t, per_part

    def finish(self, losses, theta_t: torch.Tensor, s: torch.Tensor, predicted, f_t, f_new=None,
               stats: dict | None = None) -> dict[str, float]:
        """Step 5-6 on the batch of ``losses``: the trust-region test (or the pending trial, which the next
        step tests on its own batch), and the optional global steps.

        ``f_new`` = f(θ_t + s) when already known on this batch (no collective then).
        """
        stats = {} if stats is None else stats
        stats["step_norm"] = float(torch.linalg.vector_norm(s))
        if self.scaling.scaled:
            stats["step_tr_norm"] = self.scaling.norm_of(s)
        if self.combine == "span":
            stats["span_evaluations"] = float(self.span_evaluations)
        if f_t is not None:
            stats["loss"] = f_t
        if self.fused:
            self.pending = (s, predicted)
            self.set_flat(theta_t)
            stats["tr_radius"] = self.tr.radius
        elif self.globalization == "trust_region":
            if f_new is None:
                self.set_flat(theta_t + s)
                f_new = self.subdomain_losses(losses)
            rho, accepted = self.tr.update(f_t - f_new, predicted)
            self.set_flat(theta_t + s if accepted else theta_t)
            stats.update(rho=rho, accepted=float(accepted), tr_radius=self.tr.radius, predicted=predicted,
                         actual=f_t - f_new)
        else:
            self.set_flat(theta_t + s)
            stats["accepted"] = 1.0
            if self.globalization == "offo":
                stats["box_width"] = float(self._box_half.mean())
        for _ in range(self.global_steps):
            g, _, _ = self.subdomain_gradients(losses)
            self.optimizer_step(g)
        return stats

    # ------------------------------------------------------------------ the outer iteration
    def _step(self, losses) -> dict[str, float]:
        stats: dict[str, float] = {}
        theta_t, g, f_t, per_part = self.start(losses, stats)
        s, predicted, f_t, f_new = self.subdomain_correction(losses, theta_t, g, per_part, f_t)
        return self.finish(losses, theta_t, s, predicted, f_t, f_new, stats)

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict:
        pending = None if self.pending is None else {"step": self.pending[0], "predicted": self.pending[1]}
        return {"radius": self.tr.radius, "accumulator": self.accumulator, "pending": pending,
                "scaling": self.scaling.state_dict()}

    def _load_extra_state(self, state: dict) -> None:
        self.tr.radius = float(state["radius"])
        self.accumulator = state["accumulator"]
        self.scaling.load_state_dict(state.get("scaling"))  # absent from checkpoints of older runs
        pending = state.get("pending")
        self.pending = None if pending is None else (pending["step"], float(pending["predicted"]))
