"""Mini-batches: a batch of some rows equals those rows of the full batch (what a rank assembles)."""

import numpy as np
import pytest
import torch
from ddm.gallery import grid_data

from gnnddm.tasks import ForecastTask, InterpolateTask


@pytest.mark.parametrize(
    "make",
    [lambda d: ForecastTask(d), lambda d: ForecastTask(d, history=2, lead=2), lambda d: InterpolateTask(d, 0.4)],
    ids=["forecast", "forecast-history2-lead2", "interpolate"],
)
def test_a_batch_of_some_rows_is_those_rows_of_the_full_batch(make):
    data = grid_data(nlat=6, nlon=12, missing=0.2)
    assert not data.mask.all()  # missing entries change the weights' normalisation
    task = make(data)
    anchors = task.anchors(np.arange(data.num_times))[:3]
    nodes = torch.tensor([0, 5, 6, 7, 30, 41, 71])
    full = task.batch(anchors, np.random.default_rng(4))
    part = task.batch(anchors, np.random.default_rng(4), nodes=nodes)
    assert part.nodes is nodes and full.nodes is None
    for name in ("x", "y", "w", "base", "truth", "valid"):
        a, b = getattr(full, name), getattr(part, name)
        assert b.shape == (len(anchors), len(nodes), *a.shape[2:]), name
        assert torch.equal(a[:, nodes], b), name
    # the weights keep the full batch's normalisation (they are not renormalised over the subset)
    assert float(part.w.sum()) < 0.5 * float(full.w.sum())
