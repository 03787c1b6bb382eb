"""Evaluation: the same metrics as a direct computation, and ranks that share the samples out add up to
one process evaluating all of them."""

import numpy as np
import pytest
import torch

from gnnddm.models.graph import prepare_graph
from gnnddm.tasks import Batch, InterpolateTask, loss, rmse_per_variable
from gnnddm.testing.gallery import EdgeGNN, grid_data
from gnnddm.training.validate import Evaluator


class _Share:
    """A communicator stand-in for one of ``world_size`` ranks (only what the evaluator asks)."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size


def _setup():
    data = grid_data(nlat=6, nlon=12, times=12, missing=0.1)
    task = InterpolateTask(data, hide_fraction=0.4)  # random masks: every rank must draw the same ones
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    torch.manual_seed(0)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1])
    sets = {"train": np.arange(0, 5), "val": np.arange(5, 12)}
    return data, task, graph, model, sets


def test_metrics_equal_the_direct_computation():
    data, task, graph, model, sets = _setup()
    ev = Evaluator(task, graph, sets, batch_size=2, seed=3)
    got = ev(model)
    with torch.no_grad():
        for name in ("train", "val"):
            batches = ev.batches[name]
            assert len(batches) == ev.num_batches[name] == int(np.ceil(len(sets[name]) / 2))
            outs = [model(b.x, graph) for b in batches]
            losses = [float(loss(o, b)) for o, b in zip(outs, batches, strict=True)]
            assert got[f"{name}_loss"] == pytest.approx(np.mean(losses))
        fields = ("x", "y", "w", "base", "truth", "valid")
        cat = Batch(**{f: torch.cat([getattr(b, f) for b in batches]) for f in fields})
        direct = rmse_per_variable(torch.cat([b.base + o for b, o in zip(batches, outs, strict=True)]), cat, data)
    assert {k.split("/")[1]: v for k, v in got.items() if k.startswith("val_rmse/")} == pytest.approx(direct)
    assert "train_rmse/" not in " ".join(got)


@pytest.mark.slow
def test_two_ranks_share_the_batches_and_their_sums_add_up_to_one_process():
    data, task, graph, model, sets = _setup()
    one = Evaluator(task, graph, sets, batch_size=2, seed=3)
    ranks = [Evaluator(task, graph, sets, batch_size=2, seed=3, comm=_Share(r, 2)) for r in (0, 1)]
    for name in ("train", "val"):
        mine = [b for ev in ranks for b in ev.batches[name]]
        assert len(mine) == len(one.batches[name])  # a partition of the batches, none twice
        # the same samples (and interpolation masks) as the single process: batch i on rank i % 2
        for i, b in enumerate(one.batches[name]):
            assert torch.equal(ranks[i % 2].batches[name][i // 2].x, b.x)
    total = {k: ranks[0].local_sums(model)[k] + ranks[1].local_sums(model)[k] for k in ("train", "val")}
    single = one.local_sums(model)
    for k in total:
        torch.testing.assert_close(total[k], single[k], rtol=1e-12, atol=0)


def test_a_splits_samples_do_not_depend_on_the_other_splits():
    """``gnnddm evaluate`` scores the test split alone; the training loop holds it beside train and val."""
    data, task, graph, model, sets = _setup()
    alone = Evaluator(task, graph, {"test": sets["val"]}, batch_size=2, seed=3)
    beside = Evaluator(task, graph, {"train": sets["train"], "test": sets["val"]}, batch_size=2, seed=3)
    for a, b in zip(alone.batches["test"], beside.batches["test"], strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.valid, b.valid)
    other_seed = Evaluator(task, graph, {"test": sets["val"]}, batch_size=2, seed=4)
    assert not torch.equal(other_seed.batches["test"][0].valid, alone.batches["test"][0].valid)
    assert alone.scores(model, "test") == beside.scores(model, "test")


def test_scores_hold_loss_rmse_baseline_skill_and_samples():
    data, task, graph, model, sets = _setup()
    ev = Evaluator(task, graph, sets, batch_size=2, seed=3)
    got = ev.scores(model, "val")
    assert got["val_loss"] == ev(model, splits=("val",))["val_loss"]
    assert got["data/samples/val"] == len(sets["val"])
    for var, base in ev.baseline("val").items():
        assert got[f"val_baseline_rmse/{var}"] == base
        assert got[f"val_skill/{var}"] == pytest.approx(100 * (1 - got[f"val_rmse/{var}"] / base))
    assert ev.scores(model, "test") == {}  # no test samples held
    with pytest.raises(ValueError, match="train"):
        ev.scores(model, "train")
