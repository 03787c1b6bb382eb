"""Cache-blocked exact execution: the whole-graph loss and gradient of ``global`` computed over blocks.

A message-passing layer on a million rows streams its ``[N, B·H]`` activations through memory several
times per op chain (the aggregation, the two products, the bias and the activation, and the same again
backwards); on a block of a few thousand rows the chain works on data that stays in the cache. Two ways
to block the step exactly (``trainer.block_halo``):

``model`` (the default): each block with the overlap of the model's hops
    every block computes the loss of its owned nodes on its subgraph with an overlap of the model's
    message-passing hops, forward and backward at once, and the gradients add up: ``sync``'s computation
    (:mod:`gnnddm.ddm.sync`) in one process, without communication. The block's activations of every layer
    are still in the cache when its backward pass reads them; the overlap rows are computed more than once
    (the partition's redundancy). Blocks are METIS parts (compact: the least overlap for their size).
``layer``: one-hop halos, layer by layer
    as ``halo_sync`` does (:mod:`gnnddm.ddm.halo_sync`): every block computes its owned rows of layer l
    from its owned rows and its one-hop halo of layer l − 1 (the halo rows copied from their owners'
    blocks, in-process), then the backward pass layer by layer with the halo rows' gradients added to their
    owners'. The extra work is one halo per layer, whatever the depth, so it suits deep models whose
    overlap would cover most of a block; a block's activations have left the cache by the time its
    backward pass reads them. Blocks are contiguous id ranges (a grid's latitude bands). The model must
    expose its stages (``encode``, ``layer``, ``decode``: :mod:`gnnddm.models`).

Either way the owned outputs equal the whole-graph outputs, so the loss and the gradient are the
whole-graph ones up to round-off (tested in float64 for every model).

How many blocks (``trainer.blocks``): ``1`` is the whole graph at once; ``N`` blocks; ``auto`` picks the
count from the working set and the cache (:func:`auto_blocks`): one block where a block's activations
(every layer's with ``model``, one layer's with ``layer``) fit in half the last-level cache, else enough
blocks that each block's do.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from pathlib import Path

import torch

from gnnddm.ddm.halo_sync import STAGES, HaloPath, part_graphs
from gnnddm.ddm.objective import Objective
from gnnddm.distributed.comm import copy_halo
from gnnddm.errors import ConfigError
from gnnddm.partition.contiguous import contiguous
from gnnddm.partition.halo import halo_plan
from gnnddm.partition.metis import metis
from gnnddm.partition.overlap import build_partition

#: the last-level cache assumed where the machine does not say (bytes)
DEFAULT_CACHE = 32 * 2**20


def cache_bytes() -> int:
    """The size of the largest CPU cache the kernel reports (the last level), or :data:`DEFAULT_CACHE`."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        with contextlib.suppress(ValueError):
            sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=DEFAULT_CACHE)


def auto_blocks(num_nodes: int, row_bytes: int, cache: int | None = None) -> int:
    """Blocks such that a block's activations (``rows × row_bytes``) fit in half the cache; 1 where the whole
    graph's already do."""
    cache = cache_bytes() if cache is None else cache
    return max(1, math.ceil(num_nodes * row_bytes / (cache / 2)))


class _InProcess:
    """The halo copies between blocks of one process: no communication, nothing accounted."""

    def exchange_halo(self, plan, values: dict[int, torch.Tensor], reverse: bool = False):
        return copy_halo(plan, values, sorted(plan.send), reverse, tuple(values))


def _partition(data, labels, count: int, overlap: int, method: str):
    """The ``count`` blocks ``labels`` of ``data``'s graph with an ``overlap``-hop halo, without the partition's
    warnings: a block of disconnected pieces (a band of ids) is no matter for an exact evaluation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_partition(data.edge_index, data.num_nodes, labels, overlap, edge_weight=data.edge_weight,
                               method=method, num_parts=count)


class Blocks:
    """The whole-graph loss of a model evaluated over ``count`` blocks (module docstring).

    Parameters
    ----------
    data : WeatherGraphData
        The graph (``edge_index``, ``edge_attr``, ``edge_weight``) whose loss is evaluated.
    count : int
        Blocks, 2 <= count <= nodes.
    device : torch.device
    hops : int, optional
        ``halo: model``: the model's message-passing hops, each block's overlap.
    halo : {"model", "layer"}
    """

    def __init__(self, data, count: int, device, hops: int | None = None, halo: str = "model"):
        n = data.num_nodes
        if not 2 <= count <= n:
            raise ConfigError(f"trainer.blocks: {count} blocks for {n} nodes; valid: auto, or 1 .. {n}")
        self.count, self.halo = count, halo
        if halo == "model":
            labels = metis(data.edge_index, n, count, edge_weight=data.edge_weight)
            partition = _partition(data, labels, count, int(hops), "metis")
            self.objective = Objective(data, partition, device=device)
            self.blocks = [k for k in range(count) if self.objective.num_owned[k] > 0]  # METIS may leave one empty
            #: nodes computed (owned + overlap rows) / nodes: the work of one loss evaluation
            self.work = sum(self.objective.local_work(k) for k in self.blocks)
            return
        partition = _partition(data, contiguous(data.edge_index, n, count), count, 0, "contiguous")
        plan = halo_plan(partition, data.edge_index, n, data.edge_weight)
        parts = tuple(range(count))
        graphs = part_graphs(plan, data.edge_attr, data.edge_weight, device, parts)
        self.path = HaloPath(plan, graphs, parts, _InProcess(), lambda k: contextlib.nullcontext())
        self.rows = {k: torch.as_tensor(plan.nodes[k], device=device) for k in parts}
        self.owned = {k: self.rows[k][: plan.num_owned[k]] for k in parts}
        self.work = self.path.work(n)

    def _inputs(self, batch, k: int):
        return batch.x[:, self.rows[k]], batch.y[:, self.owned[k]], batch.w[:, self.owned[k]]

    def loss_backward(self, model, batch) -> torch.Tensor:
        """f on the full-graph ``batch`` (float64 [1]) with ∇f accumulated into the parameters' ``.grad``."""
        if batch.nodes is not None:
            raise RuntimeError("cache-blocked execution needs a full-graph batch (task.batch without nodes)")
        if self.halo == "layer":
            return self.path.loss_backward(model, functools.partial(self._inputs, batch))
        losses = self.objective.on(batch)
        f = torch.zeros(1, dtype=torch.float64)
        for k in self.blocks:
            loss = losses.local_loss(model, k)
            loss.backward()
            f += float(loss.detach())
        return f

    def __repr__(self) -> str:
        return f"Blocks({self.count}, halo={self.halo}, work={self.work:.3f})"


def block_count(setting: int | str, model, num_nodes: int, row_bytes: int, halo: str = "model") -> int:
    """The blocks of ``trainer.blocks`` (``auto``, or a count) for ``model`` on ``num_nodes`` nodes whose
    layer activation takes ``row_bytes`` per node, blocked by ``halo`` (``model``: every layer's activation
    of a block counts; ``layer``: one). ``auto`` is 1 for a model that cannot be blocked that way (no
    ``num_message_passing_layers``; no stages for ``layer``); a count above 1 for one is refused, naming
    the key."""
    if halo == "layer":
        able, what = all(hasattr(model, a) for a in STAGES), "does not expose its layers (encode, layer, decode, " \
                                                              "num_layers), so it cannot run layer by layer"
    else:
        able, what = hasattr(model, "num_message_passing_layers"), "does not say its message-passing hops " \
                                                                   "(num_message_passing_layers), the blocks' overlap"
    if setting == "auto":
        if not able:
            return 1
        layers = int(getattr(model, "num_layers", 1)) if halo == "model" else 1
        return auto_blocks(num_nodes, row_bytes * layers)
    count = int(setting)
    if count > num_nodes:
        raise ConfigError(f"trainer.blocks={count} exceeds the {num_nodes} nodes of the graph; valid: auto, or "
                          f"1 .. {num_nodes}")
    if count > 1 and not able:
        raise ConfigError(f"trainer.blocks={count}: model {type(model).__name__} {what}; set trainer.blocks=1"
                          + ("" if halo == "model" else " or trainer.block_halo=model"))
    return count


def row_bytes_of(model, batch_size: int, dtype=torch.float32) -> int:
    """Bytes of one node's widest layer activation: batch × the model's hidden width."""
    width = max((p.shape[0] for p in model.parameters() if p.dim() == 2), default=1)
    return int(batch_size * width * torch.finfo(dtype).bits // 8)


__all__ = ["Blocks", "auto_blocks", "block_count", "cache_bytes", "row_bytes_of"]
