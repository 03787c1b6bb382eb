"""Mini-batches: a batch of some rows equals those rows of the full batch (what a rank assembles)."""

import numpy as np
import pytest
import torch

from gnnddm.tasks import ForecastTask, InterpolateTask
from gnnddm.testing.gallery import grid_data


@pytest.mark.parametrize(
    "make",
    [lambda d: ForecastTask(d), lambda d: ForecastTask(d, history=2, lead=2),
     lambda d: InterpolateTask(d, hide_fraction=0.4)],
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


def _node_split_task(**kw):
    data = grid_data(nlat=6, nlon=12, missing=0.0)
    return data, InterpolateTask(data, hide_fraction=0.3, split_by="nodes", node_split={"val": 0.2, "test": 0.1}, **kw)


def test_node_split_never_shows_held_out_nodes_in_training():
    data, task = _node_split_task()
    role = torch.from_numpy(task.node_role)
    assert int((role == 1).sum()) == round(0.2 * data.num_nodes) and int((role == 2).sum()) == round(0.1 * 72)
    anchors = task.split_anchors(None)
    assert all(np.array_equal(a, np.arange(data.num_times)) for a in anchors.values())
    v = data.num_vars
    b = task.batch(anchors["train"][:4], np.random.default_rng(1), split="train")
    visible = b.x[..., v : 2 * v] > 0
    assert not visible[:, role != 0].any()  # validation and test nodes: never input ...
    assert not b.valid[:, role != 0].any()  # ... nor scored
    assert b.valid[:, role == 0].any() and visible[:, role == 0].any()


@pytest.mark.parametrize("split,code", [("val", 1), ("test", 2)])
def test_node_split_evaluation_scores_its_nodes_from_the_training_nodes(split, code):
    data, task = _node_split_task()
    role = torch.from_numpy(task.node_role)
    b = task.batch(np.arange(2), np.random.default_rng(1), split=split)
    v = data.num_vars
    visible = (b.x[..., v : 2 * v] > 0).all(-1)
    assert torch.equal(b.valid.all(-1), (role == code)[None].expand(2, -1))
    assert torch.equal(visible, (role == 0)[None].expand(2, -1))
    assert task.valid_counts(np.arange(2), split).tolist() == [2 * int((role == code).sum())] * v


def test_split_by_auto_follows_the_number_of_time_steps():
    data = grid_data(nlat=6, nlon=12)
    assert InterpolateTask(data).split_by == "time"
    one = data.replace(X=data.X[:1], mask=data.mask[:1], times=data.times[:1])
    assert InterpolateTask(one).split_by == "nodes"


@pytest.mark.parametrize("node_split", [{"val": 0.0}, {"val": 0.6, "test": 0.5}, {"train": 0.5}, {"val": "a"}])
def test_bad_node_split_names_the_key(node_split):
    from gnnddm.errors import ConfigError

    with pytest.raises(ConfigError, match="task.node_split"):
        InterpolateTask(grid_data(nlat=6, nlon=12), split_by="nodes", node_split=node_split)
