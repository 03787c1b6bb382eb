"""Lead-time forecasts: the rollout feeds its own prediction back, and the scores are the textbook ones."""

import numpy as np
import pytest
import torch

from gnnddm.errors import ConfigError
from gnnddm.models.graph import prepare_graph
from gnnddm.tasks import ForecastTask, InterpolateTask
from gnnddm.tasks.rollout import Climatology, LeadScores, Rollout, metrics, score_leads
from gnnddm.testing.gallery import LinearGNN, grid_data, station_data


def _setup(history=1, lead=1, times=12, missing=0.2, seed=0):
    data = grid_data(nlat=4, nlon=8, times=times, missing=missing, seed=seed)
    task = ForecastTask(data, history=history, lead=lead)
    torch.manual_seed(seed)
    model = LinearGNN(task.in_channels, task.out_channels)
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    return data, task, model, graph


class _Zero(torch.nn.Module):
    """Predicts no change: its rollout is persistence."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, graph):
        return torch.zeros(*x.shape[:2], self.out)


@pytest.mark.parametrize("history,lead", [(1, 1), (2, 2)])
def test_lead_one_is_the_one_step_prediction_of_training(history, lead):
    data, task, model, graph = _setup(history, lead)
    anchors = task.anchors(np.arange(data.num_times))[:3]
    batch = task.batch(anchors)
    with torch.no_grad():
        one_step = batch.base + model(batch.x, graph)
    pred = Rollout(task, model, graph).forecast(anchors, 1)
    assert torch.allclose(pred[:, 0], one_step, atol=1e-6)


def test_each_step_reads_the_previous_prediction_with_every_entry_valid():
    data, task, model, graph = _setup(history=2, lead=1)
    t0 = np.array([3, 5])
    pred = Rollout(task, model, graph).forecast(t0, 3)
    # lead 2 by hand: the input is the lead-1 prediction (valid everywhere) and, as its history, the truth at t0
    x0, m0 = task.fields(t0)
    static = task._static.expand(2, -1, -1)
    t1 = torch.as_tensor(t0 + 1)
    feats = [pred[:, 0], torch.ones_like(pred[:, 0]), x0, m0.float(), static,
             task.time_features(t1), task.time_features(t1 + 1)]
    with torch.no_grad():
        lead2 = pred[:, 0] + model(torch.cat(feats, -1), graph)
    assert torch.allclose(pred[:, 1], lead2, atol=1e-6)
    # lead 3 reads predictions only
    feats = [pred[:, 1], torch.ones_like(pred[:, 1]), pred[:, 0], torch.ones_like(pred[:, 0]), static,
             task.time_features(t1 + 1), task.time_features(t1 + 2)]
    with torch.no_grad():
        lead3 = pred[:, 1] + model(torch.cat(feats, -1), graph)
    assert torch.allclose(pred[:, 2], lead3, atol=1e-6)


def test_a_model_predicting_no_change_scores_exactly_as_persistence():
    data, task, _, graph = _setup(missing=0.1)
    clim = Climatology.from_steps(task, np.arange(6))
    rollout = Rollout(task, _Zero(data.num_vars), graph)
    result = score_leads(rollout, clim, np.arange(6, 12))
    for score in ("rmse", "bias", "acc"):
        assert np.allclose(result["scores"]["model"][score], result["scores"]["persistence"][score],
                           equal_nan=True), score
    assert result["leads"] == 5 and result["per_lead_inits"] == [5, 4, 3, 2, 1]


def test_scores_are_the_textbook_formulas():
    """RMSE, bias (area weighted, over valid entries) and the ACC averaged over initial times, in numpy."""
    data, task, model, graph = _setup(missing=0.15, times=10)
    train, test = np.arange(5), np.arange(5, 10)
    clim = Climatology.from_steps(task, train)
    result = score_leads(Rollout(task, model, graph, batch_size=3), clim, test, leads=2)
    X, M = data.X.astype(np.float64), data.mask
    c = (X[train] * M[train]).sum(0) / np.maximum(M[train].sum(0), 1)
    assert np.allclose(clim.values[0].numpy(), c, atol=1e-6)
    inits = [5, 6, 7]  # lead 2 stays in the split from 5, 6 and 7; lead 1 also from 8
    pred = Rollout(task, model, graph).forecast(np.array([5, 6, 7, 8]), 1).numpy().astype(np.float64)
    pred2 = Rollout(task, model, graph).forecast(np.array(inits), 2).numpy().astype(np.float64)
    a = data.area[None, :, None]
    std = data.std
    for k, (f, starts) in enumerate([(pred[:, 0], [5, 6, 7, 8]), (pred2[:, 1], inits)]):
        o = X[np.array(starts) + k + 1]
        valid = M[np.array(starts) + k + 1] & M[np.array(starts)]
        w = a * valid
        rmse = np.sqrt((w * (f - o) ** 2).sum((0, 1)) / w.sum((0, 1))) * std
        bias = (w * (f - o)).sum((0, 1)) / w.sum((0, 1)) * std
        fa, oa = f - c, o - c
        acc = ((w * fa * oa).sum(1) / np.sqrt((w * fa**2).sum(1) * (w * oa**2).sum(1))).mean(0)
        assert np.allclose(result["scores"]["model"]["rmse"][k], rmse, rtol=1e-5)
        assert np.allclose(result["scores"]["model"]["bias"][k], bias, rtol=1e-4, atol=1e-7)
        assert np.allclose(result["scores"]["model"]["acc"][k], acc, rtol=1e-5)
        p = X[np.array(starts)]
        prmse = np.sqrt((w * (p - o) ** 2).sum((0, 1)) / w.sum((0, 1))) * std
        assert np.allclose(result["scores"]["persistence"]["rmse"][k], prmse, rtol=1e-5)
        crmse = np.sqrt((w * (c - o) ** 2).sum((0, 1)) / w.sum((0, 1))) * std
        assert np.allclose(result["scores"]["climatology"]["rmse"][k], crmse, rtol=1e-5)
    assert np.isnan(result["scores"]["climatology"]["acc"]).all()


def test_shares_of_ranks_add_up_to_one_process():
    data, task, model, graph = _setup(times=16)
    clim = Climatology.from_steps(task, np.arange(8))
    rollout = Rollout(task, model, graph, batch_size=2)
    whole = score_leads(rollout, clim, np.arange(8, 16))

    flats = []
    for rank in range(3):
        captured = {}

        class Comm:
            def sum_control_(self, flat, captured=captured):
                captured["flat"] = flat.clone()

        score_leads(rollout, clim, np.arange(8, 16), rank=rank, world=3, comm=Comm())
        flats.append(captured["flat"])
    scores = LeadScores(whole["leads"], data.num_vars)
    scores.load_flat(sum(flats))
    assert np.allclose(scores.table(data.std)["model"]["rmse"], whole["scores"]["model"]["rmse"], equal_nan=True)
    assert np.allclose(scores.table(data.std)["model"]["acc"], whole["scores"]["model"]["acc"], equal_nan=True)


def test_climatology_per_hour_of_day_when_the_training_split_repeats_the_hours():
    data = grid_data(nlat=2, nlon=4, times=48, missing=0.0)  # hourly, two days
    task = ForecastTask(data)
    clim = Climatology.from_steps(task, np.arange(48))
    assert clim.hours == tuple(range(24))
    assert np.allclose(clim.values[3].numpy(), data.X[[3, 27]].mean(0), atol=1e-6)
    assert torch.allclose(clim.at_times(data.times[[27]])[0], clim.values[3])
    once = Climatology.from_steps(task, np.arange(24))  # each hour once: per node only
    assert once.hours is None and np.allclose(once.values[0].numpy(), data.X[:24].mean(0), atol=1e-6)


def test_stations_and_metric_names():
    data = station_data(times=10)
    task = ForecastTask(data)
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight)
    model = LinearGNN(task.in_channels, task.out_channels)
    result = score_leads(Rollout(task, model, graph), Climatology.from_steps(task, np.arange(5)), np.arange(5, 10))
    names = metrics(result)
    assert "eval/rmse/v0/1h" in names and "eval/persistence/acc/v1/4h" in names
    assert "eval/climatology/rmse/v0/2h" in names and not any(k.startswith("eval/climatology/acc") for k in names)


def test_bad_requests_name_the_key():
    data, task, model, graph = _setup()
    clim = Climatology.from_steps(task, np.arange(6))
    with pytest.raises(ConfigError, match=r"leads=9: the split allows 1 to 5"):
        score_leads(Rollout(task, model, graph), clim, np.arange(6, 12), leads=9)
    with pytest.raises(ConfigError, match="task=interpolate"):
        Rollout(InterpolateTask(data), model, graph)
