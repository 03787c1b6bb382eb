"""``local_avg``: local SGD / FedAvg on subdomains (LLCG without correction when δ = 0).

Each subdomain k runs m steps of the local solver from θ_t on its locally normalised loss
f_k / ω_k, ω_k = n_k / n (n_k owned nodes), and the results are averaged:

    θ_{t+1} = Σ_k ω_k θ_k

The 1/ω_k scaling makes the local loss the mean over the subdomain's own data, so that with m = 1 and
SGD one outer iteration is exactly one global SGD step (Σ_k ω_k ∇(f_k/ω_k) = Σ_k ∇f_k); it does not
change Adam or AdaGrad iterates beyond their eps. Communication: 1 all-reduce of [Σ ω_k θ_k, f(θ_t)].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gnnddm.ddm.base import Algorithm, AlgorithmConfig, SolverConfig
from gnnddm.schema.fields import at_least


@dataclass
class LocalAvgConfig(AlgorithmConfig):
    _target_: str = "gnnddm.ddm.local_avg.LocalAvg"
    name: str = "local_avg"
    local_steps: int = field(default=3, metadata=at_least(1))
    local_solver: SolverConfig = field(default_factory=SolverConfig)

class LocalAvg(Algorithm):
    """m local steps per subdomain from θ_t, then the owned-node-weighted parameter average.

    Parameters
    ----------
    model, objective, comm, optimizer, config, **options
        See :class:`~gnnddm.ddm.base.Algorithm`; the keys of ``config`` (:class:`LocalAvgConfig`) are:
    local_steps : int
        m >= 1.
    local_solver : callable or SolverConfig
        ``params -> torch.optim.Optimizer``; one solver (and its state) per subdomain, kept across outer
        iterations (the argument: the built factory; without it, the config node's class with its ``lr``).
    """

    name = "local_avg"
    Config = LocalAvgConfig
    uses_full_batch = False

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None,
                 config: LocalAvgConfig | None = None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        self.local_steps = self.config.local_steps
        factory = local_solver or self.config.local_solver.factory()
        for k in self.parts:
            self._make_solver(f"part{k}", factory)

    def _average(self, losses, theta_t: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Σ_k ω_k θ_k and f(θ_t) on the batch of ``losses``, after the local solves and one all-reduce; θ is
        left at θ_t."""
        avg = torch.zeros_like(theta_t)
        f = torch.zeros(1, dtype=theta_t.dtype, device=theta_t.device)
        for k in self.parts:
            omega = self.objective.weight(k)
            with self.timed(k):
                h = self.local_model(self._local(losses, k), scale=1.0 / omega)
                theta_k, f_k, _ = self.local_solve(h, theta_t, self.local_steps, self.solvers[f"part{k}"])
                avg += omega * theta_k
                f += f_k
        self.comm.all_reduce_sum_([avg, f])
        return avg, float(f)

    def _step(self, losses) -> dict[str, float]:
        theta_t = self.flat()
        avg, f = self._average(losses, theta_t)
        self.set_flat(avg)
        return {"loss": f, "step_norm": float(torch.linalg.vector_norm(avg - theta_t))}
