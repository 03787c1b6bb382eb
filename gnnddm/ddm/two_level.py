"""``two_level``: additive Schwarz plus a coarse-graph correction with the same θ (docs/algorithms.md).

Coarse level c: the model on the coarse graph, f_c(θ) (see :mod:`gnnddm.ddm.objective` for how x, y,
w are restricted). Around an anchor θ_a with global gradient g_a the coarse model is τ-corrected,

    h_c(θ) = f_c(θ) + ⟨g_a − ∇f_c(θ_a), θ − θ_a⟩,     ∇h_c(θ_a) = g_a,

and m_c = ``coarse_steps`` local-solver steps on h_c from θ_a give s_c (inside the trust region
‖s_c‖ ≤ Δ_t, or the OFFO box; with several levels each level solves from θ_a within 1/levels of the
region and s_c is the sum of the level corrections). Every rank solves the coarse problem redundantly:
it needs only g_a, no extra collective.

Placement (``coarse``), with s_sub the ``asm`` subdomain correction (any ``combine``):

- ``pre`` (default): s_c from θ_t; then g at θ' = θ_t + s_c (one more all-reduce of P + 1) and s_sub
  from θ'. Each correction is within the region from its own anchor (‖s_t‖ ≤ 2Δ_t).
- ``post``: s_sub from θ_t; then g at θ' = θ_t + s_sub (one more all-reduce) and s_c from θ'.
- ``additive``: s_sub and s_c both from θ_t with g_t, each within *half* the region (ball Δ_t/2, or
  half the OFFO box), so that s_t = s_sub + s_c stays in the region: ‖s_t‖ ≤ Δ_t.

The trust-region test is made once for the whole outer iteration: ρ = (f(θ_t) − f(θ_t + s_t)) /
(predicted_sub + predicted_c), with ``trial: separate`` or ``fused`` as in ``asm`` (with ``pre`` and
``combine: span`` f(θ_t + s_t) is known and the separate test costs no collective). With
``coarse_steps: 0`` the method is ``asm``.

Coarse levels come from the objective or, when it has none, from the data graph by ``coarsening``:
``clusters`` (METIS, ``coarse_clusters`` clusters, then a quarter as many per further level, each
coarsening the previous level), ``grid`` (the grid hierarchy of :mod:`gnnddm.partition.hierarchy`:
2 x 2 cells per level, conservative restriction, the graph rebuilt with the run's builder) or
``matching`` (heavy-edge matching, for meshes and station networks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gnnddm.ddm.asm import ASM, ASMConfig
from gnnddm.errors import ConfigError
from gnnddm.partition.hierarchy import COARSENINGS, build_hierarchy
from gnnddm.schema.fields import Invalid, at_least, one_of


def build_coarse_levels(data, clusters, levels: int, method: str = "metis", seed: int = 0) -> list:
    """CoarseLevel objects for ``levels`` levels; ``clusters`` is the first level's size or a list."""
    from gnnddm.partition.coarse import coarsen_levels

    if isinstance(clusters, list | tuple):
        sizes = list(clusters)
    else:
        sizes = [int(clusters) // 4**i for i in range(levels)]
    valid = len(sizes) == levels and all(isinstance(n, int) and n >= 1 for n in sizes)
    valid = valid and all(b < a for a, b in zip([data.num_nodes, *sizes], sizes, strict=False))
    if not valid:
        raise ConfigError(
            f"ddm.coarse_clusters: expected {levels} strictly decreasing positive cluster counts below the "
            f"{data.num_nodes} nodes (ddm.coarse_levels={levels}), got {clusters!r}"
        )
    return coarsen_levels(data.edge_index, data.num_nodes, sizes, edge_weight=data.edge_weight, area=data.area,
                          lat=data.lat, lon=data.lon, method=method, seed=seed)


@dataclass
class TwoLevelConfig(ASMConfig):
    _target_: str = "gnnddm.ddm.two_level.TwoLevel"
    name: str = "two_level"
    coarse: str = field(default="pre", metadata=one_of("pre", "post", "additive", noun="coarse placement"))
    coarse_steps: int = field(default=3, metadata=at_least(0))
    coarse_clusters: int | list[int] = 64
    coarse_levels: int = field(default=1, metadata=at_least(1))
    coarse_method: str = "metis"
    coarsening: str = field(default="clusters", metadata=one_of(*COARSENINGS, noun="coarsening"))

    def __post_init__(self):
        super().__post_init__()
        from gnnddm.config import options

        if self.coarse_method not in options("partition"):
            raise Invalid("coarse_method", f"unknown partitioner {self.coarse_method!r}; valid: "
                                           + ", ".join(options("partition")))


class TwoLevel(ASM):
    """``asm`` with a coarse correction; see the module docstring.

    Parameters
    ----------
    (all of :class:`~gnnddm.ddm.asm.ASM`), and
    coarse : {"pre", "post", "additive"}
        Where the coarse correction goes (module docstring); ``additive`` halves both regions.
    coarse_steps : int
        m_c >= 0 local-solver steps on h_c per level (0: no coarse correction).
    coarse_clusters : int or list of int
        Clusters of the first coarse level (or of every level).
    coarse_levels : int
        Number of coarse levels.
    coarse_method : str
        Clustering method passed to ``coarsen`` (``coarsening: clusters``).
    coarsening : {"clusters", "grid", "matching"}
        How the coarse levels are made (module docstring).
    """

    name = "two_level"
    Config = TwoLevelConfig
    uses_full_batch = True  # server steps / coarse levels read the whole graph

    def __init__(self, model, objective, comm, optimizer=None, *, local_solver=None,
                 config: TwoLevelConfig | None = None, **options):
        super().__init__(model, objective, comm, optimizer, local_solver=local_solver, config=config, **options)
        self.coarse, self.coarse_steps = self.config.coarse, self.config.coarse_steps
        if self.coarse_steps and objective.num_coarse_levels == 0:
            raise ConfigError("ddm.coarse_steps: the coarse correction needs the objective's coarse levels; build "
                              "the objective with them (gnnddm.ddm.build_objective, or Objective(..., "
                              "coarse_levels=TwoLevel.coarse_levels(data, config)))")
        self.levels = objective.num_coarse_levels if self.coarse_steps else 0
        for level in range(self.levels):
            self._make_solver(f"coarse{level}", self.local_solver)

    @classmethod
    def coarse_levels(cls, data, config: TwoLevelConfig, graph_builder=None) -> list:
        """The coarse space: ``coarse_levels`` levels of METIS clusters, grid cells or matchings."""
        if not config.coarse_steps:
            return []
        if config.coarsening == "clusters":
            return build_coarse_levels(data, config.coarse_clusters, config.coarse_levels, config.coarse_method)
        return build_hierarchy(data, config.coarse_levels, config.coarsening, levels_key="ddm.coarse_levels",
                               levels_offset=0, rebuild=graph_builder)

    def coarse_model(self, losses, level: int, anchor: torch.Tensor, g: torch.Tensor):
        """(h_c, first): the τ-corrected coarse model around ``anchor`` on the batch of ``losses`` (restricted
        to the level on first use, here, inside the timed coarse work) and its value and gradient there."""
        self.set_flat(anchor)

        loss = self.objective.coarse_level(level).on(losses)
        f_c, grad_c = self._loss_grad(loss, copies=self.copies)
        h = self.local_model(loss, corr=g - grad_c, anchor=anchor)
        return h, (f_c, g)

    @property
    def needs_gradient(self) -> bool:
        return self.levels > 0 or super().needs_gradient

    def coarse_correction(self, losses, anchor: torch.Tensor, g: torch.Tensor, share: float = 1.0):
        """s_c = Σ_levels (θ_c − anchor) within ``share`` of the region on the batch of ``losses``, and its
        predicted decrease (0 without trust region)."""
        s_c, predicted = torch.zeros_like(anchor), 0.0
        tr = self.globalization == "trust_region"
        constraint = self.constraint(anchor, share / max(self.levels, 1))
        for level in range(self.levels):
            with self.timed(None):
                h, first = self.coarse_model(losses, level, anchor, g)
                theta_c, _, pred = self.local_solve(
                    h, anchor, self.coarse_steps, self.solvers[f"coarse{level}"], constraint=constraint,
                    predict=tr, copies=self.copies, first=first,
                )
                s_c += theta_c - anchor
                predicted += pred if tr else 0.0
        self.set_flat(anchor)
        return s_c, predicted

    def _step(self, losses) -> dict[str, float]:
        if self.levels == 0:
            return super()._step(losses)
        stats: dict[str, float] = {}
        theta_t, g, f_t, per_part = self.start(losses, stats)
        f_new = None
        if self.coarse == "additive":
            s_sub, pred_sub, _, _ = self.subdomain_correction(losses, theta_t, g, per_part, f_t, share=0.5)
            s_c, pred_c = self.coarse_correction(losses, theta_t, g, share=0.5)
        elif self.coarse == "pre":
            s_c, pred_c = self.coarse_correction(losses, theta_t, g)
            self.set_flat(theta_t + s_c)
            g1, f1, per_part1 = self.subdomain_gradients(losses, keep=self.foc)
            s_sub, pred_sub, _, f_new = self.subdomain_correction(losses, theta_t + s_c, g1, per_part1, f1)
        else:
            s_sub, pred_sub, _, _ = self.subdomain_correction(losses, theta_t, g, per_part, f_t)
            self.set_flat(theta_t + s_sub)
            g1, _, _ = self.subdomain_gradients(losses)
            s_c, pred_c = self.coarse_correction(losses, theta_t + s_sub, g1)
        predicted = None if pred_sub is None else pred_sub + pred_c
        stats = self.finish(losses, theta_t, s_sub + s_c, predicted, f_t, f_new, stats)
        stats["coarse_step_norm"] = float(torch.linalg.vector_norm(s_c))
        return stats
