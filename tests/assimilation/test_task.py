"""task=assimilate: the joint graph, the samples, the OI reference and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnddm.assimilation.task import OBS_NODE, AssimilateTask
from gnnddm.data.normalise import split_times
from gnnddm.errors import ConfigError
from gnnddm.graph.build import grid_graph
from gnnddm.testing.gallery import grid_data, latlon, station_data, weather_data

ERRORS = {"v0": 0.5, "v1": 0.2}


def _task(data=None, **kw):
    data = grid_data(8, 16, neighbours=8, times=8) if data is None else data
    kw.setdefault("obs", {"count": 40, "error": ERRORS})
    return AssimilateTask(data, **kw)


def _split(task):
    return split_times(task.data.times, train=0.5, val=0.25, test=0.25)


def test_observation_nodes_join_the_graph_with_edges_into_the_grid_only():
    task = _task(obs={"count": 40, "error": ERRORS, "neighbours": 3})
    n, o = task.num_grid, task.data.num_nodes - task.num_grid
    assert (n, o) == (128, 40)
    src, dst = task.data.edge_index
    new = src >= n
    assert (dst[new] < n).all() and not (dst >= n).any()  # nothing is sent to an observation node
    assert np.bincount(dst[new], minlength=n).tolist() == [3] * n  # each grid node hears its 3 nearest sites
    static = task.data.static[:, task.data.static_names.index(OBS_NODE)]
    assert static[:n].sum() == 0 and (static[n:] == 1).all()
    assert (task.data.area[n:] == 0).all()
    assert task.data.edge_attr.shape == (task.data.num_edges, 3)


def test_persistence_background_is_the_truth_one_lead_earlier_and_the_target_the_increment():
    task = _task(background={"kind": "persistence", "lead": 2})
    anchors = task.split_anchors(_split(task))
    assert anchors["train"].tolist() == [2, 3]  # t - lead must be in the split's steps
    b = task.batch(np.array([3]))
    n, v = task.num_grid, 2
    truth = torch.from_numpy(task.data.X[3, :n])
    background = torch.from_numpy(task.data.X[1, :n])
    torch.testing.assert_close(b.x[0, :n, :v], background)
    torch.testing.assert_close(b.y[0, :n], truth - background)
    torch.testing.assert_close(b.base[0, :n] + b.y[0, :n], b.truth[0, :n])
    assert not b.valid[0, n:].any() and not b.w[0, n:].any()  # observation nodes are not scored


def test_observation_nodes_carry_the_observation_and_its_innovation():
    task = _task()
    task.split_anchors(_split(task))
    b = task.batch(np.array([4]))
    n, v = task.num_grid, 2
    y = b.x[0, n:, :v].double().numpy()
    hx = task.H @ task.data.X[4, :n].astype(np.float64)
    hxb = task.H @ task.data.X[3, :n].astype(np.float64)
    # y = H x + ε with ε of the configured σ_o (normalised units: the gallery's data has std 1)
    residual = (y - hx) / np.array([0.5, 0.2])
    assert abs(residual.mean()) < 0.5 and 0.6 < residual.std() < 1.5
    scale = task.innovation_scale.numpy()  # 1 / σ_b fitted on the training split
    np.testing.assert_allclose(b.x[0, n:, 2 * v:3 * v].numpy(), (y - hxb) * scale, atol=1e-5)
    assert (b.x[0, :n, 2 * v:3 * v] == 0).all()  # grid nodes have no innovation


def test_with_oi_input_grid_nodes_read_the_oi_increment():
    task = _task(oi_input=True)
    task.split_anchors(_split(task))
    b = task.batch(np.array([4, 5]))
    n, v = task.num_grid, 2
    torch.testing.assert_close(b.x[:, :n, 2 * v:3 * v] / task.innovation_scale, task.baseline(b)[:, :n],
                               rtol=1e-5, atol=1e-6)
    assert b.x[:, :n, 2 * v:3 * v].abs().sum() > 0  # (without it, grid nodes read 0: tested above)


def test_a_subset_of_nodes_gets_the_same_rows_as_the_whole_batch():
    task = _task()
    task.split_anchors(_split(task))
    nodes = torch.tensor([0, 5, 77, 130, 150])
    whole, part = task.batch(np.array([4, 5])), task.batch(np.array([4, 5]), nodes=nodes)
    for name in ("x", "y", "w", "base", "truth", "valid"):
        torch.testing.assert_close(getattr(part, name), getattr(whole, name)[:, nodes])


def test_the_oi_baseline_improves_on_the_background_of_a_noise_background():
    lat, lon = latlon(18, 36)
    smooth = np.cos(np.deg2rad(lat)) * np.sin(np.deg2rad(lon))  # a smooth truth, constant in time
    data = grid_graph(weather_data(lat, lon, grid_shape=(18, 36), times=8, variables=1), neighbours=8)
    data = data.replace(X=np.repeat(smooth[None, :, None], 8, axis=0).astype(np.float32))
    task = _task(data, obs={"count": 300, "error": {"v0": 0.05}},
                 background={"kind": "noise", "error": {"v0": 0.5}, "length_scale": 1500.0})
    split = task.split_anchors(_split(task))
    from gnnddm.training.validate import Evaluator

    evaluator = Evaluator(task, _graph(task), split, batch_size=4)
    oi = evaluator.baseline("test")["v0"]
    zero = evaluator._reduce({"test": evaluator._sums("test", lambda b: torch.zeros_like(b.y))})["test_rmse/v0"]
    assert zero == pytest.approx(0.5, rel=0.3)  # the background's error is σ_b
    assert oi < 0.5 * zero
    stats = task.summary()["oi"]["v0"]
    assert stats["sigma_b"] == pytest.approx(0.5, rel=0.25) and stats["fitted"]["sigma_b"]


def _graph(task):
    from gnnddm.models.graph import prepare_graph

    d = task.data
    return prepare_graph(d.edge_index, d.num_nodes, d.edge_attr, d.edge_weight)


def test_missing_observations_follow_the_configured_fraction():
    task = _task(obs={"count": 400, "error": ERRORS, "missing": 0.3})
    valid = task.data.mask[:, task.num_grid:, 0]
    assert valid.mean() == pytest.approx(0.7, abs=0.05)


def test_sites_are_seeded():
    a, b, c = _task(seed=3), _task(seed=3), _task(seed=4)
    np.testing.assert_array_equal(a.data.lat, b.data.lat)
    np.testing.assert_array_equal(a.data.X, b.data.X)
    assert not np.array_equal(a.data.lat, c.data.lat)


@pytest.mark.parametrize(("kw", "key"), [
    ({"obs": {"count": 10, "error": {"v0": 0.5, "v1": 0.0}}}, "task.obs.error: v1"),
    ({"obs": {"count": 10, "error": {"v0": 0.5}}}, "task.obs.error: no value for ['v1']"),
    ({"obs": {"count": 10, "error": ERRORS, "missing": 1.0}}, "task.obs.missing"),
    ({"obs": {"count": 0, "error": ERRORS}}, "task.obs: no observation site"),
    ({"background": {"kind": "model"}}, "task.background.kind"),
])
def test_bad_settings_name_the_key(kw, key):
    with pytest.raises(ConfigError) as info:
        _task(**kw)
    assert key in str(info.value)


def test_sites_outside_a_regional_grid_are_dropped_or_refused(tmp_path):
    lat, lon = latlon(10, 10)
    lat, lon = 40 + (lat + 90) / 18, -10 + (lon + 180) / 18
    data = grid_graph(weather_data(lat, lon, grid_shape=(10, 10), times=6), neighbours=4)
    table = tmp_path / "stations.csv"
    table.write_text("code,lat,lon\na,45.0,0.0\nb,60.0,0.0\nc,44.0,-5.0\n")
    with pytest.warns(UserWarning, match="1 of 3 observation sites lie outside"):
        task = _task(data, obs={"count": 0, "stations": str(table), "error": ERRORS})
    assert task.data.num_nodes == 100 + 2
    table.write_text("code,lat,lon\nb,60.0,0.0\n")
    with pytest.raises(ConfigError, match="none of the 1 observation sites lies in the domain"):
        _task(data, obs={"count": 0, "stations": str(table), "error": ERRORS})


@pytest.mark.parametrize(("count", "missing", "empty"), [(2, 0.999, "8 of 8"), (1, 0.5, "of 8")])
def test_a_time_without_a_valid_observation_names_the_keys(count, missing, empty):
    with pytest.raises(ConfigError, match=f"task.obs: no valid observation at [0-9]* ?{empty} time steps"):
        _task(obs={"count": count, "error": ERRORS, "missing": missing}, seed=1)


def test_station_data_cannot_be_the_truth():
    with pytest.raises(ConfigError, match="gridded data set"):
        AssimilateTask(station_data(), obs={"count": 5, "error": {"v0": 1.0, "v1": 1.0}})
