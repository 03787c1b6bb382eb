"""What every training algorithm shares: parameters as one flat vector, timed and accounted subdomain
work, local solves on a local model, the reduction of subdomain gradients, and checkpoint state.

An algorithm performs one outer iteration per :meth:`Algorithm.step` on the batch it is given and
updates the model parameters in place. It computes only the subdomains of its rank
(``comm.parts_of_rank``), sums their contributions and calls one collective per reduction, so the same
code runs in one process and across processes.

The batch is data passed in, never state: ``step(batch)`` makes the objective's per-batch losses
(:meth:`Objective.on <gnnddm.ddm.objective.Objective.on>`, a
:class:`~gnnddm.ddm.objective.BatchLosses`) and hands them down as the argument ``losses`` of ``_step``
and of every method below it that evaluates a loss; they are dropped when the step returns. Neither the
algorithm nor the objective keeps a batch between steps (what a step carries over, such as ``asm``'s
pending trial, is parameters and decreases, evaluated on the next step's batch).

Local models. A local solve runs ``steps`` steps of a solver on

    h(θ) = scale · loss(θ) + ⟨corr, θ − θ_start⟩

from θ_start, projecting onto a feasible set (trust-region ball or box) after every step. The constant
of the linear term does not matter for the iterates; predicted decreases use
h(θ_start) − h(θ_end) = scale·(loss(θ_start) − loss(θ_end)) − ⟨corr, θ_end − θ_start⟩.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from gnnddm.ddm.solvers import Ball, Box, BoxAdagrad, make_local_solver, scaled_norm
from gnnddm.distributed.accounting import Accounting
from gnnddm.errors import ConfigError
from gnnddm.models.execution import compile_seconds
from gnnddm.schema.fields import (
    REQUIRED,
    Component,
    Invalid,
    above,
    at_least,
    between,
    check_args,
    configured,
    one_of,
    spec,
)

GLOBALIZATIONS = ("trust_region", "offo", "none")
#: the norms the trust-region ball can be measured in (``ddm.tr_norm``, :class:`RegionScaling`)
TR_NORMS = ("euclidean", "adam", "adagrad")
#: the second-moment decay and offset of ``tr_norm: adam`` (torch.optim.Adam's defaults)
ADAM_BETA2, ADAM_EPS = 0.999, 1.0e-8


# ------------------------------------------------------------------------------------------ schemas
# Each algorithm class names its config schema in ``Config`` (a dataclass of gnnddm.schema): the ``ddm``
# section of a composed config is checked against the schema of its ``_target_`` class before any work.
@dataclass
class SolverConfig:
    """A local solver node: ``_target_`` an optimizer class taking ``(params, lr, ...)``, ``_partial_: true``;
    its other keys are the class's options (checked by the class when it is built)."""

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = field(default=1.0e-3, metadata=above(0.0, "a learning rate "))

    open: ClassVar[bool] = True

    def factory(self):
        """``params -> torch.optim.Optimizer``: the class of ``_target_`` with ``lr`` (a Python caller's
        solver when it passes none; a configured run passes the node built with all its keys, see
        :func:`gnnddm.config.build_component`)."""
        from hydra.utils import get_class

        return functools.partial(get_class(self._target_), lr=self.lr)


@dataclass
class AlgorithmConfig(Component):
    """The keys of every ``ddm`` option: ``_target_`` (the class), ``_partial_: true``, ``name`` (its label)."""

    name: str = REQUIRED


@dataclass
class TrustRegionConfig(AlgorithmConfig):
    """The trust region's keys (APTS defaults) and the OFFO box's κ and ς."""

    globalization: str = field(default="trust_region", metadata=one_of(*GLOBALIZATIONS, noun="globalization"))
    eta1: float = field(default=0.25, metadata=between(0.0, 1.0))
    eta2: float = field(default=0.75, metadata=between(0.0, 1.0))
    gamma_dec: float = field(default=0.9, metadata=between(0.0, 1.0, low_open=True))
    gamma_inc: float = field(default=1.2, metadata=at_least(1.0))
    radius0: float = field(default=0.1, metadata=above(0.0))
    radius_min: float = field(default=1.0e-4, metadata=at_least(0.0))
    radius_max: float = field(default=10.0, metadata=above(0.0))
    kappa: float = field(default=1.0, metadata=above(0.0))
    varsigma: float = field(default=1.0e-2, metadata=above(0.0))

    def __post_init__(self):
        if self.eta2 < self.eta1:
            raise Invalid("eta2", f"must be >= ddm.eta1 = {self.eta1}, got {self.eta2}")
        if self.radius_max < self.radius_min:
            raise Invalid("radius_max", f"must be >= ddm.radius_min = {self.radius_min}, got {self.radius_max}")
        if not self.radius_min <= self.radius0 <= self.radius_max:
            raise Invalid("radius0", f"must be in [radius_min, radius_max] = [{self.radius_min}, "
                                     f"{self.radius_max}], got {self.radius0}")


@dataclass
class ScaledTrustRegionConfig(TrustRegionConfig):
    """The trust region's keys and the norm its ball is measured in (the Schwarz methods' ``ddm.tr_norm``,
    :class:`RegionScaling`)."""

    tr_norm: str = field(default="euclidean", metadata=one_of(*TR_NORMS, noun="trust-region norm"))

    def __post_init__(self):
        super().__post_init__()
        if self.tr_norm != "euclidean" and self.globalization != "trust_region":
            raise Invalid("tr_norm", f"measures the ball of globalization trust_region, got globalization "
                                     f"{self.globalization!r}; set ddm.tr_norm=euclidean")


# ---------------------------------------------------------------------------------------- validation
def offo_box(accumulator: torch.Tensor | None, g: torch.Tensor, kappa: float, varsigma: float):
    """One update of the OFFO (RB-AdaGrad) box: ``(w², half)`` with the accumulator w² = ς + Σ_τ g_τ²
    (started at ς when None, else updated in place) and the box half-widths κ·|g| / w."""
    if accumulator is None:
        accumulator = torch.full_like(g, varsigma)
    accumulator += g * g
    return accumulator, kappa * g.abs() / torch.sqrt(accumulator)


class RegionScaling:
    """The diagonal scaling Λ of a trust region measured in an optimizer's norm (``ddm.tr_norm``).

    The ball is {θ : ‖Λ(θ − θ_t)‖₂ ≤ Δ_t}. Λ is kept from the global gradient g_t of each outer iteration
    (the same on every rank, after its all-reduce), one :meth:`update` per iteration before the ball is
    used, per coordinate i:

    - ``adagrad``: d_i = w_t,i = sqrt(ς + Σ_{τ≤t} g_τ,i²), the OFFO box's accumulator (ς = ``ddm.varsigma``);
    - ``adam``: v_t = β₂ v_{t−1} + (1 − β₂) g_t², d_i = sqrt(v_t,i / (1 − β₂ᵗ)) + ε (bias-corrected second
      moment, β₂ = 0.999, ε = 1e-8 as torch.optim.Adam);

    and Λ = diag(sqrt(d / mean(d))): the ball is {s : sᵀ M s ≤ Δ²} in the optimizer's own metric M = diag(d)
    (normalised to unit mean), so that its steepest-descent step −Δ·Λ⁻²g/‖Λ⁻¹g‖ is along the optimizer's
    preconditioned direction g/d (AdaGrad's g/w; Adam's without momentum). Λ = diag(d) instead would make the
    steepest step g/d², which for Adam (d ≈ |g| at first) is sign(g)/|g|: longest on the coordinates with
    the smallest gradients. The normalisation keeps Δ in the units of θ: a uniform d gives the Euclidean
    ball (Λ has unit RMS), and a step of the optimizer, |s_i| ≈ lr, has ‖Λ s‖ ≈ lr·√P. ``euclidean``: no
    Λ (:attr:`scale` is None).
    """

    def __init__(self, norm: str, varsigma: float):
        if norm not in TR_NORMS:
            raise ConfigError(f"ddm.tr_norm: expected one of {list(TR_NORMS)}, got {norm!r}")
        self.norm, self.varsigma = norm, float(varsigma)
        self.moment: torch.Tensor | None = None  # adagrad: ς + Σ g²; adam: v_t
        self.count = 0
        #: Λ's diagonal [P] after the last update (None: Euclidean, or no update yet)
        self.scale: torch.Tensor | None = None

    @property
    def scaled(self) -> bool:
        return self.norm != "euclidean"

    def update(self, g: torch.Tensor) -> None:
        """Take the outer iteration's global gradient g_t into Λ (nothing for ``euclidean``)."""
        if not self.scaled:
            return
        g2 = g * g
        self.count += 1
        if self.norm == "adagrad":
            self.moment = torch.full_like(g, self.varsigma) + g2 if self.moment is None else self.moment + g2
            d = torch.sqrt(self.moment)
        else:
            previous = torch.zeros_like(g) if self.moment is None else self.moment
            self.moment = ADAM_BETA2 * previous + (1 - ADAM_BETA2) * g2
            d = torch.sqrt(self.moment / (1 - ADAM_BETA2**self.count)) + ADAM_EPS
        self.scale = torch.sqrt(d / torch.mean(d))  # M = d / mean(d), Λ = M^½

    def ball(self, center: torch.Tensor, radius: float) -> Ball:
        """The ball ‖Λ(θ − center)‖ ≤ radius."""
        return Ball(center, radius, self.scale)

    def norm_of(self, s: torch.Tensor) -> float:
        """‖Λ s‖ (‖s‖ for ``euclidean``)."""
        return scaled_norm(s, self.scale)

    def state_dict(self) -> dict:
        return {"moment": self.moment, "count": self.count, "scale": self.scale}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore :meth:`state_dict`'s values (None: a checkpoint of a run without a scaling)."""
        state = state or {}
        self.moment, self.count, self.scale = state.get("moment"), int(state.get("count", 0)), state.get("scale")


def flat_grad(params) -> torch.Tensor:
    """The gradients of ``params`` as one vector (zeros where a parameter has none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


# ---------------------------------------------------------------------------------------- trust region
_TR = {key: default for key, (_, _, default) in spec(TrustRegionConfig).items()}


@dataclass
class TrustRegion:
    """Radius update of the trust-region globalisation (APTS defaults).

    ρ = actual / predicted decrease; the step is accepted if ρ > η₁; the radius shrinks by γ_dec on
    rejection and grows by γ_inc when ρ > η₂, and is then clamped into [radius_min, radius_max]
    (APTS's min/max radius). A non-positive predicted decrease is a rejection.

    Raises
    ------
    ConfigError
        A parameter out of range, naming its ``ddm.`` key: negative ``radius_min``, ``radius_max`` below
        ``radius_min``, ``radius0`` outside [radius_min, radius_max], η₁ > η₂, ...
    """

    # the defaults are TrustRegionConfig's (ddm.radius0, ddm.eta1, ...): one definition
    radius: float = _TR["radius0"]
    eta1: float = _TR["eta1"]
    eta2: float = _TR["eta2"]
    gamma_dec: float = _TR["gamma_dec"]
    gamma_inc: float = _TR["gamma_inc"]
    radius_min: float = _TR["radius_min"]
    radius_max: float = _TR["radius_max"]

    def __post_init__(self):
        check_args(TrustRegionConfig, "ddm", radius0=self.radius, eta1=self.eta1, eta2=self.eta2,
                   gamma_dec=self.gamma_dec, gamma_inc=self.gamma_inc, radius_min=self.radius_min,
                   radius_max=self.radius_max)
        self.radius = float(self.radius)

    @classmethod
    def of(cls, config: TrustRegionConfig) -> TrustRegion:
        """The trust region of an algorithm's validated ``ddm`` section."""
        return cls(config.radius0, config.eta1, config.eta2, config.gamma_dec, config.gamma_inc,
                   radius_min=config.radius_min, radius_max=config.radius_max)

    def update(self, actual: float, predicted: float) -> tuple[float, bool]:
        """(ρ, accepted) for the given decreases; updates :attr:`radius`."""
        rho = actual / predicted if predicted > 0 else float("-inf")
        accepted = rho > self.eta1
        if not accepted:
            self.radius *= self.gamma_dec
        elif rho > self.eta2:
            self.radius *= self.gamma_inc
        self.radius = min(max(self.radius, self.radius_min), self.radius_max)
        return rho, accepted


def feasible_set(algorithm, center: torch.Tensor, g: torch.Tensor, scale: torch.Tensor | None = None
                 ) -> Ball | Box | None:
    """The feasible set of a step around ``center`` for an algorithm with ``globalization``, ``tr``,
    ``accumulator``, ``kappa`` and ``varsigma``: the trust-region ball (‖Λ(θ − center)‖ ≤ Δ with Λ =
    ``scale``, None: the identity), the OFFO box (its accumulator updated with ``g``), or None."""
    if algorithm.globalization == "trust_region":
        return Ball(center, algorithm.tr.radius, scale)
    if algorithm.globalization == "offo":
        algorithm.accumulator, half = offo_box(algorithm.accumulator, g, algorithm.kappa, algorithm.varsigma)
        return Box(center - half, center + half)
    return None


def global_pass(algorithm, theta: torch.Tensor, g: torch.Tensor, reference: float, evaluate, stats: dict):
    """APTS's global pass for an algorithm with ``tr``, ``scaling`` and ``set_flat``: the step to the
    boundary of the trust region along steepest descent in its norm, d = −Δ Λ⁻²g/‖Λ⁻¹g‖ (−Δ g/‖g‖ when
    Euclidean), tested with ρ = (reference − f(θ + d)) / (Δ‖Λ⁻¹g‖).

    ``evaluate()`` runs at θ + d (the model's parameters) and returns ``(f(θ + d), result)``. Returns
    ``(θ + d, result)`` when the step is accepted; None otherwise, the parameters back at θ (and for a zero
    gradient, without evaluating). ``stats`` gets ``global_rho`` and ``global_accepted``.
    """
    step, predicted = algorithm.scaling.ball(theta, algorithm.tr.radius).steepest(g)
    if predicted == 0:
        return None
    trial = theta + step
    algorithm.set_flat(trial)
    f1, result = evaluate()
    rho, accepted = algorithm.tr.update(reference - f1, predicted)
    stats.update(global_rho=rho, global_accepted=float(accepted))
    if accepted:
        return trial, result
    algorithm.set_flat(theta)
    return None


# ---------------------------------------------------------------------------------------- local model
class LocalModel:
    """The local model h(θ) = scale·loss(θ) + ⟨corr, θ − anchor⟩, differentiable in the parameters.

    ``loss`` is a subdomain or coarse :class:`~gnnddm.ddm.objective.Loss` bound to the step's batch
    (:class:`~gnnddm.ddm.objective.BoundLoss`, ``loss.on(losses)``: a function of the model with its
    ``work``); ``corr`` and ``anchor`` are given per parameter tensor (None: no linear term).
    :attr:`last_loss` holds the unscaled loss value of the last evaluation. A local model is made within
    one outer iteration and dropped with it.
    """

    def __init__(self, params, loss_fn, scale: float = 1.0, corr=None, anchor=None):
        self.params, self.loss_fn, self.scale = params, loss_fn, float(scale)
        self.work = float(loss_fn.work)  # an evaluation of h costs one of its loss
        if (corr is None) != (anchor is None):
            raise ValueError("the linear term needs both corr and anchor")
        self.corr, self.anchor = corr, anchor
        self.last_loss: float | None = None

    def linear(self) -> torch.Tensor | float:
        """⟨corr, θ − anchor⟩ at the current parameters (differentiable)."""
        if self.corr is None:
            return 0.0
        return sum(((p - a) * c).sum() for p, a, c in zip(self.params, self.anchor, self.corr, strict=True))

    def linear_at(self, theta: torch.Tensor) -> float:
        """⟨corr, θ − anchor⟩ at a flat parameter vector."""
        if self.corr is None:
            return 0.0
        corr = torch.cat([c.reshape(-1) for c in self.corr])
        anchor = torch.cat([a.reshape(-1) for a in self.anchor])
        return float(torch.dot(corr, theta - anchor))

    def __call__(self, model) -> torch.Tensor:
        loss = self.loss_fn(model)
        self.last_loss = float(loss.detach())
        return self.scale * loss + self.linear()

    def backward(self, model) -> float:
        """h at the current parameters, with ∇h accumulated into the parameters' ``.grad`` (zero before)."""
        value_grad = getattr(self.loss_fn, "value_grad", None)
        if value_grad is None:
            value = self(model)
            value.backward()
            return float(value.detach())
        loss, grad = value_grad(model)
        self.last_loss = float(loss)
        theta, i = [], 0
        for p, c in zip(self.params, self.corr or [None] * len(self.params), strict=True):
            g = grad[i : i + p.numel()].view_as(p) * self.scale
            i += p.numel()
            p.grad = g if c is None else g + c
            theta.append(p.detach().reshape(-1))
        return self.scale * self.last_loss + self.linear_at(torch.cat(theta))


# ---------------------------------------------------------------------------------------- base class
class Algorithm:
    """Base of the training algorithms (one outer iteration per :meth:`step`).

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    objective : Objective
        The losses' structure; :meth:`step` evaluates them on its batch (``objective.on(batch)``).
    comm : Communicator
        Its :class:`~gnnddm.distributed.accounting.Accounting` (given to it at construction) is what the
        algorithm accounts its work and collectives in.
    optimizer : callable, optional
        ``optimizer(params) -> torch.optim.Optimizer``: the global optimizer (the ``optimizer`` group).
    config : Config, optional
        The algorithm's parameters: its validated ``ddm`` section (an instance of :attr:`Config`, as
        :func:`gnnddm.ddm.build_algorithm` passes it).
    **options
        Instead of ``config``: its keys as keyword arguments (``ASM(model, objective, comm, local_steps=5)``),
        checked against :attr:`Config`, which gives the rest their defaults. The constructors of the
        algorithms write no default of their own.
    """

    name = "algorithm"
    #: the schema of the algorithm's ``ddm`` section (a dataclass; see AlgorithmConfig)
    Config: ClassVar[type] = AlgorithmConfig
    #: whether a step needs the full-graph batch (global or coarse losses); False: the rows of the
    #: rank's own subdomains (``Objective.local_nodes``) are enough
    uses_full_batch = True
    #: whether the algorithm trains the whole graph in one process (no subdomains: one part, no overlap,
    #: one rank), as ``global`` does
    whole_graph = False
    #: whether it exchanges halos before every message-passing layer, so that a one-hop overlap is exact
    layerwise_halo = False

    @classmethod
    def coarse_levels(cls, data, config, graph_builder=None) -> list:
        """The coarse levels the algorithm's objective needs, from its validated ``ddm`` section ``config``
        (none here); the objective is built with them once (:func:`gnnddm.ddm.build_objective`)."""
        return []

    def __init__(self, model, objective, comm, optimizer=None, *, config=None, **options):
        #: the validated ``ddm`` section (an instance of :attr:`Config`): ``config`` as given, or
        #: :attr:`Config` parsed from a Python caller's keyword ``options`` (the schema's defaults for the rest)
        self.config = configured(self.Config, "ddm", config, options)
        self.model = model
        self.objective = objective
        self.comm = comm
        self.accounting: Accounting = comm.accounting
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.num_params = sum(p.numel() for p in self.params)
        # subdomains without owned nodes have f_k = 0 and take no part
        self.parts = tuple(k for k in comm.parts_of_rank if objective.num_owned[k] > 0)
        self.num_parts = sum(1 for k in range(int(comm.num_parts)) if objective.num_owned[k] > 0)
        self.copies = int(getattr(comm, "redundant_copies", 1))
        self._optimizer_factory = optimizer
        self.optimizer = None
        self.solvers: dict[str, torch.optim.Optimizer] = {}
        self.iteration = 0

    def run_in_blocks(self, count: int, halo: str = "model") -> None:
        """Run the algorithm's whole-graph work over ``count`` cache-sized blocks (``trainer.blocks``, reached
        by ``halo``: ``trainer.block_halo``, :mod:`gnnddm.ddm.blocked`); 1: at once. Only ``global`` has
        whole-graph work to block; the others refuse a count above 1, naming the key."""
        if count > 1:
            raise ConfigError(f"trainer.blocks={count}: ddm={self.name} computes its subdomains, each at once; "
                              "cache-blocked execution is that of ddm=global (set trainer.blocks=1 or auto)")

    # ------------------------------------------------------------------ the outer iteration
    def step(self, batch) -> dict[str, float]:
        """One outer iteration on ``batch``; returns statistics (``loss`` = f(θ_t) on the batch where known).

        ``batch`` is a :class:`~gnnddm.tasks.Batch` of the full graph, or of ``objective.local_nodes`` when
        the algorithm does not :attr:`use the full batch <uses_full_batch>`. Its per-batch losses
        (``objective.on(batch)``) are passed to :meth:`_step` and dropped when the step returns.
        """
        losses = self.objective.on(batch)
        stats = self._step(losses)
        self.accounting.end_iteration()
        self.iteration += 1
        return {k: float(v) for k, v in stats.items()}

    def _step(self, losses) -> dict[str, float]:
        """The outer iteration on the batch of ``losses`` (a :class:`~gnnddm.ddm.objective.BatchLosses`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ set-up helpers
    def _global_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer_factory is None:
            raise ConfigError(f"{self.name} needs the global optimizer (config group 'optimizer')")
        if self.optimizer is None:
            self.optimizer = self._optimizer_factory(self.params)
        return self.optimizer

    def _make_solver(self, name: str, factory, key: str = "ddm.local_solver") -> torch.optim.Optimizer:
        self.solvers[name] = make_local_solver(factory, self.params, key)
        return self.solvers[name]

    # ------------------------------------------------------------------ flat parameter vector
    def flat(self) -> torch.Tensor:
        """θ as one vector (a copy)."""
        return torch.nn.utils.parameters_to_vector(self.params).detach()

    def split(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """``vec`` cut into views shaped like the parameters."""
        out, i = [], 0
        for p in self.params:
            out.append(vec[i : i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def set_flat(self, vec: torch.Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(self.params, self.split(vec), strict=True):
                p.copy_(v)

    def flat_grad(self) -> torch.Tensor:
        return flat_grad(self.params)

    def _set_grad(self, vec: torch.Tensor) -> None:
        for p, v in zip(self.params, self.split(vec), strict=True):
            p.grad = v.detach().clone()

    # ------------------------------------------------------------------ timed, accounted work
    @contextmanager
    def timed(self, part: int | None):
        """Measure the enclosed compute as subdomain ``part``'s (None: work every rank does alike); the seconds
        spent compiling model stages in it (``trainer.compile``) are left out, reported apart by the trainer."""
        start, compiling = time.perf_counter(), compile_seconds()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start - (compile_seconds() - compiling)
            if part is None:
                self.accounting.add_common(seconds)
            else:
                self.accounting.add_compute(part, seconds)

    def _loss_grad(self, loss_fn, copies: int = 1) -> tuple[float, torch.Tensor]:
        """loss_fn(model) and its gradient (flat), accounted as one forward+backward of its ``work``.

        ``loss_fn``: a loss bound to the step's batch (``loss.on(losses)``) or a :class:`LocalModel`.
        """
        self.model.zero_grad(set_to_none=True)
        if isinstance(loss_fn, LocalModel):
            value = loss_fn.backward(self.model)
            self.accounting.add_work(grad_evals=loss_fn.work * copies)
            return value, self.flat_grad()
        value_grad = getattr(loss_fn, "value_grad", None)
        if value_grad is not None:
            value, grad = value_grad(self.model)
            self.accounting.add_work(grad_evals=loss_fn.work * copies)
            return float(value), grad
        loss = loss_fn(self.model)
        loss.backward()
        self.accounting.add_work(grad_evals=loss_fn.work * copies)
        return float(loss.detach()), self.flat_grad()

    def _loss_value(self, loss_fn, copies: int = 1) -> float:
        """loss_fn(model) without gradient, accounted as one forward of its ``work``."""
        with torch.no_grad():
            value = float(loss_fn(self.model))
        self.accounting.add_work(loss_evals=loss_fn.work * copies)
        return value

    def _local(self, losses, k: int):
        """f_k on the batch of ``losses``, bound (:meth:`~gnnddm.ddm.objective.Loss.on`)."""
        return self.objective.part(k).on(losses)

    def subdomain_gradients(self, losses, keep: bool = False):
        """g = Σ_k ∇f_k(θ) and f = Σ_k f_k(θ) at the current θ on the batch of ``losses``, with one
        all-reduce of [g, f].

        Returns ``(g, f, per_part)`` where ``per_part[k] = (f_k, ∇f_k)`` for this rank's parts when
        ``keep`` (the first-order-coherence terms), else an empty dict.
        """
        g, f, per_part = self.local_gradients(losses, keep)
        self.comm.all_reduce_sum_([g, f])
        self.model.zero_grad(set_to_none=True)
        return g, float(f), per_part

    def local_gradients(self, losses, keep: bool = False):
        """Σ_k ∇f_k(θ) and [Σ_k f_k(θ)] over this rank's parts on the batch of ``losses``, not yet reduced:
        ``(g, f [1], per_part)`` with ``per_part`` as in :meth:`subdomain_gradients`."""
        theta = self.flat()
        g = torch.zeros_like(theta)
        f = torch.zeros(1, dtype=theta.dtype, device=theta.device)
        per_part = {}
        for k in self.parts:
            with self.timed(k):
                fk, gk = self._loss_grad(self._local(losses, k))
                g += gk
                f += fk
            if keep:
                per_part[k] = (fk, gk)
        return g, f, per_part

    def subdomain_losses(self, losses) -> float:
        """f = Σ_k f_k(θ) at the current θ on the batch of ``losses`` (forward only), with one all-reduce of
        one number."""
        f = self.local_losses(losses)
        self.comm.all_reduce_sum_([f])
        return float(f)

    def local_losses(self, losses) -> torch.Tensor:
        """[Σ_k f_k(θ)] over this rank's parts on the batch of ``losses`` (forward only), not yet reduced."""
        theta = self.flat()
        f = torch.zeros(1, dtype=theta.dtype, device=theta.device)
        for k in self.parts:
            with self.timed(k):
                f += self._loss_value(self._local(losses, k))
        return f

    def local_model(self, loss_fn, scale: float = 1.0, corr=None, anchor=None) -> LocalModel:
        """h(θ) = scale·loss(θ) + ⟨corr, θ − anchor⟩ on this algorithm's parameters; ``loss_fn`` bound to
        the step's batch (``loss.on(losses)``)."""
        return LocalModel(self.params, loss_fn, scale, None if corr is None else self.split(corr),
                          None if anchor is None else self.split(anchor))

    def local_solve(
        self,
        h: LocalModel,
        start: torch.Tensor,
        steps: int,
        solver: torch.optim.Optimizer,
        constraint: Ball | Box | None = None,
        predict: bool = False,
        copies: int = 1,
        first: tuple[float, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, float | None, float | None]:
        """``steps`` solver steps on the local model ``h`` from ``start``.

        Each step: ∇h by autograd, one ``solver.step()``, projection onto ``constraint``.
        ``first = (loss(start), ∇h(start))``, when the caller already knows them (with first-order
        coherence ∇h(θ_t) = g_t), saves the first evaluation.

        Returns
        -------
        theta : Tensor [P]
            The last iterate; the model parameters are left there.
        loss_start : float or None
            loss(start), unscaled (None when ``steps`` is 0).
        predicted : float or None
            h(start) − h(theta) when ``predict`` (one extra forward), else None.
        """
        self.set_flat(start)
        if isinstance(solver, BoxAdagrad):
            if isinstance(constraint, Box):
                solver.set_box(self.split(constraint.lo), self.split(constraint.hi))
            else:
                solver.set_box(None, None)
        # BoxAdagrad projects onto its box itself; any other solver / set is projected here
        project = constraint is not None and not (isinstance(solver, BoxAdagrad) and isinstance(constraint, Box))
        loss_start = h_start = None
        for i in range(steps):
            solver.zero_grad(set_to_none=True)
            if i == 0 and first is not None:
                loss_start = float(first[0])
                h_start = h.scale * loss_start + h.linear_at(start)
                self._set_grad(first[1])
            else:
                value = h.backward(self.model)
                self.accounting.add_work(grad_evals=h.work * copies)
                if i == 0:
                    loss_start, h_start = h.last_loss, value
            solver.step()
            if project:
                self.set_flat(constraint.project(self.flat()))
        solver.zero_grad(set_to_none=True)
        theta = self.flat()
        predicted = None
        if predict:
            predicted = 0.0 if steps == 0 else h_start - self._loss_value(h, copies)
        return theta, loss_start, predicted

    def scale_learning_rate(self, factor: float) -> None:
        """Set the global optimizer's rates to ``factor`` times those it was built with (a schedule)."""
        opt = self._global_optimizer()
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * float(factor)

    def optimizer_step(self, grad: torch.Tensor) -> None:
        """One step of the global optimizer with the given (already reduced) gradient."""
        opt = self._global_optimizer()
        with self.timed(None):
            self._set_grad(grad)
            opt.step()
            opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Optimizer and solver states, algorithm state, iteration and accounting counters."""
        return {
            "name": self.name,
            "iteration": self.iteration,
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "solvers": {key: s.state_dict() for key, s in self.solvers.items()},
            "extra": self._extra_state(),
            "accounting": self.accounting.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint of algorithm {state.get('name')!r} cannot resume {self.name!r}")
        self.iteration = int(state["iteration"])
        if state["optimizer"] is not None:
            self._global_optimizer().load_state_dict(state["optimizer"])
        for key, s in state["solvers"].items():
            if key in self.solvers:
                self.solvers[key].load_state_dict(s)
        self._load_extra_state(state["extra"])
        self.accounting.load_state_dict(state["accounting"])

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}(parts={self.num_parts}, params={self.num_params})"
