"""Real ranks on gloo: equal to the single-process run, end to end through `gnnddm train`, and
recovery from a killed rank."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from gnnddm.config import options
from gnnddm.testing.runs import tiny_run

pytestmark = [pytest.mark.distributed, pytest.mark.slow]  # every test starts gloo ranks

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = options("ddm")
PARTS, ITERATIONS = 4, 3


def _algorithm_cfg(name: str):
    from gnnddm.config import compose

    cfg = compose([f"ddm={name}"]).ddm  # composed: options extend each other through defaults lists
    if name == "two_level":
        cfg.coarse_clusters = 6
    if name == "multilevel":  # the 6 x 8 grid has one coarse grid, 3 x 4, split among the 4 parts
        cfg.levels, cfg.pre_smooth, cfg.post_smooth = 2, [0, 1], [1, 2]
    return cfg


def _run(name: str, comm_factory) -> torch.Tensor:
    """ITERATIONS outer iterations of algorithm ``name`` on the gallery grid; returns θ (float64)."""
    import warnings

    from gnnddm.ddm import build_algorithm, build_objective
    from gnnddm.distributed.accounting import Accounting
    from gnnddm.partition import build_partition
    from gnnddm.tasks import ForecastTask
    from gnnddm.testing.gallery import EdgeGNN, contiguous_parts, grid_data

    data = grid_data(nlat=6, nlon=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partition = build_partition(data.edge_index, data.num_nodes, contiguous_parts(data.num_nodes, PARTS), 2)
    accounting = Accounting()
    comm = comm_factory(accounting)
    objective = build_objective(_algorithm_cfg(name), data, partition, parts=comm.parts_of_rank)
    task = ForecastTask(data)
    torch.manual_seed(0)
    if name in ("halo_sync", "multilevel", "apts"):  # models that expose their layers
        from gnnddm.models.interaction import InteractionNetwork

        model = InteractionNetwork(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1],
                                   hidden=8, layers=3)
    else:
        model = EdgeGNN(task.in_channels, task.out_channels, edge_dim=data.edge_attr.shape[1])
    algorithm = build_algorithm(_algorithm_cfg(name), OmegaConf.create({"_target_": "torch.optim.Adam",
                                                                          "lr": 1e-2}),
                                model, objective, comm)
    rng = np.random.default_rng(0)
    anchors = task.anchors(np.arange(data.num_times))
    for _ in range(ITERATIONS):
        algorithm.step(task.batch(rng.choice(anchors, size=2, replace=False), rng))
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()]), accounting


def _rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from gnnddm.distributed import TorchComm

    dist.init_process_group("gloo", rank=rank, world_size=world_size, init_method=f"tcp://127.0.0.1:{port}")
    try:
        for name in ALGORITHMS:
            theta, acc = _run(name, lambda a: TorchComm(PARTS, accounting=a))
            torch.save({"theta": theta, "accounting": acc.as_dict()}, Path(out) / f"{name}.rank{rank}.pt")
        comm = TorchComm(PARTS)
        gathered = comm.all_gather_parts({k: torch.full((2, 3), float(k)) for k in comm.parts_of_rank})
        torch.save(gathered, Path(out) / f"gathered.rank{rank}.pt")
        dist.barrier()  # no rank leaves while a peer's last messages are in flight
    finally:
        dist.destroy_process_group()
    # Leave without running C++ static destructors: rank 0 hosts the rendezvous store, whose server thread
    # can still be joinable at interpreter exit and abort the process (seen about once in ten runs, with
    # or without the algorithms' traffic).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_two_gloo_ranks_reproduce_the_single_process_run_for_every_algorithm(tmp_path):
    from gnnddm.distributed import free_port
    from gnnddm.distributed.comm import LocalComm

    torch.multiprocessing.spawn(_rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for name in ALGORITHMS:
        single, acc = _run(name, lambda a: LocalComm(PARTS, accounting=a))
        for rank in (0, 1):
            got = torch.load(tmp_path / f"{name}.rank{rank}.pt")
            rel = float((got["theta"] - single).norm() / single.norm())
            assert rel < 1e-5, f"{name} rank {rank}: relative difference {rel:.2e}"
            # every rank logs the accounting of the one-process run: the same collectives, payload and work
            single_acc = acc.as_dict()
            for key in ("rounds", "comm_bytes"):
                assert got["accounting"][key] == single_acc[key], (name, key)
            for key in ("grad_evals", "loss_evals"):
                assert got["accounting"][key] == pytest.approx(single_acc[key], rel=1e-12, abs=1e-12), (name, key)
    for rank in (0, 1):  # every rank receives every part's tensor
        gathered = torch.load(tmp_path / f"gathered.rank{rank}.pt")
        assert sorted(gathered) == list(range(PARTS))
        assert all(torch.equal(gathered[k], torch.full((2, 3), float(k))) for k in range(PARTS))


# --------------------------------------------------------------------------- through `gnnddm train`
def _tiny(tmp_path: Path, *extra: str, out="out", parts=2) -> list[str]:
    return tiny_run(f"partition.num_parts={parts}", "partition.overlap=2", "trainer.eval_every=2",
                    f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"output_dir={tmp_path / out}", *extra)


def _theta(out: Path) -> torch.Tensor:
    state = torch.load(out / "model.pt", weights_only=False)["model"]
    return torch.cat([v.reshape(-1).double() for v in state.values()])


def test_gnnddm_train_with_two_ranks_matches_one_process_and_logs_rank_times(tmp_path):
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train

    # p = 8 subdomains: 4 on each of the 2 ranks; the lead-time scores are shared out over the ranks too
    common = ["ddm=asm", "trainer.max_iterations=4", "trainer.eval_leads=3"]
    single = train(compose(_tiny(tmp_path, *common, out="single", parts=8)))
    summary = train(compose(_tiny(tmp_path, *common, "distributed.backend=gloo", "distributed.nproc_per_node=2",
                                  out="ranks", parts=8)))
    assert summary["status"] == "finished" and summary["ranks"] == 2
    # world-consistent accounting: the ranks log the one-process run's collectives, payload and work
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    for key in ("rounds", "comm_bytes", "grad_evals", "loss_evals"):
        assert summary["accounting"][key] == pytest.approx(single["accounting"][key], rel=1e-12), key
        hist = [[m.value for m in sorted(client.get_metric_history(run_id, f"cost/{key}"), key=lambda m: m.step)]
                for run_id in (single["mlflow_run_id"], summary["mlflow_run_id"])]
        assert hist[0] == pytest.approx(hist[1], rel=1e-12) and len(hist[0]) == 4, key
    a, b = _theta(tmp_path / "single"), _theta(tmp_path / "ranks")
    assert float((a - b).norm() / a.norm()) < 1e-5
    # the ranks share the evaluation samples out and sum: the same metrics as one process evaluating all
    assert summary["final"]["val_loss"] == pytest.approx(single["final"]["val_loss"], rel=1e-5)
    assert summary["final"]["train_loss"] == pytest.approx(single["final"]["train_loss"], rel=1e-5)
    assert summary["final"]["val_rmse"] == pytest.approx(single["final"]["val_rmse"], rel=1e-5)
    assert summary["baseline"]["val_rmse"] == pytest.approx(single["baseline"]["val_rmse"], rel=1e-12)
    leads = [json.loads((tmp_path / out / "leads_test.json").read_text())["scores"] for out in ("single", "ranks")]
    for method in ("model", "persistence", "climatology"):
        for score in ("rmse", "bias", "acc"):
            assert np.allclose(leads[0][method][score], leads[1][method][score], rtol=1e-5, atol=1e-7,
                               equal_nan=True), (method, score)
    # the evaluation's sums over the ranks are control traffic: the accounted rounds are the algorithm's
    assert summary["accounting"]["rounds"] == single["accounting"]["rounds"]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    for r in (0, 1):
        for kind in ("compute", "communicate", "wait"):
            assert f"cost/rank{r}/{kind}" in run.data.metrics
    assert json.loads((tmp_path / "ranks" / "summary.json").read_text())["status"] == "finished"


def test_killed_rank_restarts_from_the_checkpoint_and_completes(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train
    from gnnddm.training.launcher import ENV_FAULT

    common = ["ddm=sync", "trainer.max_iterations=6", "trainer.checkpoint_every=2"]
    train(compose(_tiny(tmp_path, *common, "tracking.enabled=false", out="single")))
    monkeypatch.setenv(ENV_FAULT, "kill:rank=1:iteration=4")
    summary = train(compose(_tiny(tmp_path, *common, "distributed.backend=gloo", "distributed.nproc_per_node=2",
                                  "distributed.max_restarts=1", "distributed.timeout=60", out="ranks")))
    assert summary["status"] == "finished"
    assert summary["restarts"] == 1 and summary["resumed_from"] == 2
    a, b = _theta(tmp_path / "single"), _theta(tmp_path / "ranks")
    assert float((a - b).norm() / a.norm()) < 1e-5
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["gnnddm.restarts"] == "1"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "cost/rounds"))
    assert steps == list(range(1, 7))  # nothing logged before the kill is lost, and no step twice


def test_a_failing_rank_fails_the_job_with_its_message_and_a_failed_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.errors import GnnddmError
    from gnnddm.training import train

    cfg = compose(_tiny(tmp_path, "ddm=sync", "trainer.max_iterations=2", "distributed.backend=gloo",
                        "distributed.nproc_per_node=2",
                        "task.var_weights={t2m:1.0,nope:2.0}"))  # the schema allows it; the data refutes it
    with pytest.raises(GnnddmError, match="nope"):
        train(cfg)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(
        summary["mlflow_run_id"]).info.status == "FAILED"


def test_more_ranks_than_subdomains_is_refused_before_any_work(tmp_path):
    from gnnddm.config import compose
    from gnnddm.errors import ConfigError
    from gnnddm.training import train

    with pytest.raises(ConfigError, match="nproc_per_node"):
        train(compose(_tiny(tmp_path, "distributed.backend=gloo", "distributed.nproc_per_node=3")))
    assert not os.path.exists(tmp_path / "mlflow.db")


def test_nccl_without_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from gnnddm.config import compose
    from gnnddm.errors import ConfigError
    from gnnddm.training import train

    with pytest.raises(ConfigError, match="nccl"):
        train(compose(_tiny(tmp_path, "distributed.backend=nccl", "distributed.nproc_per_node=2")))


def test_torchrun_starts_the_ranks_and_rank0_owns_the_run(tmp_path):
    import shutil
    import subprocess

    from mlflow.tracking import MlflowClient

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    args = [a for a in _tiny(tmp_path, "ddm=sync", "trainer.max_iterations=3") if not a.startswith("output_dir")]
    out = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0",
         "-m", "gnnddm", "train", *args, "distributed.backend=gloo", "hydra.run.dir=run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("gnnddm").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]  # one run, from rank 0 only
    assert "cost/rank1/communicate" in runs[0].data.metrics


# ------------------------------------------------------------------- the shipped real sample on ranks
@pytest.mark.parametrize("algorithm", ["sync", "halo_sync", "asm"])
def test_two_ranks_on_the_shipped_sample_match_one_process(tmp_path, algorithm):
    """The README's 2-rank command on the quickstart data: its 3 validation samples make one evaluation
    batch, so rank 1 evaluates nothing; that is normal, and the ranks reproduce the one-process run."""
    from gnnddm.config import compose
    from gnnddm.training import train

    def run(out: str, *extra: str) -> dict:
        return train(compose(["+experiment=quickstart", f"ddm={algorithm}", "partition.num_parts=8",
                              "partition.overlap=2", "trainer.max_iterations=2", "trainer.eval_every=2",
                              "trainer.progress=false", "trainer.threads=1", "tracking.enabled=false",
                              f"output_dir={tmp_path / out}", *extra]))

    single = run("single")
    ranks = run("ranks", "distributed.backend=gloo", "distributed.nproc_per_node=2")
    assert ranks["status"] == "finished" and ranks["ranks"] == 2
    assert single["samples"]["val"] == 3  # fewer evaluation batches (1) than ranks (2)
    a, b = _theta(tmp_path / "single"), _theta(tmp_path / "ranks")
    assert float((a - b).norm() / a.norm()) < 1e-5
    assert ranks["final"]["val_loss"] == pytest.approx(single["final"]["val_loss"], rel=1e-5)
    assert ranks["final"]["val_rmse"] == pytest.approx(single["final"]["val_rmse"], rel=1e-5)
    assert ranks["final"]["test_rmse"] == pytest.approx(single["final"]["test_rmse"], rel=1e-5)


# ------------------------------------------------------------------- nothing listens beyond loopback
def _listening(pids: list[int]) -> list[str]:
    """``address:port`` of every listening TCP socket the processes ``pids`` hold (from /proc)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN
                addr, port = cols[1].split(":")
                found.append(f"{_ip(addr, width)}:{int(port, 16)}")
    return found


def _ip(hexaddr: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hexaddr)
    # /proc prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def _report_listeners(arg: str) -> list[str]:
    import torch.distributed as dist

    from gnnddm.distributed import init, world_from_env

    init(world_from_env(), "gloo", 60)
    dist.barrier()
    found = _listening([os.getpid(), os.getppid()])  # this rank and the launcher (the elastic agent)
    dist.barrier()  # every rank has looked before any leaves
    dist.destroy_process_group()
    return found


def test_ranks_that_gnnddm_starts_listen_on_loopback_only(tmp_path):
    """The launcher's rendezvous, rank 0's store and gloo's sockets: nothing reachable from the network."""
    from gnnddm.distributed import run_ranks

    found, _ = run_ranks(_report_listeners, "", 2, 0, tmp_path, {})
    assert found, "rank 0 hosts the process group's store: at least one listening socket"
    outside = [a for a in found if not (a.startswith("127.") or a.startswith("::1:"))]
    assert not outside, f"listening beyond loopback: {outside}"


def test_a_killed_rank_is_named_as_the_cause_in_one_line(tmp_path):
    """Rank 1 killed (SIGKILL) without restarts left: the error names rank 1 and the signal, not rank 0's
    lost connection; the elastic agent's tracebacks go to train.log, not the terminal; the run is FAILED."""
    import subprocess

    from mlflow.tracking import MlflowClient

    from gnnddm.training.launcher import ENV_FAULT

    env = {**os.environ, ENV_FAULT: "kill:rank=1:iteration=2", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "gnnddm", "train",
                           *_tiny(tmp_path, "ddm=sync", "trainer.max_iterations=4", "distributed.backend=gloo",
                                  "distributed.nproc_per_node=2", "distributed.timeout=60")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "rank 1 died from SIGKILL" in last, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr[-3000:]
    assert "Signal 9 (SIGKILL) received" in (tmp_path / "out" / "train.log").read_text()  # the agent's report
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and "rank 1 died from SIGKILL" in summary["error"]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"


def test_rollout_training_on_two_ranks_matches_one_process(tmp_path):
    """halo_sync on a scheduled two-step rollout: the halo exchanges of every step on real ranks (each rank
    assembling only its rows of the k-step batches) follow one process."""
    from gnnddm.config import compose
    from gnnddm.training import train

    common = ["ddm=halo_sync", "partition.overlap=1", "trainer.max_iterations=4", "task.rollout_schedule=[[1,1],[3,2]]",
              "tracking.enabled=false"]
    single = train(compose(_tiny(tmp_path, *common, out="single", parts=4)))
    ranks = train(compose(_tiny(tmp_path, *common, "distributed.backend=gloo", "distributed.nproc_per_node=2",
                                out="ranks", parts=4)))
    assert ranks["status"] == "finished" and ranks["ranks"] == 2
    a, b = _theta(tmp_path / "single"), _theta(tmp_path / "ranks")
    assert float((a - b).norm() / a.norm()) < 1e-5
    assert ranks["final"]["val_loss"] == pytest.approx(single["final"]["val_loss"], rel=1e-5)
