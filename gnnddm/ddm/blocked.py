"""Cache-blocked exact execution: the whole-graph loss and gradient computed layer by layer over blocks.

A message-passing layer on a million rows streams its ``[N, B·H]`` activations through memory several
times per op chain (the aggregation, the two products, the bias and the activation, and the same again
backwards); on a block of a few thousand rows the chain works on data that stays in the cache. So the
whole-graph step of ``global`` can run as the halo exchange of ``halo_sync`` does, in one process:

forward, l = 0 .. L−1
    every block computes its owned rows of layer l from its owned rows and its one-hop halo of layer
    l − 1 (the halo rows copied from the blocks that own them: an in-process copy, not communication)
backward, l = L−1 .. 0
    every block's backward pass through layer l; the halo rows' gradients are added to their owners' rows

The owned outputs equal the whole-graph outputs for any model that exposes its stages (``encode``,
``layer``, ``decode``: :mod:`gnnddm.models`), so the loss and the gradient are the whole-graph ones up to
round-off (tested in float64); the extra work is the halo rows, recomputed at every layer.

Blocks are contiguous ranges of node ids (:func:`gnnddm.partition.contiguous.contiguous`): a grid's ids run
along latitude rows, so a block is a band of rows with a halo of one or two rows on each side.

How many blocks (``trainer.blocks``): ``1`` is the whole graph at once; ``N`` blocks; ``auto`` (the default)
picks the count from the working set and the cache (:func:`auto_blocks`): one block where a layer's
activation fits in half the last-level cache, else enough blocks that each block's does.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from pathlib import Path

import torch

from gnnddm.ddm.halo_sync import STAGES, HaloPath, part_graphs
from gnnddm.distributed.comm import copy_halo
from gnnddm.errors import ConfigError
from gnnddm.partition.contiguous import contiguous
from gnnddm.partition.halo import halo_plan
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
    """Blocks such that one layer's activation of a block (``rows × row_bytes``) fits in half the cache;
    1 where the whole graph's already does."""
    cache = cache_bytes() if cache is None else cache
    return max(1, math.ceil(num_nodes * row_bytes / (cache / 2)))


class _InProcess:
    """The halo copies between blocks of one process: no communication, nothing accounted."""

    def exchange_halo(self, plan, values: dict[int, torch.Tensor], reverse: bool = False):
        return copy_halo(plan, values, sorted(plan.send), reverse, tuple(values))


class Blocks:
    """The whole-graph loss of a model evaluated over ``count`` blocks (module docstring).

    Parameters
    ----------
    data : WeatherGraphData
        The graph (``edge_index``, ``edge_attr``, ``edge_weight``) whose loss is evaluated.
    count : int
        Blocks, 2 <= count <= nodes.
    device : torch.device
    """

    def __init__(self, data, count: int, device):
        n = data.num_nodes
        if not 2 <= count <= n:
            raise ConfigError(f"trainer.blocks: {count} blocks for {n} nodes; valid: auto, or 1 .. {n}")
        labels = contiguous(data.edge_index, n, count)
        with warnings.catch_warnings():  # a band of ids may be disconnected: no matter for an exact evaluation
            warnings.simplefilter("ignore")
            partition = build_partition(data.edge_index, n, labels, 0, edge_weight=data.edge_weight,
                                        method="contiguous", num_parts=count)
        plan = halo_plan(partition, data.edge_index, n, data.edge_weight)
        parts = tuple(range(count))
        graphs = part_graphs(plan, data.edge_attr, data.edge_weight, device, parts)
        self.count = count
        self.path = HaloPath(plan, graphs, parts, _InProcess(), lambda k: contextlib.nullcontext())
        self.rows = {k: torch.as_tensor(plan.nodes[k], device=device) for k in parts}
        self.owned = {k: self.rows[k][: plan.num_owned[k]] for k in parts}
        #: nodes computed (owned + halo rows) / nodes: the work of one loss evaluation
        self.work = self.path.work(n)

    def _inputs(self, batch, k: int):
        return batch.x[:, self.rows[k]], batch.y[:, self.owned[k]], batch.w[:, self.owned[k]]

    def loss_backward(self, model, batch) -> torch.Tensor:
        """f on the full-graph ``batch`` (float64 [1]) with ∇f accumulated into the parameters' ``.grad``."""
        if batch.nodes is not None:
            raise RuntimeError("cache-blocked execution needs a full-graph batch (task.batch without nodes)")
        return self.path.loss_backward(model, functools.partial(self._inputs, batch))

    def __repr__(self) -> str:
        return f"Blocks({self.count}, work={self.work:.3f})"


def block_count(setting: int | str, model, num_nodes: int, row_bytes: int) -> int:
    """The blocks of ``trainer.blocks`` (``auto``, or a count) for ``model`` on ``num_nodes`` nodes whose
    layer activation takes ``row_bytes`` per node. ``auto`` is 1 for a model that does not expose its
    stages; a count above 1 for such a model is refused, naming the key."""
    staged = all(hasattr(model, a) for a in STAGES)
    if setting == "auto":
        return auto_blocks(num_nodes, row_bytes) if staged else 1
    count = int(setting)
    if count > num_nodes:
        raise ConfigError(f"trainer.blocks={count} exceeds the {num_nodes} nodes of the graph; valid: auto, or "
                          f"1 .. {num_nodes}")
    if count > 1 and not staged:
        raise ConfigError(f"trainer.blocks={count}: model {type(model).__name__} does not expose its layers "
                          "(encode, layer, decode, num_layers), so it cannot run layer by layer over blocks; set "
                          "trainer.blocks=1")
    return count


def row_bytes_of(model, batch_size: int, dtype=torch.float32) -> int:
    """Bytes of one node's widest layer activation: batch × the model's hidden width."""
    width = max((p.shape[0] for p in model.parameters() if p.dim() == 2), default=1)
    return int(batch_size * width * torch.finfo(dtype).bits // 8)


__all__ = ["Blocks", "auto_blocks", "block_count", "cache_bytes", "row_bytes_of"]
