"""The training batch stream: its contract with the tasks (:class:`gnnddm.data.prefetch.BatchSource`), and
reading ahead that changes nothing of what is drawn."""

from __future__ import annotations

import numpy as np
import torch

from gnnddm.data.prefetch import BatchSource, BatchStream
from gnnddm.tasks import ForecastTask, InterpolateTask
from gnnddm.tasks.rollout_training import RolloutBatches
from gnnddm.testing.gallery import grid_data


def test_every_batch_source_of_the_loop_keeps_the_contract():
    """What the loop streams from: the tasks, rollout training's batches (and the assimilation task, tested
    with its own module) read and assemble as the protocol says."""
    data = grid_data(times=12)
    sources = [ForecastTask(data), InterpolateTask(data), RolloutBatches(ForecastTask(data, rollout=2), 2)]
    assert all(isinstance(s, BatchSource) for s in sources)
    assert not isinstance(object(), BatchSource)


def test_reading_ahead_draws_the_same_batches_as_reading_on_demand():
    data = grid_data(times=20)
    task = ForecastTask(data)
    anchors = task.anchors(np.arange(data.num_times))

    def drawn(prefetch: bool) -> list[torch.Tensor]:
        with BatchStream(task, anchors, 3, np.random.default_rng(5), None, count=4, prefetch=prefetch) as stream:
            return [stream.next().x for _ in range(4)]

    for a, b in zip(drawn(True), drawn(False), strict=True):
        assert torch.equal(a, b)
