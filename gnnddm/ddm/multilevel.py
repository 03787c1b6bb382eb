"""``multilevel``: V-cycles on a hierarchy of coarse problems (MG/OPT, RMTR, RB-AdaGrad; docs/multilevel.md).

Levels ℓ = 0 (the data's graph) .. L − 1 (``ddm.levels`` = L), from
:func:`gnnddm.partition.hierarchy.build_hierarchy` (``ddm.coarsening``). Level ℓ's loss f_ℓ is the same
model on the level's graph with the batch restricted to it (area-weighted cell means of inputs and
targets, :class:`~gnnddm.ddm.objective.Objective`), so every level has the same parameters θ and a step
costs about n_ℓ / n of a fine step. One outer iteration is one V-cycle from θ_t:

1. ν₁(0) steps of the global optimizer on f (pre-smoothing; each one fine gradient).
2. g = ∇f(θ_a), f(θ_a) at the current point θ_a (one fine gradient). The feasible set C of the cycle:
   - ``trust_region``: the ball ‖θ − θ_a‖ ≤ Δ_t,
   - ``offo``: the box |θ_i − θ_a,i| ≤ κ·|g_i| / w_i, w² = ς + Σ_τ g_τ² (RB-AdaGrad: the coarse steps
     stay inside the box the fine level allows),
   - ``none``: no constraint.
3. Coarse cycle on level ℓ = 1 from θ_a with the gradient g_{ℓ−1} of the level above:

       h_ℓ(θ) = f_ℓ(θ) + ⟨g_{ℓ−1} − ∇f_ℓ(θ_a), θ − θ_a⟩,      ∇h_ℓ(θ_a) = g_{ℓ−1}

   (first-order coherence; one coarse gradient), then ν₁(ℓ) local-solver steps on h_ℓ (``coarse_solver``,
   one solver per level whose state persists between cycles), each projected onto C; then, when ℓ < L − 1,
   the coarse cycle of level ℓ + 1 from the current point with g_ℓ = ∇h_ℓ there, kept only if it
   decreases h_ℓ (one coarse forward); then ν₂(ℓ) post-smoothing steps on h_ℓ. It returns θ_c ∈ C.
4. s = θ_c − θ_a is tested on the fine level (``trust_region``): ρ = (f(θ_a) − f(θ_a + s)) /
   (h_1(θ_a) − h_1(θ_c)); accepted if ρ > η₁, Δ updated as in ``asm`` (γ_dec, γ_inc, clamped into
   [radius_min, radius_max]). With ν₂(0) ≥ 1 the first post-smoothing gradient is taken at θ_a + s and
   gives f(θ_a + s) with it (no extra evaluation; a rejected s falls back to g at θ_a); with ν₂(0) = 0
   the test costs one fine forward. ``offo`` and ``none`` accept every s.
5. ν₂(0) steps of the global optimizer on f (post-smoothing).

In depth (``ddm.depth_coarsening``, ``ddm.schedule``): a level may instead (or also) halve the residual
layers of the level above (:mod:`gnnddm.ddm.depth`); it then has its own network and parameters
z = Rθ, its model is made coherent with Pᵀ g_{ℓ−1}, its constraint is the set whose prolongation stays in
the level above's, and its end point goes back as θ + P(z_c − Rθ) (:meth:`Multilevel.descend`).

On p parts (``partition.num_parts`` > 1): every evaluation of the fine loss runs through ``halo_sync``'s
layer-by-layer halo exchange (:class:`~gnnddm.ddm.halo_sync.HaloPath`) and one all-reduce; each coarse graph
on the restriction of the fine partition with its own exchanges, or whole on every rank
(``ddm.coarse_distribution``). The iterates are those of the one-piece run.

With one level (L = 1) an iteration is ν₁(0) + ν₂(0) steps of the global optimizer: ``global`` when
ν₁(0) + ν₂(0) = 1. Fine-level gradient evaluations are counted in ``fine_grad_evals`` and the fine
forward-only passes of the trust-region test in ``fine_loss_evals`` (both cumulative); ``grad_evals`` counts
every level at n_ℓ / n.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from gnnddm.ddm.base import (
    Algorithm,
    SolverConfig,
    TrustRegion,
    TrustRegionConfig,
    feasible_set,
    flat_grad,
)
from gnnddm.ddm.depth import (
    PROLONGATIONS,
    RESTRICTIONS,
    DepthTransfer,
    coarsen_depth,
    depth_levels_allowed,
    no_residual_layers,
    residual_layers,
)
from gnnddm.ddm.halo_sync import HaloPath, fine_path, part_graphs, require_stages
from gnnddm.ddm.objective import Loss
from gnnddm.ddm.solvers import Ball, Box, make_local_solver
from gnnddm.errors import ConfigError
from gnnddm.partition.halo import halo_plan
from gnnddm.partition.hierarchy import COARSENINGS, build_hierarchy
from gnnddm.partition.overlap import build_partition
from gnnddm.schema.fields import above, at_least, one_of


def _per_level(key: str, value, levels: int) -> list[int]:
    """ν for every level: one integer for all, or a list finest first whose last value repeats."""
    if isinstance(value, list | tuple):
        if not 1 <= len(value) <= levels:
            raise ConfigError(f"ddm.{key}: expected one integer or a list of 1 to {levels} values "
                              f"(ddm.levels={levels}), finest level first, got {list(value)!r}; set ddm.{key} "
                              "with ddm.levels")
        values = [_count(key, v) for v in value]
        return values + [values[-1]] * (levels - len(values))
    return [_count(key, value)] * levels


DISTRIBUTIONS = ("partition", "replicate")
#: the default ν₂ per level, finest first: no global-optimizer steps on the fine level, 4 smoothing steps on
#: the first coarse level, 8 on the others
POST_SMOOTH = (0, 4, 8)
SCHEDULES = ("space", "depth", "both")


def _schedule(value, depth: bool, levels: int) -> list[str]:
    """What each coarse level coarsens (``ddm.schedule``), the first coarse level first: ``space`` (the
    graph), ``depth`` (the residual layers) or ``both``; null: ``both`` with ``ddm.depth_coarsening``, else
    ``space``. A list's last value repeats."""
    coarse = levels - 1
    if value is None:
        return ["both" if depth else "space"] * coarse
    values = list(value) if isinstance(value, list | tuple) else [value]
    if coarse and (not 1 <= len(values) <= coarse or any(v not in SCHEDULES for v in values)):
        raise ConfigError(f"ddm.schedule: expected a list of 1 to {coarse} of {list(SCHEDULES)} (one per coarse "
                          f"level, the first coarse level first; ddm.levels={levels}), got {value!r}")
    values = (values + [values[-1]] * (coarse - len(values)))[:coarse]
    if not depth and any(v != "space" for v in values):
        raise ConfigError(f"ddm.schedule: {values} coarsens in depth, which needs ddm.depth_coarsening=true")
    return values


def _distributions(value, coarse: int) -> list[str]:
    """``ddm.coarse_distribution`` for every coarse level: one name for all, or a list (coarsest last) whose
    last value repeats."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values or len(values) > max(coarse, 1) or any(v not in DISTRIBUTIONS for v in values):
        raise ConfigError(f"ddm.coarse_distribution: expected one of {list(DISTRIBUTIONS)} or a list of 1 to "
                          f"{max(coarse, 1)} of them (one per coarse level, the first coarse level first), "
                          f"got {value!r}")
    return (values + [values[-1]] * (coarse - len(values)))[:coarse]


def _count(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"ddm.{key}: expected integers >= 0, got {value!r}")
    return value


@dataclass
class CoarseSolverConfig(SolverConfig):
    """A coarse level's solver; ``lr`` null: the global optimizer's rate."""

    lr: float | None = field(default=None, metadata=above(0.0, "a learning rate "))


@dataclass
class MultilevelConfig(TrustRegionConfig):
    _target_: str = "gnnddm.ddm.multilevel.Multilevel"
    name: str = "multilevel"
    levels: int = field(default=3, metadata=at_least(1))
    coarsening: str = field(default="grid", metadata=one_of(*COARSENINGS, noun="coarsening"))
    clusters: int | None = field(default=None, metadata=at_least(1))
    pre_smooth: int | list[int] = 0
    post_smooth: int | list[int] = field(default_factory=lambda: list(POST_SMOOTH))
    coarse_solver: CoarseSolverConfig = field(default_factory=CoarseSolverConfig)
    coarse_distribution: str | list[str] = "partition"
    depth_coarsening: bool = False
    depth_restriction: str = field(default="average", metadata=one_of(*RESTRICTIONS, noun="depth restriction"))
    depth_prolongation: str = field(default="constant", metadata=one_of(*PROLONGATIONS, noun="depth prolongation"))
    schedule: list[str] | None = None
    seed: int = field(default=0, metadata=at_least(0))

class Multilevel(Algorithm):
    """V-cycles over a level hierarchy; see the module docstring.

    Parameters
    ----------
    model, objective, comm, optimizer, config, **options
        See :class:`~gnnddm.ddm.base.Algorithm`; the keys of ``config`` (:class:`MultilevelConfig`) are:
    levels : int
        L >= 1, the fine level included.
    coarsening : {"grid", "matching", "clusters"}
        How coarse levels are made (:mod:`gnnddm.partition.hierarchy`).
    clusters : int, optional
        ``clusters``: clusters of the first coarse level (default N / 4).
    pre_smooth, post_smooth : int or list of int
        ν₁, ν₂ per level: one value for all levels, or a list finest first whose last value also holds
        for the levels beyond it.
    coarse_solver : callable or CoarseSolverConfig
        ``params -> torch.optim.Optimizer`` (a ``functools.partial``); one per coarse level. Without an
        ``lr`` (or ``lr=None``): the global optimizer's rate. The constructor's ``coarse_solver`` argument
        takes the built factory; without it, the config node's class.
    globalization : {"trust_region", "offo", "none"}
    eta1, eta2, gamma_dec, gamma_inc, radius0, radius_min, radius_max : float
        Trust region (as in ``asm``).
    kappa, varsigma : float
        OFFO box scale κ and accumulator offset ς.
    coarse_distribution : {"partition", "replicate"} or list of them
        With p > 1 parts, how each coarse level (the first coarse level first; the last value repeats) is
        computed: on the restriction of the fine partition with its own halo exchanges (``partition``), or
        whole on every rank (``replicate``: no communication, p copies of the work). One value per coarse
        graph: a level coarsened in depth only keeps the graph (and its distribution) of the level above.
    depth_coarsening : bool
        Coarse levels with half the residual layers of the level above and twice their step
        (:mod:`gnnddm.ddm.depth`); the model needs residual layers.
    depth_restriction : {"average", "injection"}
        A merged pair's parameters: their mean, or the first layer's.
    depth_prolongation : {"constant", "linear"}
        How a coarse correction reaches the layers above (and, as Pᵀ, the gradient the other way).
    schedule : list of {"space", "depth", "both"}, optional
        What each coarse level coarsens, the first coarse level first (the last value repeats); default
        ``both`` with ``depth_coarsening``, else ``space``.
    seed : int
        Tie-breaking of the matching / METIS seed of ``clusters``.
    """

    name = "multilevel"
    Config = MultilevelConfig
    # the coarse levels restrict the whole batch, so every rank reads all of it (the fine level computes
    # only its parts' rows)
    uses_full_batch = True
    layerwise_halo = True  # on p parts

    def __init__(self, model, objective, comm, optimizer=None, *, coarse_solver=None,
                 config: MultilevelConfig | None = None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        c = self.config
        self.levels, self.coarsening = c.levels, c.coarsening
        self.schedule = _schedule(c.schedule, c.depth_coarsening, c.levels)
        self.depth_prolongation = c.depth_prolongation
        self.pre = _per_level("pre_smooth", c.pre_smooth, self.levels)
        self.post = _per_level("post_smooth", c.post_smooth, self.levels)
        if not any(self.pre) and not any(self.post):
            raise ConfigError("ddm.pre_smooth / ddm.post_smooth: ν = 0 at every level, so a cycle does nothing; "
                              "give at least one level a smoothing step (e.g. ddm.post_smooth=1)")
        self.globalization = c.globalization
        self.tr = TrustRegion.of(c)
        self.kappa, self.varsigma = float(c.kappa), float(c.varsigma)
        optimizer_lr = self._global_optimizer().param_groups[0]["lr"]
        self.coarse_solver = coarse_solver or c.coarse_solver.factory()
        if getattr(self.coarse_solver, "keywords", {}).get("lr") is None:  # the fine optimizer's rate
            self.coarse_solver = functools.partial(self.coarse_solver, lr=float(optimizer_lr))
        # level ℓ's graph: 0 the data's, i the i-th coarse graph of the objective
        self.graph_of = [0]
        for kind in self.schedule:
            self.graph_of.append(self.graph_of[-1] + (kind != "depth"))
        graphs = self.graph_of[-1] + 1
        if objective.num_coarse_levels < graphs - 1:
            raise ConfigError(f"ddm.levels: {self.levels} levels need {graphs - 1} coarse graphs, the "
                              f"objective has {objective.num_coarse_levels}; build it with them "
                              "(gnnddm.ddm.build_objective, or Multilevel.coarse_levels(data, config))")
        self.networks, self.transfers = self._depth_hierarchy(c.depth_coarsening, c.depth_restriction)
        for level in range(1, self.levels):
            self.solvers[f"level{level}"] = make_local_solver(self.coarse_solver, self.networks[level].params,
                                                              "ddm.coarse_solver")
        if objective.num_parts > 1:
            graph_distribution = ["partition", *_distributions(c.coarse_distribution, graphs - 1)]
        else:
            graph_distribution = ["whole"] * graphs
        self.distribution = [graph_distribution[g] for g in self.graph_of]
        graph_losses = self._graph_losses(graph_distribution)
        # level ℓ's loss f_ℓ, built once as a function of the model and the step's per-batch losses
        self.level_losses = [self._depth_work(graph_losses[g], level) for level, g in enumerate(self.graph_of)]
        self.accumulator: torch.Tensor | None = None
        self.fine_grads = 0.0
        self.fine_losses = 0.0  # forward-only passes on the fine level (the trust-region test's f(θ_a + s))

    @classmethod
    def coarse_levels(cls, data, config: MultilevelConfig, graph_builder=None) -> list:
        """The coarse graphs of the hierarchy (:func:`gnnddm.partition.hierarchy.build_hierarchy`): one per
        coarse level that coarsens in space (``ddm.schedule``)."""
        schedule = _schedule(config.schedule, config.depth_coarsening, config.levels)
        graphs = sum(kind != "depth" for kind in schedule)
        if graphs == 0:
            return []
        return build_hierarchy(data, graphs, config.coarsening, rebuild=graph_builder, clusters=config.clusters,
                               seed=config.seed)

    def _depth_hierarchy(self, depth: bool, restriction: str) -> tuple[list[Algorithm], list]:
        """Every level's network (this algorithm's own until a level coarsens in depth: then a
        :class:`_LevelNetwork` of half the residual layers) and the transfer from the level above (None: the
        same network)."""
        depths = sum(kind != "space" for kind in self.schedule)
        if depth and not residual_layers(self.model):
            raise no_residual_layers(self.model)
        allowed = depth_levels_allowed(self.model)
        if depths > allowed:
            raise ConfigError(
                f"ddm.levels / ddm.schedule: {self.schedule} coarsens {depths} times in depth, but model "
                f"{type(self.model).__name__} has {len(residual_layers(self.model))} residual layers, which allow "
                f"{allowed}; use fewer ddm.levels or 'space' levels in ddm.schedule"
            )
        networks, transfers = [self], [None]
        for kind in self.schedule:
            if kind == "space":
                networks.append(networks[-1])
                transfers.append(None)
                continue
            coarse, transfer = coarsen_depth(networks[-1].model, restriction)
            networks.append(_LevelNetwork(coarse, self.objective, self.comm))
            transfers.append(transfer)
        return networks, transfers

    def _depth_work(self, loss: Loss, level: int) -> Loss:
        """Level ``level``'s loss: its graph's, with the work scaled by its share of the message-passing layers."""
        if self.networks[level] is self:
            return loss
        share = self.networks[level].model.num_layers / self.model.num_layers
        return Loss(loss.fn, loss.work * share, loss.value_grad)

    # ------------------------------------------------------------------ the levels' losses
    def _graph_losses(self, distribution: list[str]) -> list[Loss]:
        """The loss on every graph of the hierarchy as a :class:`Loss` of the model and the per-batch losses
        (built once, evaluated on each step's batch): in one piece with one part; with p parts the data's
        graph through the halo exchange of ``halo_sync`` and each coarse graph by its
        ``coarse_distribution``."""
        objective = self.objective
        if objective.num_parts == 1:
            return [objective.whole(), *(objective.coarse_level(i) for i in range(len(distribution) - 1))]
        require_stages(self.model, "ddm=multilevel with partition.num_parts > 1")
        path, inputs = fine_path(objective, self.comm, self.timed)
        out = [self._halo_loss(path, inputs)]
        for graph in range(1, len(distribution)):
            if distribution[graph] == "replicate":
                out.append(self._replicated(objective.coarse_level(graph - 1)))
            else:
                out.append(self._halo_loss(*self._coarse_path(graph), before=graph - 1))
        return out

    def _replicated(self, loss: Loss) -> Loss:
        """A coarse level every rank computes whole: its work counts once per modelled rank."""
        return Loss(loss.fn, loss.work * self.copies)

    def _coarse_path(self, level: int) -> tuple[HaloPath, callable]:
        """Level ``level``'s graph on the restriction of the fine partition (each coarse node to the part
        owning most of its fine nodes; ties to the lower part) and the inputs of its parts,
        ``inputs(losses, k)`` (rows of the batch of ``losses`` restricted to the level)."""
        objective, c = self.objective, self.objective.coarse[level - 1]
        n_c, p = c["num_clusters"], objective.num_parts
        votes = np.zeros((n_c, p), dtype=np.int64)
        np.add.at(votes, (c["assign"], np.asarray(objective.partition.parts, dtype=np.int64)), 1)
        parts = votes.argmax(axis=1)
        empty = sorted(set(range(p)) - set(parts.tolist()))
        if empty:
            raise ConfigError(
                f"ddm.coarse_distribution: coarse level {level} has {n_c} nodes, and the restriction of the "
                f"{p}-part partition leaves part(s) {empty[:8]} without any; replicate that level "
                f"(ddm.coarse_distribution=replicate, or a list such as [partition, replicate] per coarse level) "
                "or use fewer ddm.levels"
            )
        with warnings.catch_warnings():  # disconnected restricted parts are expected and harmless here
            warnings.simplefilter("ignore", UserWarning)
            partition = build_partition(c["edge_index"], n_c, parts, 0, c["edge_weight"], num_parts=p)
        plan = halo_plan(partition, c["edge_index"], n_c, c["edge_weight"])
        mine = tuple(self.comm.parts_of_rank)
        graphs = part_graphs(plan, c["edge_attr"], c["edge_weight"], objective.device, mine)
        nodes = {k: torch.as_tensor(plan.nodes[k], device=objective.device) for k in mine}

        def inputs(losses, k: int):
            x, y, w = losses.coarse_batch(level - 1)
            owned = nodes[k][: plan.num_owned[k]]
            return x[:, nodes[k]], y[:, owned], w[:, owned]

        return HaloPath(plan, graphs, mine, self.comm, self.timed), inputs

    def _halo_loss(self, path: HaloPath, inputs, before: int | None = None) -> Loss:
        """f of one level evaluated through ``path`` and summed over the ranks (one all-reduce), on the batch
        of the per-batch losses it is given (``inputs(losses, k)``); ``before``: the coarse level whose
        restricted batch is made first, as work every rank does alike."""
        objective, comm = self.objective, self.comm

        def restrict(losses):
            if before is not None:
                with self.timed(None):
                    losses.coarse_batch(before)

        def value(model, losses) -> torch.Tensor:
            restrict(losses)
            f = path.loss(model, functools.partial(inputs, losses)).to(self.params[0].device)
            comm.all_reduce_sum_([f])
            return f[0]

        def value_grad(model, losses) -> tuple[float, torch.Tensor]:
            restrict(losses)
            model.zero_grad(set_to_none=True)
            f = path.loss_backward(model, functools.partial(inputs, losses))
            g = flat_grad([p for p in model.parameters() if p.requires_grad])
            f = f.to(device=g.device, dtype=g.dtype)
            comm.all_reduce_sum_([g, f])
            model.zero_grad(set_to_none=True)
            return float(f), g

        return Loss(value, path.work(objective.num_nodes), value_grad=value_grad)

    def _timer(self, level: int):
        """The timing of level ``level``'s work: every rank's alike when it is computed whole; a level run
        through halo exchanges times each part itself (its exchanges are communication, not compute)."""
        if self.distribution[level] != "partition":
            return self.timed(None)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ fine level
    def _fine_grad(self, losses) -> tuple[float, torch.Tensor]:
        """f and ∇f at the current θ on the batch of ``losses`` (one fine gradient)."""
        with self._timer(0):
            f, g = self._loss_grad(self.level_losses[0].on(losses))
        self.model.zero_grad(set_to_none=True)
        self.fine_grads += 1.0
        return f, g

    def _smooth_fine(self, losses, steps: int, grad: torch.Tensor | None = None) -> float | None:
        """``steps`` global-optimizer steps on f on the batch of ``losses``; the first uses ``grad`` when given
        (at the current θ). Returns f at the first point whose gradient was evaluated here (None if none
        was)."""
        first = None
        for i in range(steps):
            if i == 0 and grad is not None:
                g = grad
            else:
                f, g = self._fine_grad(losses)
                first = f if first is None else first
            self.optimizer_step(g)
        return first

    def constraint(self, center: torch.Tensor, g: torch.Tensor) -> Ball | Box | None:
        """The feasible set C of a cycle around θ_a (module docstring, step 2)."""
        return feasible_set(self, center, g)

    # ------------------------------------------------------------------ coarse levels
    def coherent_model(self, losses, level: int, anchor: torch.Tensor, g_up: torch.Tensor):
        """(h_ℓ, f_ℓ(anchor)): level ``level``'s model on the batch of ``losses`` made first-order coherent
        with ``g_up`` at ``anchor`` (both in the level's parameters)."""
        net = self.networks[level]
        net.set_flat(anchor)
        loss = self.level_losses[level].on(losses)
        with self._timer(level):
            f_c, grad_c = net._loss_grad(loss)
        return net.local_model(loss, corr=g_up - grad_c, anchor=anchor), f_c

    def _h_value(self, h, theta: torch.Tensor, level: int) -> float:
        """h(θ), forward only (one coarse loss evaluation)."""
        net = self.networks[level]
        net.set_flat(theta)
        with self._timer(level), torch.no_grad():
            value = float(h(net.model))
            self.accounting.add_work(loss_evals=h.work)
        return value

    def coarse_cycle(self, losses, level: int, anchor: torch.Tensor, g_up: torch.Tensor, constraint):
        """The V-cycle of ``level`` >= 1 from ``anchor`` on the batch of ``losses`` (module docstring, step 3).

        Returns ``(θ_c, h_ℓ(anchor) − h_ℓ(θ_c))``: the end point (in C) and the decrease of the level's
        coherent model (one coarse forward).
        """
        h, f_anchor = self.coherent_model(losses, level, anchor, g_up)
        net, solver = self.networks[level], self.solvers[f"level{level}"]
        theta = anchor
        if self.pre[level]:
            with self._timer(level):
                theta, _, _ = net.local_solve(h, anchor, self.pre[level], solver, constraint=constraint,
                                              first=(f_anchor, g_up))
        if level + 1 < self.levels:
            if self.pre[level]:
                net.set_flat(theta)
                with self._timer(level):
                    h_theta, g_level = net._loss_grad(h)
                net.model.zero_grad(set_to_none=True)
            else:
                h_theta, g_level = f_anchor, g_up  # h_ℓ(anchor) = f_ℓ(anchor), ∇h_ℓ(anchor) = g_up
            theta_c, decrease = self.descend(losses, level + 1, theta, g_level, constraint)
            if decrease > 0 and self._h_value(h, theta_c, level) < h_theta:
                theta = theta_c
        if self.post[level]:
            # still at the anchor (no pre-smoothing, no accepted recursion): its value and gradient are known
            first = (f_anchor, g_up) if theta is anchor else None
            with self._timer(level):
                theta, _, _ = net.local_solve(h, theta, self.post[level], solver, constraint=constraint,
                                              first=first)
        decrease = f_anchor - self._h_value(h, theta, level)
        net.set_flat(anchor)
        return theta, decrease

    def descend(self, losses, level: int, theta: torch.Tensor, g_up: torch.Tensor, constraint):
        """The V-cycle of ``level`` from the point ``theta`` of the level above, whose gradient there is
        ``g_up`` and whose feasible set is ``constraint``, on the batch of ``losses``; returns
        ``(θ', predicted decrease)`` in the level above's parameters.

        Same network: :meth:`coarse_cycle` itself. Coarser in depth (transfer T with prolongation P):
        the cycle runs from T.restrict(θ) with the gradient Pᵀ g_up (first-order coherence with
        s -> f(θ + P s)) inside a set whose prolongation stays in ``constraint``
        (:meth:`_coarse_constraint`), and θ' = θ + P(θ_c − T.restrict(θ)).
        """
        transfer = self.transfers[level]
        if transfer is None:
            return self.coarse_cycle(losses, level, theta, g_up, constraint)
        kind = self.depth_prolongation
        anchor = transfer.restrict(theta)
        theta_c, decrease = self.coarse_cycle(losses, level, anchor, transfer.restrict_gradient(g_up, kind),
                                              self._coarse_constraint(constraint, theta, anchor, transfer))
        return theta + transfer.prolong(theta_c - anchor, kind), decrease

    def _coarse_constraint(self, constraint, theta: torch.Tensor, anchor: torch.Tensor, transfer: DepthTransfer):
        """A set around the coarse ``anchor`` whose steps s keep θ + P s in ``constraint``: a ball of the radius
        left to θ divided by ‖P‖₂, or the box of half-widths min over the fine entries each s_j reaches of the
        room left to θ in the fine box (P's rows are convex combinations)."""
        kind = self.depth_prolongation
        if isinstance(constraint, Ball):
            left = max(constraint.radius - float(torch.linalg.vector_norm(theta - constraint.center)), 0.0)
            return Ball(anchor, left / transfer.operator_norm(kind))
        if isinstance(constraint, Box):
            room = torch.minimum(constraint.hi - theta, theta - constraint.lo).clamp_min(0)
            half = transfer.box_half_width(room, kind)
            return Box(anchor - half, anchor + half)
        return None

    # ------------------------------------------------------------------ the outer iteration
    def _step(self, losses) -> dict[str, float]:
        stats: dict[str, float] = {}
        f_pre = self._smooth_fine(losses, self.pre[0])
        if self.levels == 1:
            f_post = self._smooth_fine(losses, self.post[0])
            stats["loss"] = f_pre if f_pre is not None else f_post
            stats["fine_grad_evals"], stats["fine_loss_evals"] = self.fine_grads, self.fine_losses
            return stats
        theta_a = self.flat()
        f_a, g = self._fine_grad(losses)
        stats["loss"] = f_pre if f_pre is not None else f_a
        constraint = self.constraint(theta_a, g)
        theta_c, predicted = self.descend(losses, 1, theta_a, g, constraint)
        s = theta_c - theta_a
        stats["coarse_step_norm"] = float(torch.linalg.vector_norm(s))
        grad_next = None
        if self.globalization == "trust_region":
            self.set_flat(theta_c)
            if self.post[0]:
                f_new, g_new = self._fine_grad(losses)
            else:
                with self._timer(0):
                    f_new = self._loss_value(self.level_losses[0].on(losses))
                self.fine_losses += 1.0
                g_new = None
            rho, accepted = self.tr.update(f_a - f_new, predicted)
            stats.update(rho=rho, accepted=float(accepted), tr_radius=self.tr.radius, predicted=predicted,
                         actual=f_a - f_new)
            self.set_flat(theta_c if accepted else theta_a)
            grad_next = g_new if accepted else g
        else:
            self.set_flat(theta_c)
            stats["accepted"] = 1.0
            if self.globalization == "offo":
                stats["box_width"] = float((constraint.hi - constraint.lo).mean() / 2)
        self._smooth_fine(losses, self.post[0], grad=grad_next)
        stats["fine_grad_evals"], stats["fine_loss_evals"] = self.fine_grads, self.fine_losses
        return stats

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict:
        return {"radius": self.tr.radius, "accumulator": self.accumulator, "fine_grads": self.fine_grads,
                "fine_losses": self.fine_losses}

    def _load_extra_state(self, state: dict) -> None:
        self.tr.radius = float(state["radius"])
        self.accumulator = state["accumulator"]
        self.fine_grads = float(state["fine_grads"])
        self.fine_losses = float(state.get("fine_losses", 0.0))  # absent from checkpoints of older runs


class _LevelNetwork(Algorithm):
    """A coarse level's own network (a level coarsened in depth): the flat-vector, local-model and local-solve
    helpers of :class:`Algorithm` on its parameters. It takes no outer iteration of its own."""

    name = "multilevel level"

    def _step(self, losses) -> dict[str, float]:
        raise RuntimeError("a multilevel level's network is solved by the cycle, not stepped")
