"""The encoder-processor-decoder model on the joint grid + mesh graph decomposes exactly: with an overlap of
its hops (processor_layers + 2) the subdomain gradients sum to the global gradient, and sync and halo_sync
follow the global method's trajectory; partitioned by the mesh (partition=mesh) or any other way."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gnnddm.ddm.halo_sync import HaloSync
from gnnddm.ddm.objective import Objective
from gnnddm.ddm.sync import Sync
from gnnddm.graph.icosahedral import icosahedral_graph
from gnnddm.models.encode_process_decode import EncodeProcessDecode
from gnnddm.partition.mesh import mesh
from gnnddm.partition.overlap import build_partition
from gnnddm.tasks import ForecastTask
from gnnddm.testing.algorithms import assert_follows_global
from gnnddm.testing.gallery import latlon, to_dtype, weather_data

PROCESSOR_LAYERS = 1  # hops = 3


def joint(parts: int, overlap: int, by_mesh: bool = True):
    """A global 8 x 16 grid with a refinement-1 mesh (42 nodes), partitioned: (data, objective, task, a float64
    batch)."""
    nlat, nlon = 8, 16
    lat, lon = latlon(nlat, nlon)
    data = icosahedral_graph(weather_data(lat, lon, grid_shape=(nlat, nlon), times=5, variables=2), refinement=1)
    if by_mesh:
        p = mesh(data.edge_index, data.num_nodes, parts, edge_attr=data.edge_attr, edge_attr_names=data.edge_attr_names)
    else:  # contiguous node ids: grid bands, the mesh in the last part
        p = np.minimum(np.arange(data.num_nodes) * parts // data.num_nodes, parts - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        partition = build_partition(data.edge_index, data.num_nodes, p, overlap)
    objective = Objective(data, partition)
    task = ForecastTask(data)
    return data, objective, task, to_dtype(task.batch(np.arange(3)), torch.float64)


def model_for(task, data, seed=0, recompute=False):
    torch.manual_seed(seed)
    return EncodeProcessDecode(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1], hidden=8,
                               processor_layers=PROCESSOR_LAYERS, recompute=recompute).double()


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("by_mesh", [True, False])
def test_subdomain_gradients_sum_to_the_global_gradient_with_an_overlap_of_the_hops(by_mesh):
    hops = PROCESSOR_LAYERS + 2
    results = {}
    for overlap in (hops, hops - 1):
        data, objective, task, batch = joint(3, overlap, by_mesh)
        losses = objective.on(batch)
        model = model_for(task, data)
        assert model.num_message_passing_layers == hops
        f = losses.global_loss(model)
        g = grads(model, f)
        fk = [losses.local_loss(model, k) for k in range(3)]
        results[overlap] = (float(f), float(sum(fk)), g, sum(grads(model, loss) for loss in fk))
    f, fsum, g, gsum = results[hops]
    assert fsum == pytest.approx(f, rel=1e-12)
    torch.testing.assert_close(gsum, g, rtol=1e-10, atol=1e-12)
    f1, fsum1, _, _ = results[hops - 1]  # one hop short: the subdomain problems are no longer exact
    assert abs(fsum1 - f1) > 1e-6 * abs(f1)


@pytest.mark.parametrize("cls, recompute", [(Sync, False), (HaloSync, False), (Sync, True), (HaloSync, True)])
def test_sync_and_halo_sync_follow_the_global_trajectory(cls, recompute, monkeypatch):
    """Also with ``model.recompute`` (blocks of a few rows, recomputed in the backward pass) on the
    subdomains, against the whole layers of ``global``."""
    import gnnddm.models.encode_process_decode as epd

    monkeypatch.setattr(epd, "BLOCK_COST", 16)
    overlap = PROCESSOR_LAYERS + 2 if cls is Sync else 1
    data, objective, task, batch = joint(3, overlap)
    m_global, m_dd = model_for(task, data), model_for(task, data, recompute=recompute)
    assert_follows_global(cls, objective, batch, m_global, m_dd, steps=4)


@pytest.mark.parametrize("halo", ["model", "layer"])
@pytest.mark.parametrize("count", [3, 7])
def test_global_in_blocks_gives_the_whole_graph_loss_and_gradient(count, halo):
    """Cache-blocked global (trainer.blocks): contiguous id bands of the joint graph, one-hop halos."""
    from gnnddm.ddm.blocked import Blocks

    data, _, task, batch = joint(1, 0)
    model = model_for(task, data)
    whole = Objective(data, build_partition(data.edge_index, data.num_nodes, np.zeros(data.num_nodes, int), 0))
    f = whole.whole().on(whole.on(batch))(model)
    g = grads(model, f)
    model.zero_grad()
    blocks = Blocks(data, count, whole.device, hops=model.num_message_passing_layers, halo=halo)
    fb = blocks.loss_backward(model, whole.on(batch).batch)
    assert float(fb) == pytest.approx(float(f), rel=1e-12)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), g, rtol=1e-10,
                               atol=1e-13)


def test_every_model_of_the_joint_graph_is_tested_here():
    from gnnddm.testing.gallery import real_models

    assert real_models(joint=True) == {"encode_process_decode": EncodeProcessDecode}
