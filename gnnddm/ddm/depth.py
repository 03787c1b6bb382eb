"""The depth hierarchy of a residual network: a coarse network of half its residual layers, and the linear maps
between the two networks' parameters (multilevel training in depth, MG/OPT; Kopaničáková & Krause, SISC 2023).

A residual network ``h_{k+1} = h_k + τ_k F(h_k; θ_k)`` is the forward-Euler discretisation of an ODE in depth
(:mod:`gnnddm.models`, Depth). Its coarse network (:func:`coarsen_depth`) merges the residual layers
``r_0 r_1 | r_2 r_3 | ...`` in consecutive pairs, one layer of step ``τ_a + τ_b`` per pair (an odd last layer
stays alone with its ``τ``), and keeps every other layer as it is.

Parameters are flat vectors in the order ``[p for p in model.parameters() if p.requires_grad]``
(:func:`torch.nn.utils.parameters_to_vector`). On the parameters outside the residual layers every map is the
identity; on the residual layers, whose parameter tensors have the same shapes, it acts on whole layers
through a small matrix, ``θ_c[j] = Σ_r R[j, r] θ[r]`` and ``v[r] = Σ_j P[r, j] v_c[j]``
(:class:`DepthTransfer`):

    restriction   ``average``  θ_c[j] = (θ_a + θ_b) / 2     ``injection``  θ_c[j] = θ_a      (lone: θ_c[j] = θ_a)
    prolongation  ``constant`` v[a] = v[b] = v_c[j]
                  ``linear``   coarse layer j at the mean position c_j of its fine layers, fine layer r
                               interpolated linearly in depth between its neighbours c_j <= r < c_{j+1},
                               constant before c_0 and after the last

Every row of ``P`` is a convex combination, so a depth-constant network (all residual layers equal) is
restricted and prolongated back to itself. The coarse gradient ``Pᵀ ∇f(θ)`` (:meth:`DepthTransfer.restrict_gradient`)
is the derivative of ``s -> f(θ + P s)`` at 0, what makes a coarse model first-order coherent with the fine one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from gnnddm.errors import ConfigError

RESTRICTIONS = ("average", "injection")
PROLONGATIONS = ("constant", "linear")


def residual_layers(model: nn.Module) -> list[int]:
    """The residual depth layers of ``model`` (its ``residual_layers()``), none for a model without them."""
    layers = getattr(model, "residual_layers", None)
    return [] if layers is None else list(layers())


def depth_levels_allowed(model: nn.Module) -> int:
    """How many times :func:`coarsen_depth` can coarsen ``model`` in depth until one residual layer is left:
    ``⌈log₂ R⌉`` for ``R`` residual layers (R → ⌈R/2⌉ per coarsening). A depth hierarchy of ``ddm.levels``
    levels, the fine one included, needs ``ddm.levels − 1`` of them.

    >>> from gnnddm.models.sage import GraphSAGE
    >>> depth_levels_allowed(GraphSAGE(3, 2, hidden=8, layers=7, residual=True))  # 5 hidden -> hidden layers
    3
    """
    count, num = 0, len(residual_layers(model))
    while num > 1:
        num, count = (num + 1) // 2, count + 1
    return count


def _check_name(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"ddm.{key}: expected one of {', '.join(map(repr, valid))}, got {value!r}")


# --------------------------------------------------------------------------------------------- the maps
@dataclass(frozen=True, eq=False)
class DepthTransfer:
    """The linear maps between the flat parameter vectors of a network (``fine``) and its coarse network.

    A parameter vector is split into the entries outside the residual layers, ``fixed_fine`` (long ``[F]``)
    in the fine vector at ``fixed_coarse`` in the coarse one, and the residual layers' entries, one row per
    layer with the same slots in the same order: ``residual_fine`` (long ``[R, m]``) and ``residual_coarse``
    (long ``[J, m]``). The maps are the identity on the first and act by ``restriction_weights`` (``R_w``,
    float64 ``[J, R]``) or ``prolongation_weights[kind]`` (``P_w``, ``[R, J]``) on the rows of the second::

        restrict(θ)[res_c]          = R_w θ[res_f]          θ [P_fine] -> [P_coarse]
        prolong(v_c, kind)[res_f]   = P_w v_c[res_c]        v_c [P_coarse] -> [P_fine]
        restrict_gradient(g, kind)  = Pᵀ g                  g [P_fine] -> [P_coarse]

    All maps accept any float dtype and device and are differentiable.
    """

    num_fine: int
    num_coarse: int
    fixed_fine: torch.Tensor
    fixed_coarse: torch.Tensor
    residual_fine: torch.Tensor
    residual_coarse: torch.Tensor
    restriction: str
    restriction_weights: torch.Tensor
    prolongation_weights: dict[str, torch.Tensor]

    def __repr__(self) -> str:
        (r, m), j = self.residual_fine.shape, self.residual_coarse.shape[0]
        return (f"DepthTransfer(parameters {self.num_fine} -> {self.num_coarse}, residual layers {r} -> {j} "
                f"of {m} parameters each, restriction={self.restriction})")

    # ------------------------------------------------------------------ helpers
    def _weights(self, kind: str) -> torch.Tensor:
        _check_name("depth_prolongation", kind, PROLONGATIONS)
        return self.prolongation_weights[kind]

    @staticmethod
    def _check(v: torch.Tensor, size: int, name: str) -> None:
        if v.dim() != 1 or v.shape[0] != size:
            raise ValueError(f"{name}: expected a flat vector of {size} parameters, got shape {tuple(v.shape)}")

    @staticmethod
    def _apply(v: torch.Tensor, size: int, fixed_from: torch.Tensor, fixed_to: torch.Tensor,
               rows_from: torch.Tensor, rows_to: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``out[fixed_to] = v[fixed_from]``, ``out[rows_to] = weights @ v[rows_from]``, out of place."""
        dev = v.device
        fixed_from, fixed_to = fixed_from.to(dev), fixed_to.to(dev)
        rows_from, rows_to = rows_from.to(dev), rows_to.to(dev)
        layers = weights.to(dtype=v.dtype, device=dev) @ v[rows_from]
        out = v.new_zeros(size).index_put((fixed_to,), v[fixed_from])
        return out.index_put((rows_to.reshape(-1),), layers.reshape(-1))

    # ------------------------------------------------------------------ the maps
    def restrict(self, theta: torch.Tensor) -> torch.Tensor:
        """The coarse parameters of fine parameters ``theta`` [P_fine]: [P_coarse] (``restriction``)."""
        self._check(theta, self.num_fine, "theta")
        return self._apply(theta, self.num_coarse, self.fixed_fine, self.fixed_coarse,
                           self.residual_fine, self.residual_coarse, self.restriction_weights)

    def prolong(self, v: torch.Tensor, kind: str = "constant") -> torch.Tensor:
        """``P v``: a coarse vector (a step, a correction) [P_coarse] on the fine parameters [P_fine].

        ``kind`` (``ddm.depth_prolongation``): ``constant`` (both layers of a pair take their coarse layer's
        value) or ``linear`` (linear interpolation in depth; module docstring).
        """
        weights = self._weights(kind)
        self._check(v, self.num_coarse, "v")
        return self._apply(v, self.num_fine, self.fixed_coarse, self.fixed_fine,
                           self.residual_coarse, self.residual_fine, weights)

    def restrict_gradient(self, g: torch.Tensor, kind: str = "constant") -> torch.Tensor:
        """``Pᵀ g`` [P_coarse] for a fine gradient ``g`` [P_fine], the adjoint of :meth:`prolong` of the same
        ``kind``: ``d/ds f(θ + P s)|_{s=0} = Pᵀ ∇f(θ)``, the gradient of a first-order coherent coarse model."""
        weights = self._weights(kind)
        self._check(g, self.num_fine, "g")
        return self._apply(g, self.num_coarse, self.fixed_fine, self.fixed_coarse,
                           self.residual_fine, self.residual_coarse, weights.t())

    def box_half_width(self, half: torch.Tensor, kind: str = "constant") -> torch.Tensor:
        """The coarse box ``|s_j| <= half_c[j]`` whose prolongation stays in the fine box ``|(P s)_i| <= half[i]``.

        ``half_c[j] = min_{i : P[i, j] > 0} half[i]``: a row of ``P`` being a convex combination,
        ``|(P s)_i| <= Σ_j P[i, j] |s_j| <= Σ_j P[i, j] half[i] = half[i]``.

        Parameters
        ----------
        half : float [P_fine], >= 0
        kind : {"constant", "linear"}

        Returns
        -------
        float [P_coarse]
        """
        weights = self._weights(kind)
        self._check(half, self.num_fine, "half")
        dev = half.device
        rows = half[self.residual_fine.to(dev)]  # [R, m]
        layers = torch.stack([rows[weights[:, j].to(dev) > 0].amin(0) for j in range(weights.shape[1])])
        out = half.new_zeros(self.num_coarse).index_put((self.fixed_coarse.to(dev),), half[self.fixed_fine.to(dev)])
        return out.index_put((self.residual_coarse.to(dev).reshape(-1),), layers.reshape(-1))

    def operator_norm(self, kind: str = "constant") -> float:
        """``‖P‖₂``: ``P`` is the identity on the fixed entries and ``P_w ⊗ I_m`` on the residual layers, so
        ``‖P‖₂ = max(1, σ_max(P_w))`` (``σ_max(P_w)`` alone without fixed entries); ``√2`` for ``constant``
        with a pair. A coarse ball ``‖s‖ <= Δ / ‖P‖`` maps into the fine ball ``‖P s‖ <= Δ``."""
        norm = float(torch.linalg.matrix_norm(self._weights(kind), ord=2))
        return max(norm, 1.0) if len(self.fixed_fine) else norm


# --------------------------------------------------------------------------------- the layers' weights
def _pairs(num: int) -> list[list[int]]:
    """Residual layers ``0 .. num − 1`` in consecutive pairs, an odd last one alone."""
    return [list(range(i, min(i + 2, num))) for i in range(0, num, 2)]


def _restriction_weights(pairs: list[list[int]], num: int, restriction: str) -> torch.Tensor:
    w = torch.zeros(len(pairs), num, dtype=torch.float64)
    for j, pair in enumerate(pairs):
        if restriction == "average":
            w[j, pair] = 1.0 / len(pair)
        else:
            w[j, pair[0]] = 1.0
    return w


def _prolongation_weights(pairs: list[list[int]], num: int) -> dict[str, torch.Tensor]:
    constant = torch.zeros(num, len(pairs), dtype=torch.float64)
    for j, pair in enumerate(pairs):
        constant[pair, j] = 1.0
    # coarse layer j sits at the mean position of its fine layers; fine layer r between its neighbours
    centres = [sum(pair) / len(pair) for pair in pairs]
    linear = torch.zeros(num, len(pairs), dtype=torch.float64)
    for r in range(num):
        if r <= centres[0]:
            linear[r, 0] = 1.0
        elif r >= centres[-1]:
            linear[r, -1] = 1.0
        else:
            j = max(i for i, c in enumerate(centres) if c <= r)
            t = (r - centres[j]) / (centres[j + 1] - centres[j])
            linear[r, j], linear[r, j + 1] = 1.0 - t, t
    return {"constant": constant, "linear": linear}


# ----------------------------------------------------------------------------------- the coarse network
def _flat_positions(model: nn.Module) -> tuple[dict[int, torch.Tensor], int]:
    """Each trainable parameter's positions in the flat vector (by ``id``), and the vector's length."""
    positions, start = {}, 0
    for p in model.parameters():
        if p.requires_grad:
            positions[id(p)] = torch.arange(start, start + p.numel())
            start += p.numel()
    return positions, start


def _layer_slots(model: nn.Module, k: int) -> list[nn.Parameter]:
    return [p for p in model.layer_module(k).parameters() if p.requires_grad]


def _residual_rows(model: nn.Module, layers: list[int], positions: dict[int, torch.Tensor]) -> torch.Tensor:
    """long [len(layers), m]: the flat positions of each residual layer's parameters, slot by slot."""
    slots = [_layer_slots(model, k) for k in layers]
    shapes = [[tuple(p.shape) for p in s] for s in slots]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"the residual layers {layers} of {type(model).__name__} have parameters of different "
                         f"shapes, {shapes}; a depth hierarchy needs layers of one shape")
    return torch.stack([torch.cat([positions[id(p)] for p in s]) if s else torch.zeros(0, dtype=torch.long)
                        for s in slots])


def no_residual_layers(model: nn.Module) -> ConfigError:
    name = type(model).__name__
    if getattr(model, "residual", True) is False:
        return ConfigError(f"ddm.depth_coarsening: model {name} with residual=false has no residual layers; "
                           f"set model.residual=true or ddm.depth_coarsening=false")
    if hasattr(model, "residual_layers"):
        return ConfigError(f"ddm.depth_coarsening: model {name} has no residual layers (no hidden -> hidden "
                           f"layer among its {model.num_layers}); deepen the model or set "
                           f"ddm.depth_coarsening=false")
    return ConfigError(f"ddm.depth_coarsening: model {name} has no residual layers to coarsen in depth (those "
                       f"that have: GraphSAGE with residual=true, InteractionNetwork, EncodeProcessDecode); "
                       f"set ddm.depth_coarsening=false")


def coarsen_depth(model: nn.Module, restriction: str = "average") -> tuple[nn.Module, DepthTransfer]:
    """The coarse network in depth of a residual ``model``, with its parameters restricted, and the transfer.

    The coarse network is a copy of ``model`` in which the residual layers ``r_0 r_1 | r_2 r_3 | ...`` are
    merged by pairs: it keeps every non-residual layer, and of each pair the first layer, with the step
    ``τ_a + τ_b`` (a lone last layer keeps its ``τ``) and the parameters ``restrict(θ)``. Its
    ``num_layers`` and ``num_message_passing_layers`` count its layers (a pair is one hop), so
    :func:`~gnnddm.models.common.run_stages` and stage-by-stage evaluation run on it as on any model.
    ``model`` is not changed.

    Parameters
    ----------
    model : nn.Module
        A model exposing its depth structure (:mod:`gnnddm.models`, Depth), of at least 2 residual layers.
    restriction : {"average", "injection"}
        ``ddm.depth_restriction``: a pair's parameters ``(θ_a + θ_b) / 2`` or ``θ_a``.

    Returns
    -------
    (coarse_model, DepthTransfer)

    Raises
    ------
    ConfigError
        ``ddm.depth_coarsening``: the model has no residual layers; ``ddm.levels``: it has only one;
        ``ddm.depth_restriction``: an unknown restriction.
    """
    _check_name("depth_restriction", restriction, RESTRICTIONS)
    layers = residual_layers(model)
    if not layers:
        raise no_residual_layers(model)
    if len(layers) < 2:
        raise ConfigError(f"ddm.levels: model {type(model).__name__} has {len(layers)} residual layer, nothing to "
                          f"merge in depth: it allows 1 depth level (ddm.levels=1, or a deeper model)")
    pairs = _pairs(len(layers))
    keep = sorted(set(range(model.num_layers)) - set(layers) | {layers[pair[0]] for pair in pairs})
    memo: dict = {}
    coarse = copy.deepcopy(model, memo)
    coarse.keep_layers(keep)
    coarse_layers = [keep.index(layers[pair[0]]) for pair in pairs]
    for j, pair in zip(coarse_layers, pairs, strict=True):
        coarse.layer_steps[j] = sum(float(model.layer_steps[layers[i]]) for i in pair)
    if coarse.residual_layers() != coarse_layers:
        raise ValueError(f"{type(model).__name__}: the coarse model's residual layers are "
                         f"{coarse.residual_layers()}, expected {coarse_layers}")

    fine_at, num_fine = _flat_positions(model)
    coarse_at, num_coarse = _flat_positions(coarse)
    res_fine = _residual_rows(model, layers, fine_at)
    res_coarse = _residual_rows(coarse, coarse_layers, coarse_at)
    in_layers = {id(p) for k in layers for p in _layer_slots(model, k)}
    fixed = [p for p in model.parameters() if p.requires_grad and id(p) not in in_layers]
    fixed_fine = torch.cat([fine_at[id(p)] for p in fixed] + [torch.zeros(0, dtype=torch.long)])
    fixed_coarse = torch.cat([coarse_at[id(memo[id(p)])] for p in fixed] + [torch.zeros(0, dtype=torch.long)])
    if len(fixed_coarse) + res_coarse.numel() != num_coarse or len(fixed_fine) + res_fine.numel() != num_fine:
        raise ValueError(f"{type(model).__name__}: the residual layers' parameters are shared with other layers; "
                         f"a depth hierarchy needs them separate")

    transfer = DepthTransfer(
        num_fine, num_coarse, fixed_fine, fixed_coarse, res_fine, res_coarse, restriction,
        _restriction_weights(pairs, len(layers), restriction), _prolongation_weights(pairs, len(layers)),
    )
    fine_params = [p for p in model.parameters() if p.requires_grad]
    coarse_params = [p for p in coarse.parameters() if p.requires_grad]
    with torch.no_grad():
        theta = transfer.restrict(nn.utils.parameters_to_vector(fine_params))
        for q, at in zip(coarse_params, (coarse_at[id(q)] for q in coarse_params), strict=True):
            q.copy_(theta[at].view_as(q))
    coarse.zero_grad(set_to_none=True)
    return coarse, transfer


def depth_hierarchy(model: nn.Module, levels: int,
                    restriction: str = "average") -> list[tuple[nn.Module, DepthTransfer]]:
    """The ``levels − 1`` coarse networks in depth of ``model``, finest first: entry ℓ − 1 is level ℓ's model
    and the transfer from level ℓ − 1 to it (:func:`coarsen_depth` applied ``levels − 1`` times).

    Raises
    ------
    ConfigError
        ``ddm.levels`` beyond ``depth_levels_allowed(model) + 1``, and those of :func:`coarsen_depth`.
    """
    _check_name("depth_restriction", restriction, RESTRICTIONS)
    layers = residual_layers(model)
    if not layers and levels > 1:
        raise no_residual_layers(model)
    allowed = depth_levels_allowed(model)
    if levels - 1 > allowed:
        raise ConfigError(f"ddm.levels: {levels} depth levels need {levels - 1} coarsenings in depth, but model "
                          f"{type(model).__name__} has {len(layers)} residual layers, which allow {allowed} "
                          f"(ddm.levels <= {allowed + 1})")
    out = []
    for _ in range(levels - 1):
        model, transfer = coarsen_depth(model, restriction)
        out.append((model, transfer))
    return out
