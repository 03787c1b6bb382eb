"""The losses the training algorithms minimise: global f, subdomain f_k, coarse f_c (docs/algorithms.md).

For a mini-batch with loss weights ``w`` (Σ w = 1, see :mod:`gnnddm.tasks`)

    f(θ)   = Σ_{b, i, v}        w[b,i,v] · (model(x, G)[b,i,v] − y[b,i,v])²          (full graph G)
    f_k(θ) = Σ_{b, i ∈ V_k, v}  w[b,i,v] · (model(x|G_k, G_k)[b,i,v] − y[b,i,v])²    (local graph G_k)

where G_k is the graph induced on V_k ∪ H_k. f_k is scored on the owned nodes V_k only and keeps the
global normalisation, so Σ_k f_k = f whenever the overlap δ is at least the number L of message-passing
layers (the owned outputs are then exact).

Coarse levels (two-level methods) use the *same* model on the coarse graph: with cluster assignment
``a: node -> cluster`` and the area-weighted averaging R [n_c, N] of the coarse level,

    x_c = R x,    w_c[b,c,v] = Σ_{a(i)=c} w[b,i,v],    y_c[b,c,v] = Σ_{a(i)=c} w[b,i,v] y[b,i,v] / w_c[b,c,v]

so Σ w_c = 1 and f_c is the area-weighted MSE of the cluster means over valid entries, normalised like f
(y_c is the w-weighted mean, i.e. the area-weighted mean of the valid targets of the cluster).

The objective holds structure only: the graphs, the partition, the weights, the row maps and the coarse
levels. It never holds a batch (STYLE 19: the loop passes the batch in, it never parks it): a batch is
evaluated through the per-batch object :meth:`Objective.on` returns, a :class:`BatchLosses`, which slices
the batch once per subdomain, restricts it to the coarse levels on first use, and offers f, f_k and f_c on
that batch. :meth:`Algorithm.step(batch) <gnnddm.ddm.base.Algorithm.step>` makes one per outer iteration,
hands it down to every evaluation of the iteration and drops it at the end, so that two batches can be
evaluated side by side with one objective, each giving its own losses.

:meth:`Objective.part`, :meth:`Objective.coarse_level` and :meth:`Objective.whole` give each loss as a
:class:`Loss`: a function of the model and of the per-batch losses that carries the work one evaluation
costs (nodes computed on, as a fraction of N), which the algorithms account as grad_evals / loss_evals.
A :class:`Loss` is structure too (it is built once, by the objective or an algorithm's constructor);
``loss.on(losses)`` binds it to one batch (:class:`BoundLoss`), a function of the model alone, which is
what the local models and solvers evaluate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from gnnddm.models.graph import Graph, prepare_graph
from gnnddm.partition.subdomain import Partition
from gnnddm.tasks import Batch, weighted_sq_error


def _coarse_edge_attr(level, assign: np.ndarray, data) -> np.ndarray | None:
    """Edge features of a coarse graph: the level's own, else the mean over the fine edges it merges."""
    own = getattr(level, "edge_attr", None)
    if own is not None or data.edge_attr is None:
        return None if own is None else np.asarray(own, dtype=np.float32)
    n_c = int(level.num_clusters)
    ce = np.asarray(level.edge_index, dtype=np.int64)
    f = data.edge_attr.shape[1]
    sums, counts = np.zeros((ce.shape[1], f)), np.zeros(ce.shape[1])
    if ce.shape[1]:
        fine_key = assign[data.edge_index[0]] * n_c + assign[data.edge_index[1]]
        coarse_key = ce[0] * n_c + ce[1]
        order = np.argsort(coarse_key)
        pos = np.minimum(np.searchsorted(coarse_key[order], fine_key), ce.shape[1] - 1)
        ok = coarse_key[order][pos] == fine_key
        np.add.at(sums, order[pos[ok]], data.edge_attr[ok])
        np.add.at(counts, order[pos[ok]], 1.0)
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


@dataclass(frozen=True)
class Loss:
    """One of the objective's losses as a function of the model and the per-batch losses, with the work of
    one evaluation (the nodes it computes on / N: 1 for f, n_local,k / N for f_k, n_c / N for a coarse level).

    ``fn(model, losses) -> scalar`` evaluates it on the batch of ``losses`` (a :class:`BatchLosses`): the
    loss itself holds no batch, so it is built once and evaluated on every step's batch.

    ``value_grad``, when given, is how the loss and its gradient are computed instead of one autograd graph
    (``fn(model, losses).backward()``): ``value_grad(model, losses) -> (value, flat gradient)``. A loss
    evaluated layer by layer with halo exchanges between the layers, and reduced over the ranks, is one
    (:class:`gnnddm.ddm.halo_sync.HaloPath`); ``fn`` is then its forward-only value.
    """

    fn: Callable[[torch.nn.Module, BatchLosses], torch.Tensor]
    work: float
    value_grad: Callable[[torch.nn.Module, BatchLosses], tuple[float, torch.Tensor]] | None = None

    def __call__(self, model, losses: BatchLosses) -> torch.Tensor:
        return self.fn(model, losses)

    def on(self, losses: BatchLosses) -> BoundLoss:
        """This loss on the batch of ``losses``: a function of the model alone, with the same work."""
        return BoundLoss(self, losses)


@dataclass(frozen=True)
class BoundLoss:
    """A :class:`Loss` bound to one batch (:meth:`Loss.on`): ``bound(model)`` is ``loss(model, losses)``.

    What :class:`~gnnddm.ddm.base.LocalModel`, the local solves and ``Algorithm._loss_grad`` evaluate, as
    a function of the model; ``work`` and ``value_grad`` are the loss's. Made within one outer iteration
    and dropped with its :class:`BatchLosses`.
    """

    loss: Loss
    losses: BatchLosses

    @property
    def work(self) -> float:
        return self.loss.work

    @property
    def value_grad(self) -> Callable[[torch.nn.Module], tuple[float, torch.Tensor]] | None:
        """``value_grad(model) -> (value, flat gradient)`` on the bound batch, when the loss has one."""
        value_grad, losses = self.loss.value_grad, self.losses
        return None if value_grad is None else (lambda model: value_grad(model, losses))

    def __call__(self, model) -> torch.Tensor:
        return self.loss.fn(model, self.losses)


class Objective:
    """Global, subdomain and coarse losses of one model: their structure (graphs, partition, weights, row
    maps, coarse levels), evaluated on a batch through :meth:`on`. It holds no batch.

    Parameters
    ----------
    data : WeatherGraphData
        Provides ``edge_index``, ``edge_weight``, ``edge_attr`` and ``num_nodes``.
    partition : Partition
        The subdomains (owned nodes first in ``Subdomain.nodes``).
    device : str or torch.device
    coarse_levels : sequence of CoarseLevel
        Each with ``assign`` [N or n_prev], ``num_clusters``, ``restriction`` (scipy [n_c, N or n_prev]),
        ``edge_index``, ``edge_weight``. A level whose restriction acts on the previous level's clusters
        coarsens that level (recursive coarsening): its batch is restricted from the previous level's.
    parts : sequence of int, optional
        Subdomains to prepare (a rank's own); all by default.
    graph_builder : callable, optional
        ``graph_builder(coarse_data) -> coarse_data with its graph``: how the data's graph was built, for
        algorithms that rebuild it on coarser grids (:mod:`gnnddm.partition.hierarchy`).
    """

    def __init__(self, data, partition: Partition, device="cpu", coarse_levels: Sequence = (), parts=None,
                 graph_builder=None):
        if data.edge_index is None:
            raise ValueError("the objective needs the graph (data.edge_index)")
        self.data = data
        self.graph_builder = graph_builder
        self.partition = partition
        self.device = torch.device(device)
        self.num_nodes = int(data.num_nodes)
        self.num_parts = int(partition.num_parts)
        self.parts = tuple(range(self.num_parts)) if parts is None else tuple(int(k) for k in parts)
        self.full_graph = prepare_graph(data.edge_index, self.num_nodes, data.edge_attr, data.edge_weight)
        self.full_graph = self.full_graph.to(self.device)
        self.graphs: dict[int, Graph] = {}
        self._nodes: dict[int, torch.Tensor] = {}
        self._owned: dict[int, torch.Tensor] = {}
        self.num_local: dict[int, int] = {}
        self.num_owned: dict[int, int] = {}
        for sd in partition.subdomains:
            self.num_owned[sd.index] = int(sd.num_owned)
            self.num_local[sd.index] = int(sd.num_local)
            if sd.index not in self.parts:
                continue
            ids = sd.edge_ids
            attr = None if data.edge_attr is None else data.edge_attr[ids]
            weight = None if data.edge_weight is None else data.edge_weight[ids]
            self.graphs[sd.index] = prepare_graph(sd.edge_index, sd.num_local, attr, weight).to(self.device)
            self._nodes[sd.index] = torch.as_tensor(sd.nodes, dtype=torch.long, device=self.device)
            self._owned[sd.index] = self._nodes[sd.index][: sd.num_owned]
        self.coarse: list[dict] = []
        self._levels: list = []  # the CoarseLevel objects the objective was built with
        self._local_nodes: torch.Tensor | None = None
        self._rows_cache: tuple | None = None  # (node ids, their rows, whole parts): the last row map
        self._dtype = torch.float32  # of the graphs: that of the last batch evaluated
        for level in coarse_levels:
            self._add_coarse_level(level)

    # ------------------------------------------------------------------ set-up
    def with_coarse_level(self, level) -> Objective:
        """A new objective: this one's data, partition and parts, with ``level`` appended to its coarse
        levels (an objective never changes after it is built)."""
        return Objective(self.data, self.partition, device=self.device, coarse_levels=[*self._levels, level],
                         parts=self.parts, graph_builder=self.graph_builder)

    def _add_coarse_level(self, level) -> None:
        """Append a coarse level (acting on the fine graph or on the previous coarse level); construction only."""
        self._levels.append(level)
        assign = np.asarray(level.assign, dtype=np.int64)
        own = sp.csr_matrix(level.restriction)  # R from the graph the level coarsens
        source = None  # the coarse level it coarsens (None: the fine graph)
        if self.coarse and own.shape[1] == self.coarse[-1]["num_clusters"] != self.num_nodes:
            source = len(self.coarse) - 1
            assign = assign[self.coarse[-1]["assign"]]  # fine node -> cluster of this level
        elif own.shape[1] != self.num_nodes:
            raise ValueError(f"coarse level does not act on the {self.num_nodes}-node graph")
        if assign.shape != (self.num_nodes,):
            raise ValueError(f"coarse level does not act on the {self.num_nodes}-node graph")
        n_c = int(level.num_clusters)
        edge_attr = _coarse_edge_attr(level, assign, self.data)
        graph = prepare_graph(level.edge_index, n_c, edge_attr, level.edge_weight).to(self.device)
        coo = own.tocoo()
        r = torch.sparse_coo_tensor(
            np.vstack([coo.row, coo.col]), coo.data, size=own.shape, dtype=torch.float64, check_invariants=True,
        ).coalesce().to_sparse_csr()
        self.coarse.append(
            {
                "num_clusters": n_c,
                "assign": assign,
                "source": source,
                "R": {torch.float64: r.to(self.device)},  # the level's own R, per dtype
                "assign_t": torch.as_tensor(np.asarray(level.assign, dtype=np.int64), device=self.device),
                "graph": graph,
                # the level's graph as arrays, for algorithms that partition it (multilevel on ranks)
                "edge_index": np.asarray(level.edge_index, dtype=np.int64),
                "edge_attr": edge_attr,
                "edge_weight": None if level.edge_weight is None else np.asarray(level.edge_weight),
            }
        )

    @property
    def num_coarse_levels(self) -> int:
        return len(self.coarse)

    def weight(self, k: int) -> float:
        """n_k / n: the fraction of the nodes that subdomain k owns."""
        return self.num_owned[k] / self.num_nodes

    def local_work(self, k: int) -> float:
        """Nodes subdomain k computes on (owned + overlap), as a fraction of N."""
        return self.num_local[k] / self.num_nodes

    def coarse_work(self, level: int = 0) -> float:
        return self.coarse[level]["num_clusters"] / self.num_nodes

    def colour_classes(self, parts) -> list[list[int]]:
        """``parts`` grouped by a greedy colouring of the subdomain adjacency: no two parts of one class share
        an edge (multiplicative Schwarz solves a class together)."""
        from gnnddm.partition.metrics import colour_classes

        return colour_classes(np.asarray(self.partition.parts), np.asarray(self.data.edge_index), parts)

    def part(self, k: int) -> Loss:
        """f_k with its work n_local,k / N (evaluated on a batch: ``loss(model, objective.on(batch))``)."""
        return Loss(lambda model, losses: losses.local_loss(model, k), self.local_work(k))

    def coarse_level(self, level: int = 0) -> Loss:
        """f_c of coarse level ``level`` with its work n_c / N."""
        return Loss(lambda model, losses: losses.coarse_loss(model, level), self.coarse_work(level))

    def whole(self) -> Loss:
        """f with its work 1 (one full-graph evaluation)."""
        return Loss(lambda model, losses: losses.global_loss(model), 1.0)

    # ------------------------------------------------------------------ batches
    @property
    def local_nodes(self) -> torch.Tensor:
        """Global ids of every node the prepared subdomains read (the union of their V_k ∪ H_k).

        A batch of these rows only (``task.batch(..., nodes=objective.local_nodes)``) is enough for the
        subdomain losses; the global and coarse losses need a full-graph batch. With one prepared
        subdomain the ids are in its own order (owned nodes first), so that its rows are the batch itself
        and :meth:`on` copies nothing; with several they are sorted.
        """
        if self._local_nodes is None:
            ids = [n.cpu() for n in self._nodes.values()]
            if len(ids) == 1:
                self._local_nodes = ids[0]
            else:
                self._local_nodes = torch.unique(torch.cat(ids)) if ids else torch.zeros(0, dtype=torch.long)
        return self._local_nodes

    def _rows_of(self, nodes: torch.Tensor | None) -> tuple[dict[int, torch.Tensor], set[int]]:
        """Row of each subdomain node in a batch whose rows are ``nodes`` (None: all N nodes), and the
        subdomains whose rows are exactly the batch's, in order (their slices are the batch itself)."""
        if nodes is None:
            return self._nodes, set()
        if self._rows_cache is not None and self._rows_cache[0] is nodes:
            return self._rows_cache[1:]
        pos = torch.full((self.num_nodes,), -1, dtype=torch.long, device=self.device)
        pos[nodes.to(self.device)] = torch.arange(len(nodes), device=self.device)
        rows = {k: pos[n] for k, n in self._nodes.items()}
        if any(bool((r < 0).any()) for r in rows.values()):
            raise ValueError("the batch lacks nodes of this objective's subdomains (use objective.local_nodes)")
        whole = {k for k, r in rows.items() if len(r) == len(nodes)
                 and torch.equal(r, torch.arange(len(nodes), device=r.device))}
        self._rows_cache = (nodes, rows, whole)
        return rows, whole

    def on(self, batch: Batch) -> BatchLosses:
        """The losses on ``batch``: a :class:`BatchLosses` that slices it once per subdomain now and
        restricts it to each coarse level on first use.

        ``batch`` covers the full graph, or only :attr:`local_nodes` (``batch.nodes``), which suffices for
        the subdomain losses and is all a rank needs to assemble. The objective keeps no reference to the
        batch: the returned object does, for as long as its holder keeps it (one outer iteration, in
        :meth:`Algorithm.step <gnnddm.ddm.base.Algorithm.step>`).
        """
        return BatchLosses(self, batch)

    def _as_dtype(self, dtype: torch.dtype) -> None:
        """Cast the graphs to ``dtype`` (that of the batch to evaluate) when they are not (structure, made
        once per dtype change: a run's batches all have one dtype)."""
        if dtype != self._dtype:
            self._dtype = dtype
            self.full_graph = self.full_graph.astype(dtype)
            self.graphs = {k: g.astype(dtype) for k, g in self.graphs.items()}
            for c in self.coarse:
                c["graph"] = c["graph"].astype(dtype)

    def _restrict(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, level: dict) -> tuple:
        """``(x, y, w)`` of the level's source (the fine batch or the previous level) restricted by its own R."""
        b, n, f = x.shape
        v = y.shape[2]
        if x.dtype not in level["R"]:
            level["R"][x.dtype] = level["R"][torch.float64].to(x.dtype)
        r = level["R"][x.dtype]
        x_c = (r @ x.permute(1, 0, 2).reshape(n, b * f)).reshape(-1, b, f).permute(1, 0, 2)
        n_c, a = level["num_clusters"], level["assign_t"]
        w_c = torch.zeros(b, n_c, v, dtype=w.dtype, device=w.device).index_add_(1, a, w)
        wy = torch.zeros_like(w_c).index_add_(1, a, w * y)
        y_c = torch.where(w_c > 0, wy / w_c.clamp_min(torch.finfo(w_c.dtype).tiny), torch.zeros_like(wy))
        return x_c.contiguous(), y_c, w_c

    def nodes_of(self, k: int) -> torch.Tensor:
        """Global ids of subdomain k's local nodes V_k ∪ H_k (owned first), for a prepared part k."""
        return self._nodes[k]

    def __repr__(self) -> str:
        return (
            f"Objective(N={self.num_nodes}, parts={len(self.parts)}/{self.num_parts}, "
            f"coarse={[c['num_clusters'] for c in self.coarse]})"
        )


class BatchLosses:
    """The objective's losses on one mini-batch: what :meth:`Objective.on` returns.

    The per-batch half of the objective. Made from the batch when an outer iteration starts
    (:meth:`Algorithm.step <gnnddm.ddm.base.Algorithm.step>`), passed down to every loss the iteration
    evaluates, and dropped at its end, so that no object keeps a batch between steps. It slices the batch
    once per prepared subdomain when it is made (no copy where the batch's rows are the subdomain's own), and
    restricts it to a coarse level on first use: inside the algorithm's timed work, as the restriction is
    part of the coarse problem's cost.

    Parameters
    ----------
    objective : Objective
        The structure: graphs, partition, weights, row maps, coarse levels.
    batch : Batch
        The full graph's rows, or only ``objective.local_nodes`` (``batch.nodes``; enough for f_k).
    """

    def __init__(self, objective: Objective, batch: Batch):
        nodes = batch.nodes  # before the move: the same tensor every step, so its row map is reused
        batch = batch.to(objective.device)
        objective._as_dtype(batch.x.dtype)
        self.objective = objective
        self.batch = batch
        # the graphs of this batch's dtype, kept here so that another batch's cast cannot change them
        self._full_graph = objective.full_graph
        self._graphs = dict(objective.graphs)
        self._coarse_graphs = [c["graph"] for c in objective.coarse]
        rows, whole = objective._rows_of(nodes)
        self._local: dict[int, tuple] = {}
        for k, r in rows.items():
            o = objective.num_owned[k]
            if k in whole:  # the batch's rows are this subdomain's, in order: no copy
                self._local[k] = (batch.x, batch.y[:, :o], batch.w[:, :o])
            else:
                self._local[k] = (batch.x[:, r], batch.y[:, r[:o]], batch.w[:, r[:o]])
        self._coarse: dict[int, tuple] = {}  # restricted on first use, inside the algorithm's timed work

    def _need_full(self) -> None:
        if self.batch.nodes is not None:
            raise RuntimeError("the global and coarse losses need a full-graph batch (task.batch without nodes)")

    def local_batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subdomain k's slice of the batch: ``x`` [B, n_local, F] in the order of
        :meth:`Objective.nodes_of`, and ``y``, ``w`` [B, n_owned, V] of its owned nodes."""
        return self._local[k]

    def coarse_batch(self, level: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_c, y_c, w_c)``: the batch restricted to coarse level ``level`` (module docstring), computed
        on first use, from the previous level's when the level coarsens it (the same values as restricting
        the fine batch with the composed R: area-weighted means and weight sums compose)."""
        self._need_full()
        if level not in self._coarse:
            c = self.objective.coarse[level]
            b = self.batch
            source = (b.x, b.y, b.w) if c["source"] is None else self.coarse_batch(c["source"])
            self._coarse[level] = self.objective._restrict(*source, c)
        return self._coarse[level]

    def local_loss(self, model, k: int) -> torch.Tensor:
        """f_k(θ): loss on the owned nodes of subdomain k, computed on its local graph (scalar)."""
        x, y, w = self._local[k]
        out = model(x, self._graphs[k])
        return weighted_sq_error(out[:, : self.objective.num_owned[k]], y, w)

    def global_loss(self, model) -> torch.Tensor:
        """f(θ): loss on the full graph (scalar)."""
        self._need_full()
        out = model(self.batch.x, self._full_graph)
        return weighted_sq_error(out, self.batch.y, self.batch.w)

    def coarse_loss(self, model, level: int = 0) -> torch.Tensor:
        """f_c(θ): loss of the same model on coarse level ``level`` (scalar)."""
        x, y, w = self.coarse_batch(level)
        out = model(x, self._coarse_graphs[level])
        return weighted_sq_error(out, y, w)

    def __repr__(self) -> str:
        b = self.batch
        rows = "N" if b.nodes is None else len(b.nodes)
        return f"BatchLosses(B={b.x.shape[0]}, rows={rows}, {self.objective!r})"
