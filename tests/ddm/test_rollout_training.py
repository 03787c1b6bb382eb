"""Rollout training (``task.rollout``): the k-step model is the inference rollout, its loss the mean of the
steps' errors, its gradients those of the rollout; every algorithm trains it, and the exact ones
(``sync`` with an overlap of its k·L hops, ``halo_sync`` with one) follow ``global``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnddm.ddm.halo_sync import HaloSync
from gnnddm.ddm.objective import Objective
from gnnddm.ddm.sync import Sync
from gnnddm.errors import ConfigError
from gnnddm.models.graph import prepare_graph
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask, rollout_phases
from gnnddm.tasks.rollout import Rollout
from gnnddm.tasks.rollout_training import RolloutBatches, RolloutModel, RolloutTraining
from gnnddm.testing.algorithms import assert_follows_global
from gnnddm.testing.gallery import contiguous_parts, grid_data, real_models, station_data, to_dtype
from gnnddm.testing.runs import tiny_run

MODELS = real_models()


def _model(name, task, data, seed=0, layers=2):
    torch.manual_seed(seed)
    cls = MODELS[name]
    kw = {"hidden": 8, "layers": layers}
    if name == "gatv2":
        kw["heads"] = 2
    if data.edge_attr is not None and name in ("gatv2", "interaction"):
        kw["edge_dim"] = int(data.edge_attr.shape[1])
    return cls(task.in_channels, task.out_channels, **kw).double()


def _graph(data):
    return prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight).astype(torch.float64)


def _problem(parts=1, overlap=0, rollout=2, history=1, times=12, anchors=(0, 3), nlat=6):
    data = grid_data(nlat, 8, times=times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        partition = build_partition(data.edge_index, data.num_nodes, contiguous_parts(data.num_nodes, parts),
                                    overlap)
    objective = Objective(data, partition)
    task = ForecastTask(data, history=history, rollout=rollout)
    batches = RolloutBatches(task, rollout)
    return data, objective, task, to_dtype(batches.batch(np.array(anchors) + history - 1), torch.float64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_step_is_the_model_and_the_forecast_batch(name):
    data = grid_data(6, 8, times=8)
    task = ForecastTask(data, rollout=3)
    model = _model(name, task, data)
    graph = _graph(data)
    one = RolloutBatches(task, 1).batch(np.array([0, 2]))
    ref = task.batch(np.array([0, 2]))
    for f in ("x", "y", "w", "base", "truth", "valid"):
        torch.testing.assert_close(getattr(one, f), getattr(ref, f))
    x = one.x.double()
    torch.testing.assert_close(RolloutModel(model, task, 1)(x, graph), model(x, graph))


@pytest.mark.parametrize("history", [1, 2])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_k_steps_are_the_inference_rollout(name, history):
    """Every step's state, from data with missing entries: what :class:`Rollout` forecasts (float64)."""
    data = station_data(n=14, k=3, times=12, missing=0.2)
    task = ForecastTask(data, history=history, rollout=3)
    graph = _graph(data)
    model = _model(name, task, data)
    inits = np.array([history - 1, 4, 6])
    batch = to_dtype(RolloutBatches(task, 3).batch(inits), torch.float64)
    assert bool((~batch.valid).any())  # some entries are missing, as in real station series
    with torch.no_grad():
        out = RolloutModel(model, task, 3)(batch.x, graph)
    forecast = Rollout(task, _Float64(model), graph).forecast(inits, 3)  # [B, k, N, V]
    start = batch.base[..., : data.num_vars]
    for j in range(3):
        torch.testing.assert_close(out[..., j * data.num_vars:(j + 1) * data.num_vars],
                                   forecast[:, j] - start, rtol=1e-10, atol=1e-12)


class _Float64(torch.nn.Module):
    """The model on float64 inputs (the forecast reads float32 fields)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, graph):
        return self.model(x.double(), graph)


def test_the_loss_weights_each_step_by_its_valid_entries_over_all_steps():
    data = station_data(n=14, k=3, times=12, missing=0.2)
    task = ForecastTask(data, rollout=3)
    batch = RolloutBatches(task, 3).batch(np.array([0, 4]))
    v = data.num_vars
    counts = [int(batch.valid[..., j * v:(j + 1) * v].sum()) for j in range(3)]
    one = task.batch(np.array([0, 4]))  # step 1's weights, normalised by its own count
    torch.testing.assert_close(batch.w[..., :v] * sum(counts), one.w * counts[0])
    # a rank's rows keep the normalisation of the whole batch
    nodes = torch.arange(3, 9)
    part = RolloutBatches(task, 3).batch(np.array([0, 4]), nodes=nodes)
    torch.testing.assert_close(part.w, batch.w[:, nodes])
    torch.testing.assert_close(part.y, batch.y[:, nodes])


def test_gradients_flow_through_the_rollout():
    """Autograd's gradient of the 3-step loss against central differences (float64)."""
    data, objective, task, batch = _problem(rollout=3)
    losses = objective.on(batch)
    model = RolloutModel(_model("sage", task, data), task, 3)
    loss = losses.global_loss(model)
    grad = torch.autograd.grad(loss, list(model.parameters()))
    flat = torch.cat([g.reshape(-1) for g in grad])
    params = list(model.parameters())
    rng = np.random.default_rng(0)
    for _ in range(4):
        i = int(rng.integers(len(params)))
        j = int(rng.integers(params[i].numel()))
        with torch.no_grad():
            p = params[i].view(-1)
            p[j] += 1e-6
            up = float(losses.global_loss(model))
            p[j] -= 2e-6
            down = float(losses.global_loss(model))
            p[j] += 1e-6
        offset = sum(q.numel() for q in params[:i]) + j
        assert flat[offset].item() == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-10)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("cls", [Sync, HaloSync])
def test_sync_and_halo_sync_follow_global_on_rollouts(cls, name):
    """Two steps of a two-layer model: sync with an overlap of the rollout's hops, halo_sync with one."""
    layers, steps = 2, 2
    hops = steps * layers + (1 if name == "gcn" else 0)
    # 24 rows in 3 bands of 8: an overlap of 4 or 5 rows leaves every subdomain short of the whole grid
    data, objective, task, batch = _problem(parts=3, overlap=hops if cls is Sync else 1, rollout=steps, nlat=24)
    assert max(len(objective.nodes_of(k)) for k in range(3)) < data.num_nodes
    m_global = RolloutModel(_model(name, task, data, layers=layers), task, steps)
    m_dd = RolloutModel(_model(name, task, data, layers=layers), task, steps)
    assert m_dd.num_message_passing_layers == hops
    assert_follows_global(cls, objective, batch, m_global, m_dd, steps=3)


def test_the_subdomain_losses_sum_to_the_global_loss_from_an_overlap_of_the_rollouts_hops():
    """Two steps of two layers: exact from an overlap of 4 hops, not with 3 (the warning's number)."""
    sums = {}
    for overlap in (3, 4):
        data, objective, task, batch = _problem(parts=3, overlap=overlap, rollout=2, nlat=24)
        assert max(len(objective.nodes_of(k)) for k in range(3)) < data.num_nodes
        model = RolloutModel(_model("sage", task, data, layers=2), task, 2)
        losses = objective.on(batch)
        with torch.no_grad():
            sums[overlap] = (float(losses.global_loss(model)),
                             sum(float(losses.local_loss(model, k)) for k in range(3)))
    assert sums[4][1] == pytest.approx(sums[4][0], rel=1e-12)
    assert abs(sums[3][1] - sums[3][0]) > 1e-9 * abs(sums[3][0])  # far above float64 round-off


def test_the_schedule_sets_the_rollout_of_each_iteration():
    assert rollout_phases(3) == [(1, 3)]
    assert rollout_phases(1, [[10, 4], [5, 2]]) == [(1, 1), (5, 2), (10, 4)]
    data = grid_data(6, 8, times=12)
    task = ForecastTask(data, rollout_schedule=[[1, 1], [4, 3]])
    assert task.rollout == 3 and [task.rollout_at(i) for i in (1, 3, 4, 9)] == [1, 1, 3, 3]
    training = RolloutTraining(task, _model("sage", task, data).float())
    assert training.at(2) == 1 and training.model.steps == 1 and training.batches.steps == 1
    assert training.at(4) == 3 and training.model.in_channels == task.in_channels + 8
    batch = training.batches.batch(np.array([0, 1]))
    assert batch.y.shape[-1] == 3 * data.num_vars
    out = training.model(batch.x, _graph(data).astype(torch.float32))
    assert out.shape == batch.y.shape


def test_training_samples_need_the_longest_rollout():
    from gnnddm.data.normalise import TimeSplit

    data = grid_data(6, 8, times=12)
    split = TimeSplit(train=np.arange(8), val=np.arange(8, 10), test=np.arange(10, 12))
    assert list(ForecastTask(data, rollout=3).split_anchors(split)["train"]) == [0, 1, 2, 3, 4]
    assert list(ForecastTask(data, rollout=3).split_anchors(split)["val"]) == [8]  # scored one step ahead
    assert list(ForecastTask(data).split_anchors(split)["train"]) == list(range(7))


@pytest.mark.parametrize("kw, key", [({"rollout": 0}, "task.rollout"),
                                     ({"rollout": 2, "rollout_schedule": [[1, 1], [5, 3]]}, "task.rollout=2"),
                                     ({"rollout_schedule": [[0, 2]]}, "task.rollout_schedule"),
                                     ({"rollout_schedule": [[3, 0]]}, "task.rollout_schedule"),
                                     ({"rollout_schedule": [[1, 1], [1, 2]]}, "task.rollout_schedule"),
                                     ({"rollout_schedule": [[1, 1, 2]]}, "task.rollout_schedule")])
def test_bad_rollouts_are_refused_naming_the_key(kw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ForecastTask(grid_data(6, 8, times=12), **kw)


DDM = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "ddm").glob("*.yaml"))


def _tiny(tmp_path, *extra, out="out"):
    return tiny_run("model=sage", "partition.num_parts=2", "partition.overlap=4", "trainer.max_iterations=3",
                    "trainer.eval_every=3", "tracking.enabled=false", f"output_dir={tmp_path / out}", *extra)


@pytest.mark.parametrize("ddm", DDM)
def test_every_algorithm_trains_a_rollout(tmp_path, ddm):
    """``gnnddm train task.rollout=2`` under each ``ddm`` option: it finishes with a finite one-step
    validation loss, and saves the one-step model's weights (what evaluate, predict and the lead scores read),
    not the rollout's."""
    from gnnddm.config import compose
    from gnnddm.training import train

    summary = train(compose(_tiny(tmp_path, f"ddm={ddm}", "task.rollout=2")))
    assert summary["status"] == "finished" and np.isfinite(summary["final"]["val_loss"])
    weights = torch.load(tmp_path / "out" / "model.pt", weights_only=False)["model"]
    assert weights and not any(k.startswith("base.") for k in weights)


def test_a_scheduled_rollout_logs_its_steps_and_a_too_long_one_is_refused(tmp_path):
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train

    tracked = [a for a in _tiny(tmp_path, "ddm=halo_sync", "partition.overlap=1", "task.rollout_schedule=[[1,1],[3,2]]",
                                "trainer.max_iterations=4") if a != "tracking.enabled=false"]
    summary = train(compose([*tracked, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]))
    history = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(
        summary["mlflow_run_id"], "train/rollout_steps")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    with pytest.raises(ConfigError, match=r"task\.rollout"):
        train(compose(_tiny(tmp_path, "task.rollout=40", out="long")))


@pytest.mark.parametrize("cls", [Sync, HaloSync])
def test_the_encoder_processor_decoder_with_recompute_follows_global_on_rollouts(cls, monkeypatch):
    """The joint grid + mesh graph, two steps, ``model.recompute`` (blocks of a few rows recomputed in the
    backward pass) on the subdomains against whole layers in ``global``."""
    import gnnddm.models.encode_process_decode as epd
    from gnnddm.graph.icosahedral import icosahedral_graph
    from gnnddm.models.encode_process_decode import EncodeProcessDecode
    from gnnddm.partition.mesh import mesh
    from gnnddm.testing.gallery import latlon, weather_data

    monkeypatch.setattr(epd, "BLOCK_COST", 16)
    lat, lon = latlon(8, 16)
    data = icosahedral_graph(weather_data(lat, lon, grid_shape=(8, 16), times=6, variables=2), refinement=1)
    p = mesh(data.edge_index, data.num_nodes, 3, edge_attr=data.edge_attr, edge_attr_names=data.edge_attr_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        partition = build_partition(data.edge_index, data.num_nodes, p, 6 if cls is Sync else 1)
    objective = Objective(data, partition)
    task = ForecastTask(data, rollout=2)
    batch = to_dtype(RolloutBatches(task, 2).batch(np.arange(3)), torch.float64)

    def model(recompute):
        torch.manual_seed(0)
        base = EncodeProcessDecode(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1], hidden=8,
                                   processor_layers=1, recompute=recompute).double()
        return RolloutModel(base, task, 2)

    m_global, m_dd = model(False), model(True)
    assert m_dd.num_message_passing_layers == 6
    assert_follows_global(cls, objective, batch, m_global, m_dd, steps=3)


def test_the_overlap_warning_counts_the_longest_rollouts_hops(tmp_path):
    """A schedule that starts with one step still needs the overlap of its longest rollout for exact
    subdomain problems: the run says so, and records them as not exact."""
    from gnnddm.config import compose
    from gnnddm.training import train

    args = _tiny(tmp_path, "ddm=sync", "partition.overlap=2", "task.rollout_schedule=[[1,1],[3,2]]")
    with pytest.warns(UserWarning, match="below the rollout's 4 message-passing hops"):
        summary = train(compose(args))
    assert summary["partition"]["exact"] is False
    summary = train(compose(_tiny(tmp_path, "ddm=sync", "partition.overlap=4", "task.rollout_schedule=[[1,1],[3,2]]",
                                  out="exact")))
    assert summary["partition"]["exact"] is True
