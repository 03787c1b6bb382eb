"""``halo_sync``: one-hop halos exchanged layer by layer reproduce the full-graph model and its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnddm.ddm.global_ import Global
from gnnddm.ddm.halo_sync import HaloSync
from gnnddm.errors import ConfigError
from gnnddm.partition.halo import halo_plan
from gnnddm.testing.algorithms import flat_params
from gnnddm.testing.gallery import EdgeGNN, comm_for, grid_data, problem, real_models

MODELS = real_models()


def _model(cls, task, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", 8)
    kw.setdefault("layers", 4)
    if cls.__name__ == "GATv2":
        kw.setdefault("heads", 2)
    if cls.__name__ in ("GATv2", "InteractionNetwork"):
        kw["edge_dim"] = 3
    return cls(task.in_channels, task.out_channels, **kw).double()


def _adam(params):
    return torch.optim.Adam(params, lr=0.01)


def test_halo_plan_covers_every_incoming_edge_and_maps_rows_to_their_owners():
    data, partition, _, _, _ = problem(grid_data(6, 8), parts=5, overlap=2)
    plan = halo_plan(partition, data.edge_index, data.num_nodes, data.edge_weight)
    owner = partition.parts
    src, dst = data.edge_index
    for k in range(partition.num_parts):
        nodes, owned = plan.nodes[k], plan.num_owned[k]
        assert set(nodes[:owned]) == set(np.flatnonzero(owner == k))
        assert (owner[nodes[owned:]] != k).all()
        # every edge into an owned node is in the local graph, and nothing else
        into = np.flatnonzero(owner[dst] == k)
        assert sorted(plan.edge_ids[k]) == sorted(into)
        le = plan.edge_index[k]
        assert (nodes[le[0]] == src[plan.edge_ids[k]]).all() and (nodes[le[1]] == dst[plan.edge_ids[k]]).all()
        assert (plan.in_degree[k] == np.bincount(dst, minlength=data.num_nodes)[nodes]).all()
    for (j, k), rows in plan.send.items():
        assert (plan.nodes[j][rows] == plan.nodes[k][plan.num_owned[k] + plan.recv[(j, k)]]).all()
    received = {k: sorted(np.concatenate([r for (j, kk), r in plan.recv.items() if kk == k] or [np.array([])]))
                for k in plan.nodes}
    assert all(received[k] == list(range(plan.num_halo(k))) for k in plan.nodes)  # every halo row filled once


@pytest.mark.parametrize("parts", [1, 3, 8])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_halo_sync_follows_the_global_trajectory(name, parts):
    """Four layers with a one-hop halo and overlap 1: equal to global Adam (float64) for every model."""
    data, _, objective, task, batch = problem(grid_data(6, 8), parts=parts, overlap=1)
    kw = {"use_edge_weight": True} if name == "gcn" else {}
    m_global, m_halo = _model(MODELS[name], task, **kw), _model(MODELS[name], task, **kw)
    comm, acc = comm_for(objective)
    g = Global(m_global, objective, comm_for(objective)[0], _adam)
    h = HaloSync(m_halo, objective, comm, _adam)
    for _ in range(3):
        loss_g, loss_h = g.step(batch)["loss"], h.step(batch)["loss"]
        assert loss_h == pytest.approx(loss_g, rel=1e-10)
    torch.testing.assert_close(flat_params(m_halo), flat_params(m_global), rtol=1e-9, atol=1e-11)
    assert float(torch.linalg.vector_norm(flat_params(m_halo) - flat_params(_model(MODELS[name], task, **kw)))) > 1e-3


def test_residual_sage_is_exact_too_and_differs_from_the_plain_stack():
    data, _, objective, task, batch = problem(grid_data(6, 8), parts=4, overlap=1)
    sage = MODELS["sage"]
    m_global, m_halo = _model(sage, task, residual=True), _model(sage, task, residual=True)
    g = Global(m_global, objective, comm_for(objective)[0], _adam)
    comm, acc = comm_for(objective)
    h = HaloSync(m_halo, objective, comm, _adam)
    for _ in range(2):
        g.step(batch), h.step(batch)
    torch.testing.assert_close(flat_params(m_halo), flat_params(m_global), rtol=1e-9, atol=1e-11)
    x = batch.x
    plain, residual = _model(sage, task), _model(sage, task, residual=True)
    assert not torch.allclose(plain(x, objective.full_graph), residual(x, objective.full_graph))


def test_accounting_counts_two_exchanges_per_layer_gap_and_one_all_reduce():
    data, _, objective, task, batch = problem(grid_data(6, 8), parts=4, overlap=1)
    model = _model(MODELS["sage"], task, layers=5, hidden=8)
    comm, acc = comm_for(objective, alpha=1e-3, beta=1e-9)
    h = HaloSync(model, objective, comm, _adam)
    h.step(batch)
    last = acc.last
    params = sum(p.numel() for p in model.parameters())
    assert last["rounds"] == 2 * (5 - 1) + 1
    # halo bytes: the largest number of rows one part sends x batch x hidden x 8 bytes (float64)
    size = batch.x.shape[0]
    halo_bytes = h.plan.rows_sent() * size * 8 * 8
    assert last["comm_bytes"] == 2 * (5 - 1) * halo_bytes + (params + 1) * 8
    assert last["grad_evals"] == pytest.approx(sum(len(h.plan.nodes[k]) for k in range(4)) / data.num_nodes)
    assert last["model_time"] >= 9 * 1e-3
    assert last["model_time_multinode"] >= 9 * 25e-6


def test_bad_input_names_the_key():
    data, _, objective, task, _ = problem(grid_data(6, 8), parts=3, overlap=0)
    with pytest.raises(ConfigError, match="partition.overlap"):
        HaloSync(_model(MODELS["sage"], task), objective, comm_for(objective)[0], _adam)
    data, _, objective, task, _ = problem(grid_data(6, 8), parts=3, overlap=1)
    with pytest.raises(ConfigError, match="halo_sync.*layer by layer"):
        HaloSync(EdgeGNN(task.in_channels, task.out_channels).double(), objective, comm_for(objective)[0], _adam)
