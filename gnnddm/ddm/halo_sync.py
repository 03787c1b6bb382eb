"""``halo_sync``: the exact synchronous baseline of deep GNNs, with a halo exchange at every layer.

What Anemoi's sharded processor and DistDGL do. Each subdomain k holds its owned nodes ``V_k`` plus the
one-hop halo ``H¹_k`` (:class:`~gnnddm.partition.halo.HaloPlan`) instead of an L-hop overlap. One outer
iteration for a model of L layers (stages ``encode``, ``layer`` 0..L−1, ``decode``, see
:mod:`gnnddm.models`):

forward, l = 0 .. L−1
    ``state_k ← layer_l(state_k)`` on the local graph of k (edges into owned nodes only); before every
    layer l ≥ 1 the halo rows of ``state_k[0]`` are replaced by their owners' rows       [exchange]
    (layer 0 needs none: the halo's inputs are data, read from the batch)
loss
    f_k = Σ_{b, i ∈ V_k, v} w (decode(state_k) − y)²  (owned nodes, global normalisation)
backward, l = L−1 .. 0
    the stage's backward pass per subdomain; before stage l−1 the gradients of the halo rows go back to
    their owners and are added to the owned rows' gradients                               [exchange]
update
    g = Σ_k ∇f_k, f = Σ_k f_k                                                             [all-reduce, P + 1]
    one step of the global optimizer with g

2(L − 1) halo exchanges and one all-reduce per iteration. The owned outputs equal the full-graph
outputs for any L (tested for every model), so the trajectory is that of ``global`` up to round-off;
no node is computed twice beyond the one-hop halo, whose rows are recomputed at every layer and
discarded (they carry no incoming edges).

The stages are run one at a time with explicit backward passes rather than with communication hidden
in autograd, so that each subdomain's compute is measured between the exchanges that bound it (the
phases of the modelled time) and the same code runs in one process and on ranks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gnnddm.ddm.base import Algorithm, AlgorithmConfig
from gnnddm.errors import ConfigError
from gnnddm.models.graph import Graph, prepare_graph
from gnnddm.partition.halo import HaloPlan, halo_plan
from gnnddm.tasks import weighted_sq_error

STAGES = ("encode", "layer", "decode", "num_layers")


def require_stages(model, key: str) -> None:
    """Refuse a model that does not expose its layers (``encode``, ``layer``, ``decode``, ``num_layers``)."""
    missing = [a for a in STAGES if not hasattr(model, a)]
    if missing:
        raise ConfigError(
            f"{key}: model {type(model).__name__} does not expose its layers ({', '.join(missing)} "
            f"missing), so halos cannot be exchanged layer by layer; use a model of conf/model/ or ddm=sync"
        )


def part_graphs(plan: HaloPlan, edge_attr, edge_weight, device, parts) -> dict[int, Graph]:
    """The local graph of each of ``parts`` (edges into owned nodes, global in-degrees)."""
    graphs = {}
    for k in parts:
        ids = plan.edge_ids[k]
        graphs[k] = prepare_graph(
            plan.edge_index[k], len(plan.nodes[k]), None if edge_attr is None else edge_attr[ids],
            None if edge_weight is None else edge_weight[ids],
            in_degree=plan.in_degree[k], in_weight=plan.in_weight[k],
        ).to(device)
    return graphs


class HaloPath:
    """The loss of a model on the parts of one graph, evaluated layer by layer with one-hop halos.

    The forward, loss and backward of the module docstring, for this rank's ``parts``, without the final
    all-reduce (the caller reduces). Used by ``halo_sync`` on the data's graph and by ``multilevel`` on
    every level it distributes.

    Parameters
    ----------
    plan : HaloPlan
    graphs : dict[int, Graph]
        Part k's local graph (:func:`part_graphs`).
    parts : tuple of int
        The parts this rank computes.
    comm : Communicator
        Exchanges the halo rows (and accounts them).
    timed : callable
        ``timed(k)``: the context that measures part k's compute (``Algorithm.timed``).
    """

    def __init__(self, plan: HaloPlan, graphs: dict[int, Graph], parts, comm, timed):
        self.plan, self.graphs, self.parts, self.comm, self.timed = plan, graphs, tuple(parts), comm, timed

    def work(self, num_nodes: int) -> float:
        """Nodes computed on (owned + one-hop halo of this rank's parts) / ``num_nodes``."""
        return sum(len(self.plan.nodes[k]) for k in self.parts) / num_nodes

    def _graph(self, k: int, dtype: torch.dtype) -> Graph:
        if self.graphs[k].adj.dtype != dtype:
            self.graphs[k] = self.graphs[k].astype(dtype)
        return self.graphs[k]

    def _exchange(self, values: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """The forward halo exchange of the plan; with one part there is no halo and nothing is sent."""
        if self.plan.num_parts == 1:
            return {k: v[:0] for k, v in values.items()}
        return self.comm.exchange_halo(self.plan, values)

    def _forward(self, model, inputs, tape: bool, start: int = 0, prefix: dict | None = None,
                 stop: int | None = None, record: dict | None = None):
        """Stages ``start`` .. ``stop`` − 1 of every part with a halo exchange before each layer after the first,
        from the parts' states ``prefix`` after stage ``start`` − 1 (none when ``start`` is 0), and each part's
        loss when the last stage is run; ``tape``: with, per stage and part, the leaves and outputs the backward
        pass walks back (none at stage ``start``, below which nothing is differentiated). ``record``: filled
        with each stage's states, detached (``record[stage][k]``). Returns the tapes, the losses and the
        parts' last states."""
        plan, layers = self.plan, int(model.num_layers)
        stop = layers if stop is None else stop
        tapes: list[dict] = []  # per stage and subdomain: (leaves, outputs)
        states: dict[int, tuple] = dict(prefix or {})
        losses: dict[int, torch.Tensor] = {}
        for stage in range(start, stop):
            if stage > 0:
                halo = self._exchange({k: states[k][0].detach() for k in self.parts})
            taped = {}
            for k in self.parts:
                with self.timed(k):
                    x, y, w = inputs(k)
                    graph, owned = self._graph(k, x.dtype), plan.num_owned[k]
                    if stage == 0:
                        leaves = None
                        state = model.encode(x.transpose(0, 1), graph)
                    else:
                        prev = states[k]
                        h = torch.cat([prev[0][:owned].detach(), halo[k]])
                        if stage == start:  # the prefix is constant: nothing below it is differentiated
                            leaves, state = None, (h, *(t.detach() for t in prev[1:]))
                        elif tape:
                            leaves = (h.requires_grad_(), *(t.detach().requires_grad_() for t in prev[1:]))
                            state = leaves
                        else:
                            leaves = state = (h, *prev[1:])
                    out = model.layer(stage, state, graph)
                    if stage == layers - 1:
                        pred = model.decode(out, graph).transpose(0, 1)[:, :owned]
                        losses[k] = weighted_sq_error(pred, y, w)
                taped[k], states[k] = (leaves, out), out
            if record is not None:
                record[stage] = {k: tuple(t.detach() for t in states[k]) for k in self.parts}
            if tape:
                tapes.append(taped)
        return tapes, losses, states

    def loss(self, model, inputs, start: int = 0, prefix: dict | None = None) -> torch.Tensor:
        """Σ_k f_k over this rank's parts, forward only (float64 [1]).

        ``inputs(k) -> (x [B, n_local, F] in the plan's node order, y, w [B, n_owned, V])``; ``start`` and
        ``prefix``: run the stages from ``start`` on, from the parts' states after stage ``start`` − 1 (as
        ``record`` of :meth:`loss_backward` keeps them).
        """
        with torch.no_grad():
            _, losses, _ = self._forward(model, inputs, tape=False, start=start, prefix=prefix)
        f = torch.zeros(1, dtype=torch.float64)
        for k in self.parts:
            f += float(losses[k])
        return f

    def loss_backward(self, model, inputs, start: int = 0, prefix: dict | None = None,
                      record: dict | None = None) -> torch.Tensor:
        """Σ_k f_k over this rank's parts (float64 [1]), with Σ_k ∇f_k accumulated into the parameters'
        ``.grad``; ``inputs``, ``start`` and ``prefix`` as in :meth:`loss`. From ``start`` > 0 only the
        parameters of the layers from ``start`` on receive gradients (the backward pass stops there).
        ``record``: filled with the states of the forward pass (:meth:`_forward`), from which later
        evaluations at the same parameters below a stage can start."""
        plan, layers = self.plan, int(model.num_layers)
        tapes, losses, _ = self._forward(model, inputs, tape=True, start=start, prefix=prefix, record=record)
        f = torch.zeros(1, dtype=torch.float64)
        grads: dict[int, tuple] = {}
        for stage in reversed(range(start, layers)):
            at_leaves = {}
            i = stage - start
            for k in self.parts:
                with self.timed(k):
                    leaves, out = tapes[i][k]
                    if stage == layers - 1:
                        losses[k].backward()
                        f += float(losses[k].detach())
                    else:
                        pairs = [(o, g) for o, g in zip(out, grads[k], strict=True) if o.requires_grad]
                        if pairs:
                            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
                    if leaves is not None:
                        at_leaves[k] = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]
            tapes[i] = None  # free the stage's graph
            if stage > start and plan.num_parts == 1:  # no halo rows: nothing goes back
                grads = {k: tuple(at_leaves[k]) for k in self.parts}
            elif stage > start:
                back = self.comm.exchange_halo(
                    plan, {k: at_leaves[k][0][plan.num_owned[k]:] for k in self.parts}, reverse=True
                )
                for k in self.parts:
                    g_h, owned = at_leaves[k][0], plan.num_owned[k]
                    g_prev = torch.cat([g_h[:owned] + back[k], torch.zeros_like(g_h[owned:])])
                    grads[k] = (g_prev, *at_leaves[k][1:])
        return f


def fine_path(objective, comm, timed) -> tuple[HaloPath, Callable]:
    """The :class:`HaloPath` of the objective's partition on the data's graph, and its inputs
    ``inputs(losses, k)``: the rows of the plan's local nodes (owned, then one-hop halo) sliced from
    subdomain k's rows of the per-batch losses ``losses`` (:meth:`Objective.on
    <gnnddm.ddm.objective.Objective.on>`). The path's methods take ``inputs`` as a function of k alone:
    ``functools.partial(inputs, losses)`` on the step's batch."""
    partition, data = objective.partition, objective.data
    if partition.num_parts > 1 and partition.overlap < 1:
        raise ConfigError(
            "partition.overlap: the halo exchange reads the one-hop halo's inputs from the subdomain rows of "
            f"the batch and needs partition.overlap >= 1, got {partition.overlap}"
        )
    plan = halo_plan(partition, data.edge_index, data.num_nodes, data.edge_weight)
    parts = tuple(k for k in comm.parts_of_rank if objective.num_owned[k] > 0)
    graphs = part_graphs(plan, data.edge_attr, data.edge_weight, objective.device, parts)
    rows: dict[int, torch.Tensor] = {}
    for k in parts:
        # where the plan's local nodes sit among the subdomain rows the objective slices from the batch
        where = np.full(data.num_nodes, -1, dtype=np.int64)
        where[objective.nodes_of(k).cpu().numpy()] = np.arange(objective.num_local[k])
        local = where[plan.nodes[k]]
        assert (local >= 0).all(), "a one-hop halo node outside the subdomain's overlap"
        rows[k] = torch.as_tensor(local, device=objective.device)

    def inputs(losses, k: int):
        x, y, w = losses.local_batch(k)
        return x[:, rows[k]], y, w

    return HaloPath(plan, graphs, parts, comm, timed), inputs


@dataclass
class HaloSyncConfig(AlgorithmConfig):
    _target_: str = "gnnddm.ddm.halo_sync.HaloSync"
    name: str = "halo_sync"

class HaloSync(Algorithm):
    """Synchronous training with a halo exchange at every message-passing layer (module docstring).

    Parameters
    ----------
    model, objective, comm, optimizer
        See :class:`~gnnddm.ddm.base.Algorithm`; ``optimizer`` (the ``optimizer`` group) is required.
        The model must expose its stages (``encode``, ``layer``, ``decode``, ``num_layers``).
    """

    name = "halo_sync"
    Config = HaloSyncConfig
    uses_full_batch = False
    layerwise_halo = True

    def __init__(self, model, objective, comm, optimizer=None, *, config=None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        require_stages(model, "ddm=halo_sync")
        self._global_optimizer()
        self.path, self.inputs = fine_path(objective, comm, self.timed)
        self.plan: HaloPlan = self.path.plan
        self.work = self.path.work(objective.num_nodes)

    # ------------------------------------------------------------------ the outer iteration
    def _step(self, losses) -> dict[str, float]:
        self.model.zero_grad(set_to_none=True)
        f = self.path.loss_backward(self.model, functools.partial(self.inputs, losses))
        self.accounting.add_work(grad_evals=self.work)
        g = self.flat_grad()
        f = f.to(device=g.device, dtype=g.dtype)
        self.comm.all_reduce_sum_([g, f])
        self.model.zero_grad(set_to_none=True)
        self.optimizer_step(g)
        return {"loss": float(f)}

    def __repr__(self) -> str:
        return f"HaloSync(parts={self.num_parts}, params={self.num_params}, {self.plan!r})"
