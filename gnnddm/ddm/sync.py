"""``sync``: synchronous partition-parallel training (DistDGL / BNS-GCN style).

    g_t = Σ_k ∇f_k(θ_t)          (each rank its subdomains, then one all-reduce of [g_t, f(θ_t)])
    θ_{t+1} = optimizer_step(θ_t, g_t)

With overlap δ ≥ L, g_t = ∇f(θ_t), so the trajectory is that of ``global`` up to round-off.
Communication per iteration: 1 all-reduce of P + 1 numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gnnddm.ddm.base import Algorithm, AlgorithmConfig


@dataclass
class SyncConfig(AlgorithmConfig):
    _target_: str = "gnnddm.ddm.sync.Sync"
    name: str = "sync"

class Sync(Algorithm):
    """Sum of exact subdomain gradients, then one step of the global optimizer."""

    name = "sync"
    Config = SyncConfig
    uses_full_batch = False

    def __init__(self, model, objective, comm, optimizer=None, *, config=None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        self._global_optimizer()

    def _step(self, losses) -> dict[str, float]:
        g, f, _ = self.subdomain_gradients(losses)
        self.optimizer_step(g)
        return {"loss": f}
