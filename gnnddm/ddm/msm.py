"""``msm``: multiplicative Schwarz, subdomains in sequence (docs/algorithms.md).

One outer iteration from θ_t. With ``foc``, g_t = Σ_k ∇f_k(θ_t) first (one all-reduce of P + 1). The
subdomains are visited in groups G_1, G_2, ... (one subdomain per group, in part order; with ``colored``
the colour classes of a greedy colouring of the subdomain adjacency graph, so that parts solved together
share no edge). Starting from θ^(0) = θ_t, group j solves from θ^(j−1):

    θ_k = m local-solver steps on h_k(θ) = p·f_k(θ) + ⟨g_t − p·∇f_k(θ_t), θ − θ^(j−1)⟩  (k ∈ G_j)
    θ^(j) = θ^(j−1) + Σ_{k ∈ G_j} (θ_k − θ^(j−1))                                      [all-reduce, P (+1)]

and θ_{t+1} = θ^(last): the corrections of a sweep add up (the ``sum`` combination, local scale p).
The coherence vector g_t − p·∇f_k(θ_t) is computed once at θ_t (the linear term's gradient does not
depend on where it is anchored), so the first-order term costs no extra communication. The owner of
group j's parts sends θ^(j) to everyone: one collective per group, counted as an all-reduce of the
correction (P numbers, plus the predicted decrease with a trust region). With a trust region each local
step stays within ‖θ − θ^(j−1)‖ ≤ Δ_t / p and the whole sweep is tested as in ``asm`` (ρ = actual /
Σ_k predicted_k; ``trial: separate``: one more all-reduce of f(θ_t + s_t), and without ``foc`` f(θ_t)
costs one forward per subdomain and an all-reduce of 1 number; ``trial: fused``: the test rides with
the next iteration's first all-reduce, as in ``asm``; radius kept in [radius_min, radius_max];
``global_pass`` as in ``asm``). In the modelled time the groups run one after another
(Σ_j max_{k ∈ G_j} local_time_k): this is the reference for convergence, not for speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from gnnddm.ddm.asm import ASM, SchwarzConfig
from gnnddm.schema.fields import redefault


@dataclass
class MSMConfig(SchwarzConfig):
    _target_: str = "gnnddm.ddm.msm.MSM"
    name: str = "msm"
    colored: bool = False
    globalization: str = redefault(SchwarzConfig, "globalization", "none")
    #: not a key: the sequential corrections add up (ASM's ``combine`` is ``sum`` here)
    combine: ClassVar[str] = "sum"

class MSM(ASM):
    """Multiplicative Schwarz; see the module docstring for the update.

    Parameters
    ----------
    model, objective, comm, optimizer, local_solver, config, **options
        As for :class:`~gnnddm.ddm.asm.ASM`; the keys of ``config`` (:class:`MSMConfig`) are:
    local_steps, local_solver, foc, coherence, globalization, eta1, eta2, gamma_dec, gamma_inc, radius0,
    radius_min, radius_max, tr_norm, trial, global_pass, kappa, varsigma, global_steps
        As for :class:`~gnnddm.ddm.asm.ASM` (the sequential corrections add up: ``combine`` is ``sum``).
        Default globalisation: ``none``.
    colored : bool
        Solve the parts of one colour together (additively) instead of one part after another.
    """

    name = "msm"
    Config = MSMConfig

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None, config: MSMConfig | None = None,
                 **options):
        super().__init__(model, objective, comm, optimizer, local_solver=local_solver, config=config, **options)
        self.colored = self.config.colored
        active = sorted(self.omega)
        if self.colored:
            self.groups = objective.colour_classes(active)
        else:
            self.groups = [[k] for k in active]

    def _step(self, losses) -> dict[str, float]:
        stats: dict[str, float] = {}
        tr = self.globalization == "trust_region"
        theta_t, g, f_t, per_part = self.start(losses, stats)
        if f_t is None and tr and not self.fused:
            f_t = self.subdomain_losses(losses)
        current, predicted = theta_t.clone(), 0.0
        for j, group in enumerate(self.groups):
            constraint = self.constraint(current, 1.0 / self.weight_sum)
            delta = torch.zeros_like(theta_t)
            pred = torch.zeros(1, dtype=theta_t.dtype, device=theta_t.device)
            for k in group:
                if k not in self.parts:
                    continue
                with self.timed(k):
                    h, first = self.subdomain_model(losses, k, current, g, per_part)
                    theta_k, _, pred_k = self.local_solve(
                        h, current, self.local_steps, self.solvers[f"part{k}"], constraint=constraint,
                        predict=tr, first=first if j == 0 else None,  # ∇h_k(θ_t) = g_t holds at θ_t only
                    )
                    delta += theta_k - current
                    if tr:
                        pred += pred_k
            self.comm.all_reduce_sum_([delta] + ([pred] if tr else []))
            current = current + delta
            predicted += float(pred)
        self.set_flat(theta_t)
        stats = self.finish(losses, theta_t, current - theta_t, predicted if tr else None, f_t, stats=stats)
        stats["groups"] = float(len(self.groups))
        return stats
