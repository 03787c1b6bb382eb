"""The subdomain losses f_k sum to the global loss f, and their gradients to ∇f, when overlap >= L; the coarse
batches are the area-weighted cluster means; the objective holds no batch (each batch is evaluated through its
own per-batch losses, dropped after the step)."""

from __future__ import annotations

import functools
import types

import numpy as np
import pytest
import torch

from gnnddm.config import options
from gnnddm.partition.coarse import coarsen_levels
from gnnddm.testing.gallery import EdgeGNN, LinearGNN, grid_data, problem, real_models, station_data

GRAPHS = {"grid": lambda: grid_data(6, 12), "stations": lambda: station_data(16)}
MODELS = real_models()  # raises if a shipped model cannot be imported


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def _check_exactness(make_model, graph: str, layers: int):
    data = GRAPHS[graph]()
    edge_dim = data.edge_attr.shape[1]
    results = {}
    for overlap in (layers, 0):
        _, _, objective, task, batch = problem(data, parts=3, overlap=overlap)
        losses = objective.on(batch)
        torch.manual_seed(0)
        model = make_model(task.in_channels, task.out_channels, edge_dim).double()
        f = losses.global_loss(model)
        g = _grads(model, f)
        fk = [losses.local_loss(model, k) for k in range(3)]
        gk = sum(_grads(model, loss) for loss in fk)
        results[overlap] = (float(f), float(sum(fk)), g, gk)
    f, fsum, g, gsum = results[layers]
    assert fsum == pytest.approx(f, rel=1e-12)
    torch.testing.assert_close(gsum, g, rtol=1e-10, atol=1e-12)
    # without overlap the cut edges are missing: the subdomain sum is a different function
    f0, fsum0, g0, gsum0 = results[0]
    assert abs(fsum0 - f0) > 1e-4 * abs(f0)
    assert float(torch.linalg.vector_norm(gsum0 - g0)) > 1e-3 * float(torch.linalg.vector_norm(g0))


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_subdomain_gradients_sum_to_global_gradient_gallery_models(graph, layers):
    if layers == 1:
        _check_exactness(lambda i, o, e: LinearGNN(i, o), graph, 1)
    else:
        _check_exactness(lambda i, o, e: EdgeGNN(i, o, e, layers=layers), graph, layers)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_subdomain_gradients_sum_to_global_gradient_real_models(name, graph):
    cls = MODELS[name]
    probe = cls(in_channels=3, out_channels=2, edge_dim=3, hidden=8, layers=2)
    layers = int(probe.num_message_passing_layers)
    _check_exactness(lambda i, o, e: cls(in_channels=i, out_channels=o, edge_dim=e, hidden=8, layers=2), graph,
                     layers)


def test_the_exactness_test_covers_every_shipped_model():
    assert options("model"), "conf/model/ holds no model"
    # the models of the joint grid + mesh graph are tested on it in test_joint_graph.py
    assert sorted([*MODELS, *real_models(joint=True)]) == options("model")


def test_local_loss_scores_owned_nodes_with_global_normalisation():
    # a model that outputs zeros: f_k = Σ_{i in V_k} w y², so Σ_k f_k = Σ w y² and f_k > 0 for each k
    _, partition, objective, _, b = problem(parts=3, overlap=1)
    losses = objective.on(b)

    class Zero(torch.nn.Module):
        def forward(self, x, graph):
            return torch.zeros(x.shape[0], x.shape[1], 2, dtype=x.dtype)

    for sd in partition.subdomains:
        expected = float((b.w[:, sd.owned] * b.y[:, sd.owned] ** 2).sum())
        assert float(losses.local_loss(Zero(), sd.index)) == pytest.approx(expected, rel=1e-12)
    assert objective.local_work(0) == partition.subdomains[0].num_local / 32


def test_coarse_batch_is_area_weighted_cluster_mean_with_total_weight_one():
    data, _, objective, _, b = problem(station_data(16), parts=2, overlap=1)
    levels = coarsen_levels(data.edge_index, data.num_nodes, [6, 3], edge_weight=data.edge_weight,
                            area=data.area, lat=data.lat, lon=data.lon)
    for level in levels:
        objective = objective.with_coarse_level(level)
    losses = objective.on(b)
    for lev, assign in ((0, levels[0].assign), (1, levels[1].assign[levels[0].assign])):
        x_c, y_c, w_c = losses.coarse_batch(lev)
        assert float(w_c.sum()) == pytest.approx(float(b.w.sum()), rel=1e-12)  # = 1 up to float32
        for c in range(objective.coarse[lev]["num_clusters"]):
            members = np.flatnonzero(assign == c)
            a = torch.as_tensor(data.area[members], dtype=torch.float64)
            torch.testing.assert_close(x_c[:, c], (b.x[:, members] * a[None, :, None]).sum(1) / a.sum())
            w = b.w[:, members]
            # the w-weighted mean: area-weighted over the valid entries only
            torch.testing.assert_close(y_c[:, c], (w * b.y[:, members]).sum(1) / w.sum(1).clamp_min(1e-300))
    # the coarse loss is the w_c-weighted squared error of the same model on the coarse graph
    torch.manual_seed(0)
    model = EdgeGNN(b.x.shape[2], 2, 3).double()
    x_c, y_c, w_c = losses.coarse_batch(1)
    out = model(x_c, objective.coarse[1]["graph"])
    assert float(losses.coarse_loss(model, 1)) == pytest.approx(float((w_c * (out - y_c) ** 2).sum()))
    assert objective.coarse_level(1).work == levels[1].num_clusters / data.num_nodes


@pytest.mark.parametrize("parts", [(1,), (1, 2)], ids=["one-part", "two-parts"])
@pytest.mark.parametrize("task_name", ["forecast", "interpolate"])
def test_a_batch_of_the_local_rows_gives_the_same_subdomain_losses(task_name, parts):
    # what a rank assembles in a distributed run: only the rows its own subdomains read (with one
    # subdomain, in its own order, so that its slice is the batch itself)
    from gnnddm.ddm.objective import Objective
    from gnnddm.tasks import ForecastTask, InterpolateTask

    data, partition, _, _, _ = problem(data=grid_data(nlat=8, nlon=16), parts=4, overlap=1)
    task = ForecastTask(data) if task_name == "forecast" else InterpolateTask(data, hide_fraction=0.4)
    mine = Objective(data, partition, parts=parts)
    full = Objective(data, partition, parts=parts)
    anchors = task.anchors(np.arange(data.num_times))[:2]
    rows = mine.local_nodes
    assert len(rows) < data.num_nodes
    local = task.batch(anchors, np.random.default_rng(3), nodes=rows)
    on_local = mine.on(local)
    on_full = full.on(task.batch(anchors, np.random.default_rng(3)))
    assert (on_local.local_batch(1)[0] is local.x) == (len(parts) == 1)
    torch.manual_seed(0)
    model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1], layers=1)
    for k in parts:
        assert torch.equal(on_local.local_loss(model, k), on_full.local_loss(model, k))
    with pytest.raises(RuntimeError, match="full-graph batch"):
        on_local.global_loss(model)
    # a full batch afterwards is sliced again (nothing of the local batch's row map is reused)
    again = mine.on(task.batch(anchors, np.random.default_rng(3)))
    for k in parts:
        assert torch.equal(again.local_loss(model, k), on_full.local_loss(model, k))


# ----------------------------------------------------------------- the objective holds no batch
def _tensors(obj, seen=None):
    """Every tensor reachable from ``obj`` through attributes, dicts, lists, tuples, sets, bound methods and the
    variables closures capture (Python modules are not entered)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None) | np.ndarray | type):
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif isinstance(obj, types.FunctionType):
        children = [getattr(cell, "cell_contents", None) for cell in obj.__closure__ or ()]
    elif isinstance(obj, types.MethodType):
        children = [obj.__self__, obj.__func__]
    elif hasattr(obj, "__dict__") and not isinstance(obj, types.ModuleType):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _tensors(child, seen)


def _storages(batch) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in (batch.x, batch.y, batch.w, batch.base, batch.truth, batch.valid)}


@pytest.mark.parametrize("name", ["asm", "two_level"])
def test_after_a_step_nothing_keeps_the_batch(name):
    """STYLE 19: the step's per-batch losses are dropped when it returns (ASM's fused trial keeps only its
    step; two_level's coarse restriction is made and dropped with them), and no attribute of the objective
    or of the algorithm holds a tensor of the batch or a view of one."""
    import gc
    import weakref

    from gnnddm.ddm.asm import ASM
    from gnnddm.ddm.two_level import TwoLevel
    from gnnddm.testing.algorithms import make_algorithm, seeded_model, with_coarse

    _, _, objective, task, batch = problem(parts=3, overlap=2)
    cls = ASM
    if name == "two_level":
        objective, cls = with_coarse(objective), TwoLevel
    made, on = [], objective.on

    def recorded(b):  # what the step makes, seen through a weak reference only
        losses = on(b)
        made.append(weakref.ref(losses))
        return losses

    objective.on = recorded
    algo = make_algorithm(cls, objective, seeded_model(task), local_solver=functools.partial(torch.optim.SGD, lr=1e-3),
                          trial="fused")
    algo.step(batch)
    assert algo.pending is not None  # the fused trial waits for the next step's batch
    gc.collect()
    assert len(made) == 1 and made[0]() is None, "something keeps the step's per-batch losses"
    del objective.on
    ours = _storages(batch)
    for holder in (objective, algo):
        held = [t for t in _tensors(holder) if t.layout == torch.strided and t.untyped_storage().data_ptr() in ours]
        if held:
            pytest.fail(f"{type(holder).__name__} holds {len(held)} tensor(s) of the batch after the step")


def test_two_batches_of_one_objective_give_each_its_own_losses():
    """Two per-batch objects of one objective side by side: each evaluates its own batch (a design that parked
    the batch on the objective would give both the last batch's losses)."""
    from gnnddm.ddm.objective import Objective
    from gnnddm.testing.algorithms import seeded_model, with_coarse

    data, partition, objective, task, first = problem(parts=3, overlap=2)
    objective = with_coarse(objective)
    second = problem(parts=3, overlap=2, seed=3)[-1]
    on_first, on_second = objective.on(first), objective.on(second)
    model = seeded_model(task)
    with torch.no_grad():
        for batch, losses in ((first, on_first), (second, on_second)):
            alone = with_coarse(Objective(data, partition)).on(batch)  # an objective that saw no other batch
            assert float(losses.global_loss(model)) == float(alone.global_loss(model))
            assert float(objective.whole()(model, losses)) == float(alone.global_loss(model))
            for k in range(3):
                assert float(objective.part(k).on(losses)(model)) == float(alone.local_loss(model, k))
            assert float(losses.coarse_loss(model, 0)) == float(alone.coarse_loss(model, 0))
        assert float(on_first.global_loss(model)) != float(on_second.global_loss(model))
        assert float(on_first.coarse_loss(model, 0)) != float(on_second.coarse_loss(model, 0))
