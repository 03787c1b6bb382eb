"""The training mini-batches in order, the fields of the next one read in a background thread.

Reading a batch's time steps from a file (:mod:`gnnddm.data.lazy`) takes about as long as a small model's
step; :class:`BatchStream` draws the next batch's anchors as soon as the current batch is assembled and
reads its fields while the current one computes, so that only the part of the read that the step does not
cover is waited for (:attr:`BatchStream.wait_seconds`, logged as ``data/wait_seconds``).

The random draws keep their order (the anchors of batch k + 1 follow the draws that assembled batch k, as
without reading ahead), and :attr:`BatchStream.rng_state` is the generator's state before the draw made
ahead: what a checkpoint saves, so that a resumed run draws the same batches.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class BatchSource(Protocol):
    """What :class:`BatchStream` asks of the task it draws from (a :class:`gnnddm.tasks.Task`, rollout
    training's batches, the assimilation task): reading is split from assembling, so that the part that
    touches the data can run in a background thread.
    """

    def read(self, anchors: np.ndarray, nodes: np.ndarray | None = None) -> Any:
        """The fields the samples at ``anchors`` need (rows ``nodes``, or all); None when nothing is read."""

    def batch(self, anchors: np.ndarray, rng: np.random.Generator | None = None, nodes: np.ndarray | None = None,
              split: str = "train", fields: Any = None) -> Any:
        """The mini-batch of ``anchors`` (a :class:`gnnddm.tasks.Batch`) from the ``fields`` :meth:`read`
        returned for them; the random draws of the batch (interpolation masks) come from ``rng``."""


class BatchStream:
    """``next()``: the mini-batch of the next iteration (``count`` of them in all).

    Parameters
    ----------
    task : BatchSource
        A task, or rollout training's batches.
    anchors : int64 [S]
        The training samples to draw from, ``batch_size`` without replacement per batch.
    rng : numpy.random.Generator
    nodes : int64 [n] or None
        The rows assembled (a rank's subdomains), or None for all.
    count : int
        Batches that will be asked for (none is read ahead after the last).
    prefetch : bool
        Read ahead in a background thread; False reads each batch when it is asked for.
    """

    def __init__(self, task: BatchSource, anchors, batch_size: int, rng: np.random.Generator, nodes, *, count: int,
                 prefetch: bool = True):
        self.task, self.anchors, self.rng, self.nodes = task, np.asarray(anchors), rng, nodes
        self.batch_size = min(int(batch_size), len(self.anchors))
        self.left = int(count)
        self.wait_seconds = 0.0
        self.rng_state = rng.bit_generator.state
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gnnddm-prefetch") if prefetch else None
        self._ahead = None  # (anchors, future or fields) of the next batch

    def _draw(self):
        chosen = self.rng.choice(self.anchors, size=self.batch_size, replace=False)
        if self._pool is None:
            return chosen, None
        return chosen, self._pool.submit(self.task.read, chosen, self.nodes)

    def next(self):
        """The next batch (assembled here; its fields read ahead when prefetching)."""
        chosen, pending = self._ahead if self._ahead is not None else self._draw()
        self._ahead = None
        start = time.perf_counter()
        fields = self.task.read(chosen, self.nodes) if pending is None else pending.result()
        self.wait_seconds += time.perf_counter() - start
        batch = self.task.batch(chosen, self.rng, nodes=self.nodes, fields=fields)
        self.rng_state = self.rng.bit_generator.state
        self.left -= 1
        if self.left > 0 and self._pool is not None:
            self._ahead = self._draw()
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
