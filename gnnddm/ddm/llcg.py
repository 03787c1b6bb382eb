"""``llcg``: Learn Locally, Correct Globally.

One outer iteration = ``local_avg`` (m local steps per subdomain, owned-node-weighted average), then S
server-correction steps of the global optimizer on the full-graph loss f:

    θ' = Σ_k ω_k θ_k,    θ_{t+1} = S optimizer steps on f from θ'

The server (rank 0) holds the full graph, corrects, and broadcasts θ_{t+1}. Communication: 1 all-reduce
of [Σ ω_k θ_k, f(θ_t)] (P + 1 numbers) and, when S > 0, 1 broadcast of P numbers. The server work
(S full-graph gradients) is counted once and the other ranks wait for it in the modelled time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.ddm.local_avg import LocalAvg, LocalAvgConfig
from gnnddm.schema.fields import at_least


@dataclass
class LLCGConfig(LocalAvgConfig):
    _target_: str = "gnnddm.ddm.llcg.LLCG"
    name: str = "llcg"
    server_steps: int = field(default=1, metadata=at_least(0))

class LLCG(LocalAvg):
    """``local_avg`` followed by ``server_steps`` global-optimizer steps on the full graph."""

    name = "llcg"
    Config = LLCGConfig
    uses_full_batch = True  # server steps / coarse levels read the whole graph

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None,
                 config: LLCGConfig | None = None, **options):
        super().__init__(model, objective, comm, optimizer, local_solver=local_solver, config=config, **options)
        self.server_steps = self.config.server_steps
        self._global_optimizer()

    def _step(self, losses) -> dict[str, float]:
        theta_t = self.flat()
        avg, f = self._average(losses, theta_t)
        self.set_flat(avg)
        if self.server_steps == 0:
            return {"loss": f}
        opt = self._global_optimizer()
        server_loss = float("nan")
        if self.comm.rank == self.comm.owner(0):
            with self.timed(None):
                for _ in range(self.server_steps):
                    opt.zero_grad(set_to_none=True)
                    whole = self.objective.whole().on(losses)
                    loss = whole(self.model)
                    loss.backward()
                    self.accounting.add_work(grad_evals=whole.work)
                    opt.step()
                    server_loss = float(loss.detach())
                opt.zero_grad(set_to_none=True)
        theta = self.flat()
        self.comm.broadcast_([theta], src=self.comm.owner(0))
        self.set_flat(theta)
        return {"loss": f, "server_loss": server_loss}
