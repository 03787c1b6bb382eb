"""``global``: the single-process baseline, one optimizer step on the full-graph loss per iteration.

    θ_{t+1} = optimizer_step(θ_t, ∇f(θ_t))

With torch.optim.Adagrad (no momentum) this is the single-level OFFO method. No communication; the
whole graph is one computation (grad_evals 1 per iteration), or, with ``trainer.blocks`` > 1, the same
loss and gradient computed over cache-sized blocks (:mod:`gnnddm.ddm.blocked`; grad_evals then count the
blocks' overlap or halo rows too).
"""

from __future__ import annotations

from dataclasses import dataclass

from gnnddm.ddm.base import Algorithm, AlgorithmConfig
from gnnddm.ddm.blocked import Blocks, block_count


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
        self.blocks: Blocks | None = None  # trainer.blocks > 1: the cache-blocked evaluation

    def run_in_blocks(self, count: int, halo: str = "model") -> None:
        count = block_count(count, self.model, self.objective.num_nodes, 0, halo)  # refuses what cannot be blocked
        hops = getattr(self.model, "num_message_passing_layers", None)
        self.blocks = Blocks(self.objective.data, count, self.objective.device, hops, halo) if count > 1 else None

    def _step(self, losses) -> dict[str, float]:
        opt = self._global_optimizer()
        with self.timed(None):
            opt.zero_grad(set_to_none=True)
            if self.blocks is None:
                whole = self.objective.whole().on(losses)
                loss = whole(self.model)
                loss.backward()
                loss, work = loss.detach(), whole.work
            else:
                loss, work = self.blocks.loss_backward(self.model, losses.batch), self.blocks.work
            if self.comm.rank == 0:  # one computation, however many processes repeat it
                self.accounting.add_work(grad_evals=work)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return {"loss": float(loss)}
