"""``apts``: additive Schwarz in parameter space (APTS; NAPTS's non-monotone test and global step) on the
exact data path of the run (docs/algorithms.md, *APTS*).

The network's parameters are split into blocks d = 1 .. D (:mod:`gnnddm.ddm.blocks`, ``ddm.blocks``);
R_d restricts a parameter vector to block d. One outer iteration from θ_t:

1. g_t = ∇f(θ_t), f_t = f(θ_t) on the exact data path: the whole graph in one piece, or the p graph parts
   of ``halo_sync`` with its layer-by-layer halo exchange                      [on parts: all-reduce, P + 1]
   The forward pass's states are kept: block d's evaluations start from the state below its first layer.
2. ``global_pass``: one trust-region steepest-descent step δ = −Δ_t Λ⁻²g_t/‖Λ⁻¹g_t‖ (predicted decrease
   Δ_t‖Λ⁻¹g_t‖), tested with ρ; [∇f, f] at
   θ_t + δ is the gradient of what follows when it is accepted              [on parts: all-reduce, P + 1]
3. The local problem of block d (APTS's first-order consistent local objective)

       f̃_d(θ_d) = f(R_dᵀθ_d + (I − R_dᵀR_d)θ_t) + ⟨R_d∇f(θ_t) − ∇f_d(R_dθ_t), θ_d − R_dθ_t⟩

   Here the local loss f_d is f itself on the exact data path (the block sees every node), so the linear
   term vanishes and ∇f̃_d(R_dθ_t) = R_d g_t. m = ``local_steps`` steps from R_dθ_t, kept in
   - ``trust_region``: the ball ‖Λ_d(θ_d − R_dθ_t)‖ ≤ Δ_t/√D (the blocks are disjoint, so the assembled
     step stays in ‖Λ s‖ ≤ Δ_t), Λ = I (``tr_norm: euclidean``) or the Adam / AdaGrad scaling kept from
     the g_t of the outer iterations (``tr_norm: adam | adagrad``, :class:`~gnnddm.ddm.base.RegionScaling`),
     Λ_d its block's coordinates,
   - ``offo``: the box |θ_i − θ_t,i| ≤ κ|g_t,i|/w_t,i, w_t² = ς + Σ_{τ≤t} g_τ² (per coordinate, as ``asm``),
   - ``none``: nothing.
   ``local_method: trust_region`` (learning-rate free): each step is a steepest-descent trust-region step
   in the region's norm, θ_d − r·Λ_d⁻²g_d/‖Λ_d⁻¹g_d‖ (θ_d − r·g_d/‖g_d‖ when Λ = I), projected into the
   set, accepted when its decrease of f̃_d exceeds η₁ of the predicted −⟨g_d, step⟩; the local radius r
   starts at the block's share Δ_t/√D (``local_radius: share``; ``last``: at the radius the block's loop
   ended with in the previous outer iteration, at least ``radius_min``, if smaller), shrinks by γ_dec on a
   rejection and grows by γ_inc (up to the share) when ρ > η₂. ``local_method: solver``: m steps of
   ``local_solver`` (Adam, SGD, ``BoxAdagrad``, the ADAGB2 box method), each projected, then one forward
   pass for f̃_d at the end. Each evaluation runs the layers from the block's first layer on (work
   (L − start_d)/L of a gradient) and differentiates the block's parameters only.
   pred_d = f̃_d(R_dθ_t) − f̃_d(θ_d), the decrease block d achieved.
4. Assembly: s = Σ_d R_dᵀ(θ_d − R_dθ_t), predicted Σ_d pred_d.
5. ``trust_region``: ρ = (f_ref − f(θ_t + s)) / predicted, f_ref = max of f over the last W iterates
   (``nonmonotone_window`` W; W = 1: f_t, the monotone test); accepted if ρ > η₁, the radius updated as
   ``asm`` (:class:`~gnnddm.ddm.base.TrustRegion`). One forward pass    [on parts: all-reduce, 1]
   ``offo`` and ``none`` accept every step.
6. ``global_steps`` n: n steps of the global optimizer with ∇f (NAPTS's fine step)  [on parts: n × P + 1]

``hybrid`` (graph parts and parameter blocks at once): block d is solved on each graph part k separately, on
the subdomain loss f_k of its overlapping subdomain graph (inexact when the overlap is below the layers) with
APTS's consistency term, h_dk(θ_d) = c_k·f_k + ⟨R_d(g_t − c_k∇f_k(θ_t)), θ_d − R_dθ_t⟩, c_k = 1/ω_k, so
that ∇h_dk(R_dθ_t) = R_d g_t; s_d = Σ_k ω_k s_dk, pred_d = Σ_k ω_k pred_dk (ω_k = n_k/n), one all-reduce of
[s, pred] over the parts' ranks. Each (block, part) pair is timed as its own modelled rank, which also
evaluates ∇f_k(θ_t) (D copies of that work). A pair's evaluation runs the whole forward pass on the subdomain
and the backward pass down to the block: 1/3 + 2/3·(L − start_d)/L of the subdomain's gradient.

Where the blocks run. With one graph part the D blocks are modelled as D ranks that each hold the model and
the graph: steps 1, 2, 5 and 6 are work every rank does alike, each block's local solve is timed as its own
rank's, and the assembly is one all-gather of the P parameters among the D ranks. With p > 1 graph parts
the ranks are the parts, as for ``halo_sync``: every evaluation runs through the halo exchange and one
all-reduce, and the blocks are solved one after the other.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from gnnddm.ddm.base import (
    Algorithm,
    RegionScaling,
    ScaledTrustRegionConfig,
    SolverConfig,
    TrustRegion,
    feasible_set,
    flat_grad,
    global_pass,
)
from gnnddm.ddm.blocks import ParameterBlock, parameter_blocks
from gnnddm.ddm.halo_sync import fine_path, require_stages
from gnnddm.ddm.solvers import Ball, Box, BoxAdagrad, make_local_solver
from gnnddm.errors import ConfigError
from gnnddm.schema.fields import Invalid, at_least, one_of, redefault

LOCAL_METHODS = ("trust_region", "solver")
LOCAL_RADII = ("share", "last")


@dataclass
class APTSConfig(ScaledTrustRegionConfig):
    _target_: str = "gnnddm.ddm.apts.APTS"
    name: str = "apts"
    # a rejection halves both radii: the local loop cannot recover from a radius 10x too long in m = 3 tries
    # at 0.9 (docs/dd_benchmark.md, gamma_dec over three seeds)
    gamma_dec: float = redefault(ScaledTrustRegionConfig, "gamma_dec", 0.5)
    blocks: str | int | list[str] = "layers"
    local_steps: int = field(default=3, metadata=at_least(1))
    local_method: str = field(default="trust_region", metadata=one_of(*LOCAL_METHODS, noun="local method"))
    local_solver: SolverConfig = field(default_factory=SolverConfig)
    local_radius: str = field(default="share", metadata=one_of(*LOCAL_RADII, noun="local radius"))
    nonmonotone_window: int = field(default=1, metadata=at_least(1))
    global_pass: bool = False
    global_steps: int = field(default=0, metadata=at_least(0))
    hybrid: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.local_method == "trust_region" and self.globalization != "trust_region":
            raise Invalid("local_method", f"trust_region steps need globalization trust_region, got "
                                          f"{self.globalization!r}; use local_method=solver (e.g. BoxAdagrad)")
        if self.global_pass and self.globalization != "trust_region":
            raise Invalid("global_pass", f"needs globalization trust_region, got {self.globalization!r}")


class APTS(Algorithm):
    """Additive Schwarz in parameter space; see the module docstring for the update.

    Parameters
    ----------
    model, objective, comm, optimizer, config, **options
        See :class:`~gnnddm.ddm.base.Algorithm`; the keys of ``config`` (:class:`APTSConfig`) are:
    blocks : "layers", int or list of str
        The parameter blocks (:func:`~gnnddm.ddm.blocks.parameter_blocks`).
    local_steps : int
        m >= 1 local steps per block and outer iteration.
    local_method : {"trust_region", "solver"}
    local_solver : callable
        ``params -> torch.optim.Optimizer`` for ``local_method: solver``; one per block.
    local_radius : {"share", "last"}
        Where a block's local trust-region loop starts: at its share Δ_t/√D of the outer radius (``share``)
        or at the radius its previous loop ended with, at most that share (``last``).
    globalization : {"trust_region", "offo", "none"}
    eta1, eta2, gamma_dec, gamma_inc, radius0, radius_min, radius_max : float
        The trust region (as ``asm``).
    kappa, varsigma : float
        The OFFO box.
    tr_norm : {"euclidean", "adam", "adagrad"}
        The norm of the trust-region ball (as ``asm``).
    nonmonotone_window : int
        W >= 1 iterates whose largest f the trust-region test compares with (1: monotone).
    global_pass : bool
        One global trust-region steepest-descent step before the local solves.
    global_steps : int
        Steps of the global optimizer after the assembly (needs the ``optimizer`` group).
    hybrid : bool
        A modelled rank per (block, graph part) pair, each on its part's subdomain loss (module docstring).
    """

    name = "apts"
    Config = APTSConfig
    uses_full_batch = False
    layerwise_halo = True

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None,
                 config: APTSConfig | None = None, **options):
        super().__init__(model, objective, comm, optimizer, config=config, **options)
        c = self.config
        require_stages(model, "ddm=apts")
        self.blocks: list[ParameterBlock] = parameter_blocks(model, self.params, c.blocks)
        self.local_steps, self.local_method, self.globalization = c.local_steps, c.local_method, c.globalization
        self.tr = TrustRegion.of(c)
        self.kappa, self.varsigma = float(c.kappa), float(c.varsigma)
        self.window_size, self.global_pass, self.global_steps = c.nonmonotone_window, c.global_pass, c.global_steps
        self.hybrid = hybrid = c.hybrid
        if hybrid and objective.num_parts == 1:
            raise ConfigError("ddm.hybrid: a rank per (block, graph part) pair needs graph parts; set "
                              "partition.num_parts > 1 or ddm.hybrid=false")
        # one graph part: the blocks are the modelled ranks; several: the parts are (module docstring)
        self.block_ranks = objective.num_parts == 1
        self._block: int | None = None  # the block whose local solve is being timed
        self.path, self.inputs = fine_path(objective, comm, self._timed_part)
        self.work = self.path.work(objective.num_nodes)
        self.layers = int(model.num_layers)
        if self.local_method == "solver":
            factory = local_solver or c.local_solver.factory()
            for d, block in enumerate(self.blocks):
                params = self.block_params(block)
                for key in ([f"block{d}.part{k}" for k in self.parts] if hybrid else [f"block{d}"]):
                    self.solvers[key] = make_local_solver(factory, params)
        if self.global_steps:
            self._global_optimizer()
        self.local_radius = c.local_radius
        self.local_radii: dict[str, float] = {}  # local_radius=last: block (or block.part) -> radius it ended at
        self.window: list[float] = []
        self.accumulator: torch.Tensor | None = None  # OFFO: ς + Σ g², per coordinate
        self.scaling = RegionScaling(c.tr_norm, c.varsigma)  # Λ of the ball (tr_norm)

    # ------------------------------------------------------------------ timing and evaluations
    def _timed_part(self, k: int):
        """Part k's compute: its own with several parts; with one, the current block's rank or (outside the
        local solves) every rank's alike."""
        if not self.block_ranks:
            return self.timed(k)
        return self.timed(None if self._block is None else ("block", self._block))

    def _reduce(self, tensors: list[torch.Tensor]) -> None:
        """Sum over the graph parts' ranks (none with one part: every block rank computed the whole)."""
        if not self.block_ranks:
            self.comm.all_reduce_sum_(tensors)

    def _inputs(self, losses):
        """The data path's inputs (``inputs(k)``) on the batch of ``losses``."""
        return functools.partial(self.inputs, losses)

    def _full(self, losses, record: dict | None = None) -> tuple[float, torch.Tensor]:
        """f and ∇f at the current θ on the data path, on the batch of ``losses``; ``record`` keeps the
        forward pass's states."""
        self.model.zero_grad(set_to_none=True)
        f = self.path.loss_backward(self.model, self._inputs(losses), record=record)
        self.accounting.add_work(grad_evals=self.work)
        g = self.flat_grad()
        f = f.to(device=g.device, dtype=g.dtype)
        self._reduce([g, f])
        self.model.zero_grad(set_to_none=True)
        return float(f), g

    def _value(self, losses) -> float:
        """f at the current θ on the batch of ``losses``, forward only."""
        f = self.path.loss(self.model, self._inputs(losses)).to(self.params[0])
        self.accounting.add_work(loss_evals=self.work)
        self._reduce([f])
        return float(f)

    def cover(self, block: ParameterBlock) -> float:
        """The share of the layers one evaluation of ``block`` runs: (L − start) / L."""
        return (self.layers - block.start) / self.layers

    def block_value_grad(self, losses, block: ParameterBlock, prefix: dict | None, grad: bool = True):
        """f̃_d at the current θ (the block's parameters as they are) on the batch of ``losses`` and, with
        ``grad``, its gradient in the block's coordinates [P_d]: the layers from the block's first on, from
        the states ``prefix`` (of a forward pass on the same batch)."""
        start = block.start
        prefix = None if start == 0 else prefix
        if not grad:
            f = self.path.loss(self.model, self._inputs(losses), start=start, prefix=prefix).to(self.params[0])
            self.accounting.add_work(loss_evals=self.work * self.cover(block))
            self._reduce([f])
            return float(f), None
        self.model.zero_grad(set_to_none=True)
        f = self.path.loss_backward(self.model, self._inputs(losses), start=start, prefix=prefix)
        self.accounting.add_work(grad_evals=self.work * self.cover(block))
        g = flat_grad(self.block_params(block))
        f = f.to(device=g.device, dtype=g.dtype)
        self._reduce([g, f])
        self.model.zero_grad(set_to_none=True)
        return float(f), g

    @contextmanager
    def only(self, block: ParameterBlock):
        """The other blocks' parameters frozen (no gradient), and the block's solve timed as its rank's."""
        mine = set(block.params)
        frozen = [p for i, p in enumerate(self.params) if i not in mine]
        for p in frozen:
            p.requires_grad_(False)
        self._block = next((d for d, b in enumerate(self.blocks) if b is block), block.label)
        try:
            yield
        finally:
            self._block = None
            for p in frozen:
                p.requires_grad_(True)

    def block_params(self, block: ParameterBlock) -> list[torch.Tensor]:
        return [self.params[i] for i in block.params]

    def block_views(self, block: ParameterBlock, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` [P_d] cut into views shaped like the block's parameters."""
        out, at = [], 0
        for p in self.block_params(block):
            out.append(x[at : at + p.numel()].view_as(p))
            at += p.numel()
        return out

    def set_block(self, block: ParameterBlock, x: torch.Tensor) -> None:
        """The block's parameters set from its flat coordinates ``x`` [P_d]."""
        with torch.no_grad():
            for p, v in zip(self.block_params(block), self.block_views(block, x), strict=True):
                p.copy_(v)

    def prefix_of(self, block: ParameterBlock, record: dict) -> dict | None:
        """The states below the block's first layer, from a forward pass's ``record``."""
        return None if block.start == 0 else record[block.start - 1]

    # ------------------------------------------------------------------ local solves
    def constraint(self, theta: torch.Tensor, g: torch.Tensor) -> Ball | Box | None:
        """The feasible set of the assembled step around θ_t (a block takes its coordinates of a box and
        its share Δ_t/√D of the ball, measured in its coordinates of Λ)."""
        return feasible_set(self, theta, g, self.scaling.scale)

    def _restricted(self, constraint, block: ParameterBlock):
        if isinstance(constraint, Ball):
            scale = None if constraint.scale is None else constraint.scale[block.coords]
            return Ball(constraint.center[block.coords], constraint.radius / math.sqrt(len(self.blocks)), scale)
        if isinstance(constraint, Box):
            return Box(constraint.lo[block.coords], constraint.hi[block.coords])
        return None

    def local_trust_region(self, f0: float, g0: torch.Tensor, region: Ball, evaluate, key: str):
        """m steepest-descent trust-region steps inside ``region`` from its centre (module docstring, step 3)
        on the local function whose value and gradient at the centre are ``f0``, ``g0`` and elsewhere
        ``evaluate(x) -> (value, gradient)``. The first radius is the region's, or with ``local_radius: last``
        the one the loop of ``key`` (a block, or a block-part pair) ended with before (at least
        ``radius_min``), if smaller. Returns (θ_d, its value, accepted steps)."""
        remember = self.local_radius == "last"
        r = min(region.radius, self.local_radii.get(key, math.inf)) if remember else region.radius
        x, f, g = region.center.clone(), f0, g0
        accepted = 0
        for _ in range(self.local_steps):
            if r <= 0:
                break
            step, _ = Ball(x, r, region.scale).steepest(g)  # steepest descent in the region's norm
            if not bool(step.any()):
                break
            candidate = region.project(x + step)
            predicted = -float(torch.dot(g, candidate - x))
            if predicted <= 0:
                break
            f1, g1 = evaluate(candidate)
            rho = (f - f1) / predicted
            if rho > self.tr.eta1:
                x, f, g = candidate, f1, g1
                accepted += 1
                if rho > self.tr.eta2:
                    r = min(r * self.tr.gamma_inc, region.radius)
            else:
                r *= self.tr.gamma_dec
        if remember:  # kept above radius_min, as the outer radius, so that a run of rejections does not stall it
            self.local_radii[key] = max(r, self.tr.radius_min)
        return x, f, accepted

    def local_solver_steps(self, block: ParameterBlock, solver, x0: torch.Tensor, g0: torch.Tensor, region,
                           evaluate, value):
        """m steps of the local ``solver`` on the block's parameters from ``x0``, each projected into ``region``,
        the first with the gradient ``g0``, the others with ``evaluate(x) -> (value, gradient)``; then
        ``value(x)`` at the end. Returns (θ_d, its value)."""
        params = self.block_params(block)
        if isinstance(solver, BoxAdagrad):
            if isinstance(region, Box):
                solver.set_box(self.block_views(block, region.lo), self.block_views(block, region.hi))
            else:
                solver.set_box(None, None)
        project = region is not None and not (isinstance(solver, BoxAdagrad) and isinstance(region, Box))
        self.set_block(block, x0)
        for i in range(self.local_steps):
            g = g0 if i == 0 else evaluate(self.block_flat(block))[1]
            for p, v in zip(params, self.block_views(block, g), strict=True):
                p.grad = v.clone()
            solver.step()
            solver.zero_grad(set_to_none=True)
            if project:
                self.set_block(block, region.project(self.block_flat(block)))
        x = self.block_flat(block)
        return x, value(x)

    def block_flat(self, block: ParameterBlock) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.block_params(block)])

    # ------------------------------------------------------------------ the outer iteration
    def _step(self, losses) -> dict[str, float]:
        stats: dict[str, float] = {}
        theta = self.flat()
        record: dict = {}
        f, g = self._full(losses, record)
        stats["loss"] = f
        self.scaling.update(g)
        if self.global_pass:
            theta, f, g, record = self._global_pass(losses, theta, f, g, record, stats)
        self.window = [*self.window, f][-self.window_size:]
        constraint = self.constraint(theta, g)
        s = torch.zeros_like(theta)
        predicted, local_accepted = 0.0, 0
        per_part = self._part_gradients(losses) if self.hybrid else {}
        for d, block in enumerate(self.blocks):
            region = self._restricted(constraint, block)
            x0 = theta[block.coords]
            with self.only(block):
                if self.hybrid:
                    s_d, pred_d, acc = self._pair_solves(losses, d, block, region, x0, g, per_part)
                else:
                    s_d, pred_d, acc = self._block_solve(losses, d, block, region, x0, f, g, record)
                self.set_block(block, x0)
            s[block.coords] = s_d
            predicted += pred_d
            local_accepted += acc
        if self.hybrid:  # this rank's parts' weighted corrections and predictions, summed over the ranks
            pred = torch.tensor([predicted], dtype=s.dtype, device=s.device)
            self.comm.all_reduce_sum_([s, pred])
            predicted = float(pred)
        record.clear()
        if self.block_ranks and len(self.blocks) > 1:
            # the block ranks gather each other's corrections; modelled here, in one process, directly
            self.accounting.collective(s.numel() * s.element_size(), kind="all_gather", parties=len(self.blocks))
        stats.update(step_norm=float(torch.linalg.vector_norm(s)), predicted=predicted)
        if self.scaling.scaled:
            stats["step_tr_norm"] = self.scaling.norm_of(s)
        if self.local_method == "trust_region":
            solves = len(self.blocks) * (len(self.parts) if self.hybrid else 1)
            stats["local_accepted"] = local_accepted / (solves * self.local_steps)
        if self.globalization == "trust_region":
            self.set_flat(theta + s)
            f_new = self._value(losses)
            reference = max(self.window)
            rho, accepted = self.tr.update(reference - f_new, predicted)
            self.set_flat(theta + s if accepted else theta)
            stats.update(rho=rho, accepted=float(accepted), tr_radius=self.tr.radius, actual=f - f_new)
        else:
            self.set_flat(theta + s)
            stats["accepted"] = 1.0
        for _ in range(self.global_steps):
            _, g = self._full(losses)
            self.optimizer_step(g)
        return stats

    def _block_solve(self, losses, d: int, block: ParameterBlock, region, x0: torch.Tensor, f: float,
                     g: torch.Tensor, record: dict):
        """Block d on the whole data path from the kept states, on the batch of ``losses``: (s_d, pred_d,
        accepted local steps)."""
        prefix = self.prefix_of(block, record)

        def evaluate(x):
            self.set_block(block, x)
            return self.block_value_grad(losses, block, prefix)

        def value(x):
            self.set_block(block, x)
            return self.block_value_grad(losses, block, prefix, grad=False)[0]

        if self.local_method == "trust_region":
            x, f_d, accepted = self.local_trust_region(f, g[block.coords], region, evaluate, f"block{d}")
        else:
            x, f_d = self.local_solver_steps(block, self.solvers[f"block{d}"], x0, g[block.coords], region,
                                             evaluate, value)
            accepted = 0
        return x - x0, f - f_d, accepted

    def _part_gradients(self, losses) -> dict[int, tuple[float, torch.Tensor]]:
        """``ddm.hybrid``: f_k(θ_t) and ∇f_k(θ_t) of this rank's parts on their subdomain graphs, on the batch
        of ``losses``."""
        out = {}
        for k in self.parts:
            # every pair rank (d, k) evaluates its part's gradient: D copies of the work, on each pair's clock
            start = time.perf_counter()
            out[k] = self._loss_grad(self._local(losses, k), copies=len(self.blocks))
            seconds = time.perf_counter() - start
            for d in range(len(self.blocks)):
                self.accounting.add_compute(("pair", d, k), seconds)
        self.model.zero_grad(set_to_none=True)
        return out

    def pair_function(self, losses, block: ParameterBlock, k: int, x0: torch.Tensor, g: torch.Tensor,
                      per_part: dict):
        """``ddm.hybrid``: block d's local function on part k, on the batch of ``losses``,
        h_dk(θ_d) = c_k·f_k + ⟨R_d(g_t − c_k∇f_k(θ_t)), θ_d − R_dθ_t⟩ with c_k = 1/ω_k, so that
        ∇h_dk(R_dθ_t) = R_d g_t even where the subdomain is inexact (overlap below the layers).
        Returns (h_dk(R_dθ_t), evaluate(x) -> (h, ∇h), value(x) -> h); the block's parameters are left at x."""
        c = 1.0 / self.objective.weight(k)
        f_k, g_k = per_part[k]
        corr = g[block.coords] - c * g_k[block.coords]
        loss = self._local(losses, k)
        cover = 1.0 / 3.0 + 2.0 / 3.0 * self.cover(block)  # the whole forward, the backward down to the block

        def evaluate(x):
            self.set_block(block, x)
            self.model.zero_grad(set_to_none=True)
            v = loss(self.model)
            v.backward()
            self.accounting.add_work(grad_evals=loss.work * cover)
            grad = flat_grad(self.block_params(block))
            self.model.zero_grad(set_to_none=True)
            return c * float(v.detach()) + float(torch.dot(corr, x - x0)), c * grad + corr

        def value(x):
            self.set_block(block, x)
            with torch.no_grad():
                v = float(loss(self.model))
            self.accounting.add_work(loss_evals=loss.work)
            return c * v + float(torch.dot(corr, x - x0))

        return c * f_k, evaluate, value

    def _pair_solves(self, losses, d: int, block: ParameterBlock, region, x0: torch.Tensor, g: torch.Tensor,
                     per_part: dict):
        """``ddm.hybrid``: block d on each of this rank's parts (:meth:`pair_function`), each timed as its own
        rank's. Returns (Σ_k ω_k s_dk, Σ_k ω_k pred_dk, accepted local steps) over this rank's parts."""
        s_d, predicted, accepted = torch.zeros_like(x0), 0.0, 0
        for k in self.parts:
            omega = self.objective.weight(k)
            with self.timed(("pair", d, k)):
                h0, evaluate, value = self.pair_function(losses, block, k, x0, g, per_part)
                if self.local_method == "trust_region":
                    x, h, acc = self.local_trust_region(h0, g[block.coords], region, evaluate, f"block{d}.part{k}")
                    accepted += acc
                else:
                    x, h = self.local_solver_steps(block, self.solvers[f"block{d}.part{k}"], x0, g[block.coords],
                                                   region, evaluate, value)
            s_d += omega * (x - x0)
            predicted += omega * (h0 - h)
        return s_d, predicted, accepted

    def _global_pass(self, losses, theta, f, g, record, stats):
        """One trust-region steepest-descent step θ − Δ Λ⁻²g/‖Λ⁻¹g‖ (θ − Δ g/‖g‖ in the Euclidean norm),
        tested against the window's reference with the predicted decrease Δ‖Λ⁻¹g‖."""
        def evaluate():
            record1: dict = {}
            f1, g1 = self._full(losses, record1)
            return f1, (f1, g1, record1)

        reference = max([*self.window, f][-self.window_size:])
        accepted = global_pass(self, theta, g, reference, evaluate, stats)
        if accepted is None:
            return theta, f, g, record
        trial, (f1, g1, record1) = accepted
        return trial, f1, g1, record1

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict:
        return {"radius": self.tr.radius, "window": list(self.window), "accumulator": self.accumulator,
                "scaling": self.scaling.state_dict(), "local_radii": dict(self.local_radii)}

    def _load_extra_state(self, state: dict) -> None:
        self.tr.radius = float(state["radius"])
        self.window = [float(v) for v in state["window"]]
        acc = state["accumulator"]
        self.accumulator = None if acc is None else acc.clone()
        self.scaling.load_state_dict(state.get("scaling"))  # absent from checkpoints of older runs
        self.local_radii = {k: float(v) for k, v in state.get("local_radii", {}).items()}

    def __repr__(self) -> str:
        return (f"APTS(blocks={[b.label for b in self.blocks]}, parts={self.num_parts}, params={self.num_params}, "
                f"local={self.local_method} x {self.local_steps})")
