"""The processes of a run: joining the process group that ``torchrun`` or ``srun`` describes, and starting
``distributed.nproc_per_node`` local ranks under torch's elastic agent when a plain ``gnnddm train`` asks
for a backend.

The launching process owns the MLflow run and the summary; its ranks log into that run (they find it in
:data:`ENV_RUN_ID`) and return their summaries, of which rank 0's becomes the run's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from gnnddm.distributed import World, check_backend, init, run_ranks, world_from_env
from gnnddm.errors import ConfigError, GnnddmError
from gnnddm.outputs import output_dir
from gnnddm.training.checkpoint import resuming
from gnnddm.training.labels import default_run_name, is_global, run_labels
from gnnddm.training.runbook import RunBook, resume_advice, stop_reason, sweep_dir
from gnnddm.training.signals import Terminated
from gnnddm.training.tracking import Tracker, TrackingConfig, tracker_from_config

ENV_RUN_ID = "GNNDDM_MLFLOW_RUN_ID"
ENV_TRACKING_URI = "GNNDDM_TRACKING_URI"
ENV_RUN_CONTINUES = "GNNDDM_RUN_CONTINUES"  # "1": the launcher's MLflow run continues a stopped training
ENV_FAULT = "GNNDDM_FAULT"  # testing aid: "kill:rank=R:iteration=I" kills that rank once (first attempt)


def join_world(cfg: DictConfig) -> World:
    """This process's place in the run: one process without a backend, else the world its environment
    describes (the process group is initialised)."""
    if cfg.distributed.backend == "none":
        return World(0, 1, 0, "127.0.0.1", 0, "single")
    world = world_from_env()
    init(world, cfg.distributed.backend, cfg.distributed.timeout, cfg.trainer.device)
    return world


def tracker_for_rank(cfg: DictConfig, rank0: bool) -> Tracker:
    """Rank 0's tracker (attached to the launcher's MLflow run when it has one); a disabled one elsewhere."""
    if not rank0:
        return Tracker(TrackingConfig(enabled=False))
    tracker = tracker_from_config(cfg.tracking, run_name=default_run_name(cfg))
    run_id = os.environ.get(ENV_RUN_ID)
    if run_id and tracker.enabled:
        tracker.uri = os.environ.get(ENV_TRACKING_URI, tracker.uri)
        tracker.attach(run_id)
    return tracker


def launch_ranks(cfg: DictConfig, worker: Callable[[dict], dict]) -> dict:
    """Start ``distributed.nproc_per_node`` local ranks, each running ``worker(config container)``; own the
    MLflow run and the summary."""
    nproc, restarts = cfg.distributed.nproc_per_node, cfg.distributed.max_restarts  # validated
    check_backend(cfg.distributed.backend, cfg.trainer.device)
    if is_global(cfg) and nproc > 1:
        raise ConfigError(f"ddm={cfg.ddm.name} trains the whole graph in one process; use ddm=sync (or "
                          "ddm=two_level ddm.coarsening=grid for a grid coarse space) to train partitions on "
                          f"distributed.nproc_per_node={nproc} ranks")
    if nproc > cfg.partition.num_parts:
        raise ConfigError(f"distributed.nproc_per_node={nproc} exceeds partition.num_parts="
                          f"{cfg.partition.num_parts}: every rank needs at least one subdomain")
    out_dir = output_dir(cfg)
    book = RunBook(tracker_from_config(cfg.tracking, run_name=default_run_name(cfg)), out_dir)
    try:
        with book:
            labels = run_labels(cfg)
            book.summary["labels"] = labels
            book.open(cfg, labels, resuming=resuming(cfg), sweep_dir=sweep_dir())
            worker_cfg = OmegaConf.to_container(cfg, resolve=True)
            worker_cfg["output_dir"] = str(out_dir)
            env = {ENV_RUN_ID: book.tracker.run_id or "", ENV_TRACKING_URI: book.tracker.uri,
                   ENV_RUN_CONTINUES: "1" if book.reopened else "",
                   # an unusable store was reported once: the ranks do not try it again
                   "GNNDDM_TRACKING_DISABLED": "1" if book.tracker.error else ""}
            result, restart_count = run_ranks(worker, worker_cfg, nproc, restarts, out_dir, env,
                                              master_addr=cfg.distributed.master_addr)
            book.summary.update(result)
            book.summary.update(restarts=restart_count, ranks=nproc)
            book.tags({"gnnddm.restarts": restart_count})
            book.finish()
            return book.summary
    except BaseException as exc:
        reason = stop_reason(exc)
        if reason is not None:
            raise Terminated(reason, resume_advice(book.summary, out_dir, reason)) from None
        if isinstance(exc, GnnddmError):
            raise
        raise GnnddmError(f"distributed run failed: {exc}") from None


def continues_run() -> bool:
    """Whether this rank logs into a launcher's MLflow run that continues a stopped training."""
    return os.environ.get(ENV_RUN_CONTINUES) == "1"


def inject_fault(rank: int, iteration: int) -> None:
    """The testing aid of :data:`ENV_FAULT`: kill this process at the named rank and iteration (first
    attempt only, so that the elastic agent's restart continues)."""
    spec = os.environ.get(ENV_FAULT)
    if not spec or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        return
    kind, *kv = spec.split(":")
    opts = dict(item.split("=") for item in kv)
    if kind == "kill" and int(opts.get("rank", 0)) == rank and int(opts.get("iteration", 1)) == iteration:
        os.kill(os.getpid(), signal.SIGKILL)
