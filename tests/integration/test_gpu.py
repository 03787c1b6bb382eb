"""CUDA and NCCL paths (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from gnnddm.testing.runs import tiny_run

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _tiny(tmp_path, *extra, out="out"):
    return tiny_run("model.hidden=16", "partition.num_parts=2", "partition.overlap=2", "trainer.max_iterations=5",
                    "trainer.eval_every=5", "tracking.enabled=false", f"output_dir={tmp_path / out}", *extra)


@pytest.mark.parametrize("model", ["gcn", "sage", "gatv2", "interaction"])
def test_models_on_cuda_match_cpu(model):
    from gnnddm.config import build_component, compose
    from gnnddm.models.graph import prepare_graph

    cfg = compose([f"model={model}", "model.hidden=16", "model.layers=2"])
    torch.manual_seed(0)
    net = build_component(cfg.model, "model", 5, 3, 3)
    n = 200
    src = torch.randint(0, n, (1000,))
    dst = torch.randint(0, n, (1000,))
    ei = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    graph = prepare_graph(ei, n, edge_attr=torch.randn(ei.shape[1], 3), edge_weight=torch.rand(ei.shape[1]))
    x = torch.randn(2, n, 5)
    out_cpu = net(x, graph)
    out_cpu.square().sum().backward()
    g_cpu = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net_gpu = net.cuda()
    out_gpu = net_gpu(x.cuda(), graph.to("cuda"))
    out_gpu.square().sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-4, rtol=1e-4)
    for a, p in zip(g_cpu, net_gpu.parameters(), strict=True):
        torch.testing.assert_close(p.grad.cpu(), a, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("ddm", ["sync", "asm", "two_level"])
def test_training_on_cuda_matches_cpu(tmp_path, ddm):
    from gnnddm.config import compose
    from gnnddm.training import train

    extra = [f"ddm={ddm}"] + (["ddm.coarse_clusters=64"] if ddm == "two_level" else [])
    cpu = train(compose(_tiny(tmp_path, *extra, out="cpu")))
    gpu = train(compose(_tiny(tmp_path, *extra, "trainer.device=cuda", out="gpu")))
    assert gpu["status"] == "finished"
    assert gpu["final"]["val_loss"] == pytest.approx(cpu["final"]["val_loss"], rel=2e-3)


def test_nccl_rank_trains_and_matches_the_single_process_run(tmp_path):
    from gnnddm.config import compose
    from gnnddm.training import train

    single = train(compose(_tiny(tmp_path, "ddm=asm", "trainer.device=cuda", out="single")))
    nccl = train(compose(_tiny(tmp_path, "ddm=asm", "trainer.device=cuda", "distributed.backend=nccl",
                               "distributed.nproc_per_node=1", out="nccl")))
    assert nccl["status"] == "finished" and nccl["ranks"] == 1
    assert nccl["final"]["val_loss"] == pytest.approx(single["final"]["val_loss"], rel=1e-4)
