"""``global``: the single-process baseline, one optimizer step on the full-graph loss per iteration.

    θ_{t+1} = optimizer_step(θ_t, ∇f(θ_t))

With torch.optim.Adagrad (no momentum) this is the single-level OFFO method. No communication; the
whole graph is one computation (grad_evals 1 per iteration).
"""

from __future__ import annotations

from dataclasses import dataclass

from gnnddm.ddm.base import Algorithm, AlgorithmConfig


@dataclass
class GlobalConfig(AlgorithmConfig):
    _target_: str = "gnnddm.ddm.global_.Global"
    name: str = "global"

class Global(Algorithm):
    """One step of the global optimizer (config group ``optimizer``) on f per outer iteration."""

    name = "global"
    Config = GlobalConfig
    whole_graph = True

    def __init__(self, model, objective, comm, optimizer=None, *, config=None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        self._global_optimizer()

    def _step(self, losses) -> dict[str, float]:
        opt = self._global_optimizer()
        with self.timed(None):
            opt.zero_grad(set_to_none=True)
            whole = self.objective.whole().on(losses)
            loss = whole(self.model)
            loss.backward()
            if self.comm.rank == 0:  # one computation, however many processes repeat it
                self.accounting.add_work(grad_evals=whole.work)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach())}
