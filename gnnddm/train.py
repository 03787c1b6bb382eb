"""``train(cfg) -> summary``: the training loop of ``gnnddm train``.

The loop is written out in :func:`_loop`: sample a mini-batch -> one algorithm step (the subdomain solves
and their combination happen inside it) -> account -> evaluate -> log -> checkpoint. :func:`_setup`
builds what it needs (data, graph, partition, model, communicator, algorithm).

Execution: with ``distributed.backend=none`` one process computes every subdomain in turn.
With ``gloo`` / ``nccl``, a process started by ``torchrun`` or ``srun`` joins the process group its
environment describes; a plain ``gnnddm train distributed.nproc_per_node=N`` starts N local ranks itself
(torch's elastic launcher) and owns the MLflow run, which its ranks log into. Only rank 0 logs and writes
``summary.json``. Every run ends with ``summary.json`` and its MLflow run FINISHED, FAILED or KILLED: Ctrl-C,
SIGTERM and SIGUSR1 (:mod:`gnnddm.signals`) stop it after the current outer iteration with a checkpoint
(when ``trainer.checkpoint_every`` > 0), status ``terminated`` and the way to resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from gnnddm.bundle import save_model
from gnnddm.checkpoint import check_resume, config_changes, find_checkpoint, restarted, resuming, save_checkpoint
from gnnddm.config import build
from gnnddm.data.prefetch import BatchStream
from gnnddm.ddm import build_algorithm, build_objective
from gnnddm.ddm.base import Algorithm
from gnnddm.distributed import (
    Accounting,
    LocalComm,
    TorchComm,
    World,
    check_backend,
    init,
    run_ranks,
    shutdown,
    world_from_env,
)
from gnnddm.errors import ConfigError, DataError, GnnddmError, TrainingDivergedError
from gnnddm.evaluate import Evaluator
from gnnddm.outputs import output_dir, write_json
from gnnddm.pipeline import build_problem
from gnnddm.rollout import format_table as format_leads
from gnnddm.rollout import metrics as lead_metrics
from gnnddm.rollout_training import RolloutTraining
from gnnddm.runbook import (
    FILE_ONLY,
    RunBook,
    plot_history,
    progress_bar,
    resume_advice,
    skill,
    stop_reason,
    sweep_dir,
)
from gnnddm.schema import validate
from gnnddm.signals import StopSignals, Terminated
from gnnddm.tracking import Tracker, flatten, tracker_from_config

log = logging.getLogger("gnnddm.train")

ENV_RUN_ID = "GNNDDM_MLFLOW_RUN_ID"
ENV_TRACKING_URI = "GNNDDM_TRACKING_URI"
ENV_RUN_CONTINUES = "GNNDDM_RUN_CONTINUES"  # "1": the launcher's MLflow run continues a stopped training
ENV_FAULT = "GNNDDM_FAULT"  # testing aid: "kill:rank=R:iteration=I" kills that rank once (first attempt)


def train(cfg: DictConfig) -> dict:
    """Train as configured; return the summary (also written to ``summary.json`` by rank 0)."""
    try:
        validate(cfg)
    except ConfigError as exc:  # before any run starts: no MLflow run, but scripts still find the reason
        if int(os.environ.get("RANK", "0")) == 0:
            _write_summary(output_dir(cfg), {"status": "failed", "mlflow_run_id": None, "error": str(exc)})
        raise
    check_resume(cfg)  # the folder holds the stopped run's summary: nothing is written on this error
    if cfg.distributed.backend != "none":
        if world_from_env().source == "single":
            return _launch_ranks(cfg)
    return _train_process(cfg)


# ------------------------------------------------------------------------------------ one process
def _train_process(cfg: DictConfig) -> dict:
    world = _join_world(cfg)
    out_dir = output_dir(cfg)
    tracker = _tracker_for_rank(cfg, world.rank == 0)
    book = RunBook(tracker, out_dir, rank0=world.rank == 0, hold=int(cfg.trainer.checkpoint_every) > 0)
    # a rank of a local launcher logs into the launcher's run, which holds the history when it continues
    # a stopped training or when the elastic agent restarted this rank
    book.reopened = tracker.run_id is not None and (os.environ.get(ENV_RUN_CONTINUES) == "1" or restarted())
    book.holds_start = book.reopened
    summary = book.summary
    finished = False
    stops = StopSignals()
    try:
        with stops, book:
            seed_everything(int(cfg.seed))
            summary["labels"] = run_labels(cfg)
            book.open(cfg, summary["labels"], resuming=resuming(cfg), sweep_dir=sweep_dir())
            state = _setup(cfg, world, book)
            state.run_id = summary.get("mlflow_run_id")
            _loop(cfg, state, book, out_dir, stops)
            book.finish(announce=tracker.owns_run)
            finished = True
            return summary
    except BaseException as exc:
        reason = stop_reason(exc)
        if reason is not None:
            advice = resume_advice(summary, out_dir, reason, requeued=stops.preempted)
            raise Terminated(reason, advice, preempted=stops.preempted) from None
        raise
    finally:
        if world.world_size > 1 or cfg.distributed.backend != "none":
            shutdown(synchronise=finished)


@dataclass
class _State:
    """What the loop works with (built by :func:`_setup`)."""

    data: object
    task: object
    model: torch.nn.Module
    objective: object
    comm: object
    accounting: object
    algorithm: object
    evaluator: object
    anchors: dict
    rank: int
    world_size: int
    params: dict = field(default_factory=dict)  # the flattened config, kept in checkpoints
    start_metrics: dict = field(default_factory=dict)  # logged at step 0 of a new MLflow run
    run_id: str | None = None  # the MLflow run, kept in checkpoints: a resume after kill -9 finds it there
    split: object = None  # the TimeSplit: the training split's climatology and the test split's lead times
    training: RolloutTraining | None = None  # rollout training's model and batches (None: one step)


def _setup(cfg: DictConfig, world, book: RunBook) -> _State:
    device = torch.device(cfg.trainer.device)
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    problem = build_problem(cfg)
    data, split = problem.data, problem.split
    task = build(cfg.task, "task")(data)
    data = task.data  # the graph trained on: assimilation appends observation nodes to the run's graph
    coarse = _algorithm_class(cfg).coarse_levels.__func__ is not Algorithm.coarse_levels.__func__
    if data is not problem.data and coarse:
        raise ConfigError(f"ddm={cfg.ddm.name} builds coarse graphs of the data, which do not carry task={task.name}'s "
                          "observation nodes; choose a one-level ddm (global, sync, halo_sync, asm, ...)")
    summary = book.summary
    anchors = task.split_anchors(split)
    _check_samples(anchors, data, task)
    _check_eval_leads(cfg, task, split)
    summary["valid_targets"] = _check_valid_targets(task, anchors, data)
    start_metrics = {f"data/valid_targets/{name}/{var}": n for name, counts in summary["valid_targets"].items()
                     for var, n in counts.items()}
    eval_train = anchors["train"][: int(cfg.trainer.eval_train_samples)]
    summary["samples"] = {"train": len(anchors["train"]), "train evaluated": len(eval_train),
                          "val": len(anchors["val"]), "test": len(anchors["test"])}
    start_metrics.update({f"data/samples/{k.replace(' ', '_')}": n for k, n in summary["samples"].items()})
    if described := task.summary():
        summary["task"] = described
    summary["units"] = dict(zip(data.variables, data.units, strict=True))
    summary["data"] = {"source": data.source, "reading": data.reading}
    summary["graph"] = {"num_nodes": data.num_nodes, "num_edges": data.num_edges, "kind": data.kind}
    parts = int(cfg.partition.num_parts)
    if parts > data.num_nodes:
        raise ConfigError(f"partition.num_parts={parts} exceeds the {data.num_nodes} nodes of the graph; valid: 1 .. "
                          f"{data.num_nodes}")

    edge_dim = 0 if data.edge_attr is None else int(data.edge_attr.shape[1])
    torch.manual_seed(int(cfg.seed))  # identical initial weights on every rank
    model = build(cfg.model, "model")(
        in_channels=task.in_channels, out_channels=task.out_channels, edge_dim=edge_dim
    ).to(device)
    # rollout training: the algorithm trains the k-step map, whose parameters are the model's
    training = RolloutTraining(task, model) if getattr(task, "rollout", 1) > 1 else None
    trained = model if training is None else training.model
    partition = build(_partition_cfg(cfg), "partition")(data)
    summary["partition"] = _partition_summary(partition)
    if world.rank == 0 and partition.num_parts > 1:
        from gnnddm.partition.plot import plot_partition

        title = f"{partition.method}: {partition.num_parts} parts, overlap {partition.overlap}"
        book.artifact(plot_partition(output_dir(cfg) / "partition_map.png", data.lat, data.lon,
                                     partition.parts, title=title))
    hops = int(getattr(model, "num_message_passing_layers", 0)) if training is None else \
        training.model.receptive_field(task.rollout)  # the longest rollout of a schedule
    if _algorithm_class(cfg).layerwise_halo:  # the halo is exchanged before every layer: one hop is exact
        hops = 1
    summary["partition"]["exact"] = partition.num_parts == 1 or partition.overlap >= hops
    if not summary["partition"]["exact"]:
        warnings.warn(
            f"partition.overlap={partition.overlap} is below the {'rollout' if training else 'model'}'s {hops} "
            "message-passing hops: the "
            f"subdomain losses drop the cut edges and do not sum to the global loss (sync is then not the "
            f"global method); set partition.overlap={hops} for exact subdomain problems",
            stacklevel=2,
        )
    start_metrics.update({f"partition/{k}": v for k, v in summary["partition"].items()
                          if isinstance(v, int | float)})

    accounting = Accounting(alpha=float(cfg.accounting.alpha), beta=float(cfg.accounting.beta))
    if world.source == "single":
        comm = LocalComm(partition.num_parts, accounting=accounting)
    else:
        comm = TorchComm(partition.num_parts, accounting=accounting, device=device)
    objective = build_objective(cfg.ddm, data, partition, device=device, parts=comm.parts_of_rank,
                                graph_builder=problem.rebuild)
    algorithm = build_algorithm(cfg.ddm, cfg.optimizer, trained, objective, comm, accounting)
    # every rank evaluates its share of the evaluation samples; the sums are reduced over the ranks
    eval_sets = {"train": eval_train, "val": anchors["val"], "test": anchors["test"]}
    # val and test are whole splits, counted above; the training samples evaluated are a subset
    counted = {name: np.array(list(summary["valid_targets"][name].values())) for name in ("val", "test")}
    evaluator = Evaluator(task, objective.full_graph, eval_sets, batch_size=int(cfg.trainer.batch_size),
                          seed=int(cfg.seed), device=device, comm=comm, valid_counts=counted)
    summary["baseline"] = {"name": task.baseline_name, **{f"{split}_rmse": evaluator.baseline(split)
                                                          for split in ("val", "test")}}
    for split in ("val", "test"):
        start_metrics.update({f"{split}_baseline_rmse/{v}": x for v, x in summary["baseline"][f"{split}_rmse"].items()})
    return _State(data, task, model, objective, comm, accounting, algorithm, evaluator, anchors,
                  world.rank, world.world_size, flatten(OmegaConf.to_container(cfg, resolve=True)), start_metrics,
                  split=problem.split, training=training)


def _loop(cfg: DictConfig, s: _State, book: RunBook, out_dir: Path, stops: StopSignals) -> None:
    """The outer iterations; a stop signal ends them after the current one (see :mod:`gnnddm.signals`)."""
    rng = np.random.default_rng(int(cfg.seed))
    max_it, eval_every = int(cfg.trainer.max_iterations), int(cfg.trainer.eval_every)
    ckpt_every, target = int(cfg.trainer.checkpoint_every), cfg.trainer.target_val_loss
    bs = min(int(cfg.trainer.batch_size), len(s.anchors["train"]))
    cosine = str(cfg.trainer.get("lr_schedule", "constant")) == "cosine"
    if cosine and s.algorithm._optimizer_factory is None:
        raise ConfigError(f"trainer.lr_schedule=cosine: ddm={cfg.ddm.name} has no global optimizer to schedule; "
                          "use trainer.lr_schedule=constant")
    first, elapsed0, last_eval, history = 1, 0.0, {}, []
    resumed = _maybe_resume(cfg, s, rng, out_dir)
    if resumed is not None:
        first, elapsed0, last_eval = resumed["iteration"] + 1, resumed["elapsed"], resumed.get("last_eval", {})
        history = list(resumed.get("history", []))
        book.summary["resumed_from"] = resumed["iteration"]
        book.tags({"gnnddm.resumed_from": resumed["iteration"],
                   "gnnddm.restarts": os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")})
    if not book.holds_start:  # a new MLflow run, or a continued one that logged nothing yet
        book.log(s.start_metrics, step=0)
    if not book.reopened:  # its history from iteration 1, the checkpoint's included
        for metrics in history:
            book.log(metrics, step=int(metrics["iteration"]))
    status, start, it = "finished", time.perf_counter() - elapsed0, first - 1
    progress = progress_bar(max_it, first - 1, enabled=bool(cfg.trainer.progress) and s.rank == 0)
    # a rank assembles only the rows its subdomains read, unless the algorithm needs the whole graph
    rows = None if s.algorithm.uses_full_batch or s.world_size == 1 else s.objective.local_nodes
    if s.data.lazy:  # what a training batch reads of each time step on this rank
        book.summary["data"].update(rows=s.data.num_nodes if rows is None else len(rows),
                                    points_per_step=s.data.X.reader.points_per_step(rows))
    s.comm.reset_times()  # the rank times cover the outer iterations, not the set-up
    # the next batch's fields are read while a step computes; its rng_state is what a checkpoint keeps
    batches = BatchStream(s.task if s.training is None else s.training.batches, s.anchors["train"], bs, rng, rows,
                          count=max_it - first + 1, prefetch=bool(cfg.trainer.prefetch))
    # a stop signal from here on ends the run after an iteration, with its checkpoint, or not at all once
    # the last one is done: never between a logged iteration and its checkpoint
    with stops.deferred(), batches:
        for it in range(first, max_it + 1):
            _maybe_inject_fault(s.rank, it)
            steps = 1 if s.training is None else s.training.at(it)  # before its batch is assembled
            batch = batches.next()
            if rows is None and not bool(batch.valid.any()):
                raise DataError(f"{s.data.source}: the mini-batch of iteration {it} has no valid target; the "
                                "training split is too sparse for trainer.batch_size={bs}")
            if cosine:
                s.algorithm.scale_learning_rate(0.5 * (1.0 + math.cos(math.pi * (it - 1) / max_it)))
            stats = s.algorithm.step(batch)
            _check_finite(stats.get("loss"), it, float(cfg.trainer.max_loss), "loss")
            metrics = {**s.accounting.as_dict(), "wall_time": time.perf_counter() - start,
                       "data/wait_seconds": batches.wait_seconds, **stats}
            if s.training is not None:
                metrics["train/rollout_steps"] = steps
            if cosine:
                metrics["train/lr"] = s.algorithm.optimizer.param_groups[0]["lr"]
            stop = False
            if it % eval_every == 0 or it == max_it:
                metrics.update(_rank_times(s.comm))
                last_eval = s.evaluator(s.model)  # the same values on every rank
                _check_finite(last_eval["train_loss"], it, float(cfg.trainer.max_loss), "train_loss")
                metrics.update(last_eval)
                metrics.update(_skills(last_eval, book.summary["baseline"], "val"))
                stop = target is not None and last_eval["val_loss"] <= float(target)
                stop = s.comm.agree(stop)  # rank 0 decides, so that no float difference splits the ranks
                log.info("iteration %d: val loss %.6g, train loss %.6g", it, last_eval["val_loss"],
                         last_eval["train_loss"], extra=FILE_ONLY)
            book.log(metrics, step=it)
            history.append({"iteration": it, **metrics})
            progress.update(1)
            progress.set_postfix(loss=f"{stats.get('loss', float('nan')):.4f}",
                                 val=f"{last_eval.get('val_loss', float('nan')):.4f}")
            if ckpt_every and it % ckpt_every == 0 and it != max_it:
                save_checkpoint(out_dir, s.rank, it,
                                _checkpoint_state(s, batches.rng_state, it, start, last_eval, history))
                book.commit()  # what was logged up to a checkpoint survives a crash
            _stop_if_signalled(cfg, s, stops, out_dir, book, it, batches.rng_state, start, last_eval, history)
            if stop:
                status = "target_reached"
                break
        progress.close()
        _finish(cfg, s, book, out_dir, history, last_eval, status, it, start, batches)


def _skills(scores: dict, baseline: dict, split: str) -> dict[str, float]:
    """``{split}_skill/<var>`` from the ``{split}_rmse/<var>`` of ``scores`` and the baseline's RMSE."""
    rmse = {k.split("/", 1)[1]: v for k, v in scores.items() if k.startswith(f"{split}_rmse/")}
    return {f"{split}_skill/{v}": x for v, x in skill(rmse, baseline.get(f"{split}_rmse", {})).items()}


def _finish(cfg, s: _State, book: RunBook, out_dir, history, last_eval, status, it, start, batches) -> None:
    acc = s.accounting.as_dict()
    acc.update(iterations=it, wall_time=time.perf_counter() - start)
    acc["seconds_per_iteration"] = acc["wall_time"] / max(it, 1)
    acc["data_wait_seconds"] = batches.wait_seconds  # waiting for a batch's fields, not covered by a step
    if s.data.lazy:
        book.summary["data"]["points_read"] = s.data.X.reader.points_read
    book.summary["peak_memory_gb"] = peak_memory_gb()  # of this process (rank)
    summary = book.summary
    rank_times = s.comm.gather_times()
    if rank_times:
        summary["rank_times"] = rank_times
    test = s.evaluator(s.model, splits=("test",))
    scores = {**last_eval, **test}

    def rmse(split):
        return {k.split("/", 1)[1]: v for k, v in scores.items() if k.startswith(f"{split}_rmse/")}

    summary.update(
        status=status,
        final={"train_loss": last_eval.get("train_loss"), "val_loss": last_eval.get("val_loss"),
               "val_rmse": rmse("val"), "test_loss": test.get("test_loss"), "test_rmse": rmse("test"),
               "val_skill": skill(rmse("val"), summary["baseline"]["val_rmse"]),
               "test_skill": skill(rmse("test"), summary["baseline"]["test_rmse"])},
        accounting=acc,
    )
    book.log({"iterations": it, "seconds_per_iteration": acc["seconds_per_iteration"], **test,
              **_skills(test, summary["baseline"], "test")}, step=it)
    leads = _lead_scores(cfg, s)
    if leads is not None:
        summary["leads"] = {k: leads[k] for k in ("leads", "lead_hours", "inits", "climatology")}
        book.log(lead_metrics(leads), step=it)
        if s.rank == 0:
            write_json(out_dir / "leads_test.json", leads)
            book.artifact(out_dir / "leads_test.json")
            log.info("%s", format_leads(leads))
    save_checkpoint(out_dir, s.rank, it, _checkpoint_state(s, batches.rng_state, it, start, last_eval, history))
    if s.rank != 0:
        return
    model_path = out_dir / "model.pt"
    save_model(model_path, s.model, cfg, s.data, s.task, it, run_id=summary.get("mlflow_run_id"))
    book.artifact(model_path)
    if history:
        plot_history(history, out_dir / "loss_curve.png")
        book.artifact(out_dir / "loss_curve.png")


def _check_eval_leads(cfg: DictConfig, task, split) -> None:
    """``trainer.eval_leads`` asks for a forecast task and at most the leads the test split allows."""
    leads = cfg.trainer.get("eval_leads", 0)
    if not leads:
        return
    if task.name != "forecast":
        raise ConfigError(f"trainer.eval_leads={leads}: lead-time scores need task=forecast (this run's task is "
                          f"{task.name}); set trainer.eval_leads=0")
    from gnnddm.rollout import reach

    steps = set(np.asarray(split.test).tolist())
    longest = max((reach(task, int(t), steps) for t in steps), default=0)
    if longest < 1 or (leads != "max" and int(leads) > longest):
        raise ConfigError(f"trainer.eval_leads={leads}: the test split ({len(steps)} steps) allows 1 to {longest} "
                          f"leads of {task.lead} step(s); choose at most {longest}, or max")


def _lead_scores(cfg: DictConfig, s: _State) -> dict | None:
    """The test split's scores per lead time (:func:`gnnddm.rollout.score_leads`) when ``trainer.eval_leads``
    asks for them; every rank rolls out its share of the initial times."""
    leads = cfg.trainer.get("eval_leads", 0)
    if not leads:
        return None
    from gnnddm.rollout import Climatology, Rollout, score_leads

    rollout = Rollout(s.task, s.model, s.evaluator.graph, device=s.evaluator.device,
                      batch_size=int(cfg.trainer.batch_size))
    climatology = Climatology.from_steps(s.task, s.split.train)
    return score_leads(rollout, climatology, s.split.test, None if leads == "max" else int(leads),
                       rank=s.rank, world=s.world_size, comm=s.comm if s.world_size > 1 else None)


# ------------------------------------------------------------------------------------ checkpoints
def _checkpoint_state(s: _State, rng_state: dict, it: int, start: float, last_eval: dict, history: list) -> dict:
    return {
        "iteration": it,
        "history": history if s.rank == 0 else [],  # the logged metrics, for a resumed run's history
        "elapsed": time.perf_counter() - start,
        "model": s.model.state_dict(),
        "algorithm": s.algorithm.state_dict(),
        "numpy_rng": rng_state,
        "torch_rng": torch.get_rng_state(),
        "last_eval": last_eval,
        "world_size": s.world_size,
        "config": s.params,
        "mlflow_run_id": s.run_id,
    }


def _stop_if_signalled(cfg, s: _State, stops: StopSignals, out_dir, book: RunBook, it, rng_state, start, last_eval,
                       history) -> None:
    """After iteration ``it``: if a stop signal arrived (on rank 0, for all ranks), checkpoint and stop."""
    received = s.comm.agree(stops.received is not None)  # every rank stops after the same iteration
    if not received:
        return
    book.summary["iteration"] = it
    if int(cfg.trainer.checkpoint_every):
        save_checkpoint(out_dir, s.rank, it, _checkpoint_state(s, rng_state, it, start, last_eval, history))
        book.summary["checkpoint_iteration"] = it
    book.commit()
    raise Terminated(stops.received or "a stop signal on rank 0")


def _maybe_resume(cfg: DictConfig, s: _State, rng, out_dir: Path) -> dict | None:
    """Restore the latest complete checkpoint when ``resume`` is set, or when the elastic agent restarted
    us or SLURM requeued the job (``SLURM_RESTART_COUNT`` > 0)."""
    again = restarted()
    if not (bool(cfg.resume) or again):
        return None
    state = find_checkpoint(out_dir, s.rank, s.world_size)
    if state is None:
        if again:
            return None  # failed before the first checkpoint: start again
        raise ConfigError(f"resume=true: no complete checkpoint in {out_dir} (set output_dir to the run's folder)")
    try:
        s.model.load_state_dict(state["model"])
        s.algorithm.load_state_dict(state["algorithm"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ConfigError(f"resume=true: the checkpoint of iteration {state['iteration']} in {out_dir} does not "
                          f"fit this configuration ({config_changes(state.get('config'), s.params)}); resume with "
                          "the values it was made with, or start afresh in another output_dir") from exc
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed from iteration %d", state["iteration"])
    return state


def _maybe_inject_fault(rank: int, it: int) -> None:
    spec = os.environ.get(ENV_FAULT)
    if not spec or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        return
    kind, *kv = spec.split(":")
    opts = dict(item.split("=") for item in kv)
    if kind == "kill" and int(opts.get("rank", 0)) == rank and int(opts.get("iteration", 1)) == it:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------ ranks
def _join_world(cfg: DictConfig):
    if cfg.distributed.backend == "none":
        return World(0, 1, 0, "127.0.0.1", 0, "single")
    world = world_from_env()
    init(world, str(cfg.distributed.backend), float(cfg.distributed.timeout), str(cfg.trainer.device))
    return world


def _tracker_for_rank(cfg: DictConfig, rank0: bool) -> Tracker:
    if not rank0:
        return Tracker(enabled=False)
    tracker = tracker_from_config(cfg.tracking, run_name=_default_run_name(cfg))
    run_id = os.environ.get(ENV_RUN_ID)
    if run_id and tracker.enabled:
        tracker.uri = os.environ.get(ENV_TRACKING_URI, tracker.uri)
        tracker.attach(run_id)
    return tracker


def _launch_ranks(cfg: DictConfig) -> dict:
    """Start ``distributed.nproc_per_node`` local ranks; own the MLflow run and the summary."""
    nproc, restarts = int(cfg.distributed.nproc_per_node), int(cfg.distributed.max_restarts)  # validated
    check_backend(str(cfg.distributed.backend), str(cfg.trainer.device))
    if _is_global(cfg) and nproc > 1:
        raise ConfigError(f"ddm={cfg.ddm.name} trains the whole graph in one process; use ddm=sync (or "
                          "ddm=two_level ddm.coarsening=grid for a grid coarse space) to train partitions on "
                          f"distributed.nproc_per_node={nproc} ranks")
    if nproc > int(cfg.partition.num_parts):
        raise ConfigError(f"distributed.nproc_per_node={nproc} exceeds partition.num_parts="
                          f"{cfg.partition.num_parts}: every rank needs at least one subdomain")
    out_dir = output_dir(cfg)
    book = RunBook(tracker_from_config(cfg.tracking, run_name=_default_run_name(cfg)), out_dir)
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
            result, restart_count = run_ranks(_rank_worker, worker_cfg, nproc, restarts, out_dir, env,
                                              master_addr=str(cfg.distributed.master_addr))
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


def _rank_worker(cfg_container: dict) -> dict:
    """One rank started by :func:`_launch_ranks` (through :func:`gnnddm.distributed.run_ranks`).

    A stop signal ends the rank with the shell's status for it (143 for SIGTERM) and no traceback: the
    launching process reports the stop, or the rank whose failure made the agent stop the others.
    """
    cfg = OmegaConf.create(cfg_container)
    cfg.trainer.progress = cfg.trainer.progress and int(os.environ.get("RANK", "0")) == 0
    try:
        return _train_process(cfg)
    except Terminated as exc:
        raise SystemExit(exc.exit_code) from None


def peak_memory_gb() -> float:
    """The peak resident memory of this process so far, GB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB


def _rank_times(comm) -> dict[str, float]:
    """Every rank's clocks (none in one process), as ``time/<kind>/rank<r>``."""
    return {f"time/{key}/rank{r}": v for r, t in enumerate(comm.gather_times()) for key, v in t.items()}


# ------------------------------------------------------------------------------------------ helpers
def _check_samples(anchors: dict, data, task) -> None:
    """A :class:`ConfigError` with advice that can be followed when a split has no sample."""
    for name in ("train", "val"):
        if len(anchors[name]):
            continue
        if data.num_times == 1:
            advice = ("the data holds a single time step; train on it with task=interpolate, which holds out "
                      "nodes instead of time steps (task.split_by=nodes)")
        elif task.name == "forecast":
            ahead = task.rollout if name == "train" else 1
            advice = (f"a forecast sample needs {task.lead * (task.history - 1 + ahead) + 1} consecutive time steps "
                      f"in the split ({data.num_times} in the data); enlarge data.split.{name} or lower task.lead"
                      + (f" or task.rollout ({ahead})" if ahead > 1 else ""))
        else:
            advice = f"give data.split.{name} a larger fraction or a longer date range"
        raise ConfigError(f"data.split.{name}: no {'training' if name == 'train' else 'validation'} sample; "
                          f"{advice}")


def _check_valid_targets(task, anchors: dict, data) -> dict[str, dict[str, int]]:
    """Valid target entries per split and variable; a :class:`DataError` where training or validation has
    none for a variable (its loss and RMSE would be 0 over nothing)."""
    counts = {name: dict(zip(data.variables, (int(n) for n in task.valid_counts(a, name)), strict=True))
              for name, a in anchors.items()}
    for name in ("train", "val"):
        empty = [v for v, n in counts[name].items() if n == 0]
        if empty:
            raise DataError(
                f"{data.source}: no valid value of {', '.join(empty)} in the {name} split (all missing, "
                f"non-numeric or masked as implausible); drop {'it' if len(empty) == 1 else 'them'} with "
                f"data.variables or choose a data.split / data.time range that holds values"
            )
    return counts


def _check_finite(value, it: int, limit: float, name: str) -> None:
    if value is not None and (not np.isfinite(value) or value > limit):
        raise TrainingDivergedError(
            f"training diverged at iteration {it}: {name} = {value:.4g} (limit trainer.max_loss={limit:g}); "
            "lower the learning rate (optimizer.lr or ddm.local_solver.lr)"
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def run_labels(cfg: DictConfig) -> dict[str, str]:
    """Short names of the chosen components (Hydra's group choices where available), for tags and tables."""
    try:
        choices = dict(HydraConfig.get().runtime.choices)
    except ValueError:
        choices = {}

    def pick(group: str) -> str:
        c = choices.get(group)
        if c:
            return str(c)
        sec = cfg.get(group) or {}
        return str(sec.get("name") or str(sec.get("_target_", "?")).rsplit(".", 1)[-1]).lower()

    return {
        "algorithm": pick("ddm"),
        "num_parts": str(_partition_cfg(cfg).num_parts),
        "overlap": str(_partition_cfg(cfg).overlap),
        "partitioner": pick("partition"),
        "model": pick("model"),
        "data": pick("data"),
        "experiment": str(choices.get("experiment") or cfg.get("experiment_name") or "-"),
        "edge_weights": str(cfg.graph.get("weights", "distance")),
        "seed": str(cfg.seed),
        "backend": str(cfg.distributed.backend),
        "ranks": str(_ranks(cfg)),
    }


def _ranks(cfg: DictConfig) -> int:
    """The processes of the run: 1 without a backend, else the world's size (torchrun, SLURM, or the
    ranks the local launcher starts)."""
    if str(cfg.distributed.backend) == "none":
        return 1
    for key in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(key):
            return int(os.environ[key])
    return int(cfg.distributed.nproc_per_node)


def _algorithm_class(cfg: DictConfig) -> type:
    """The class of ``ddm._target_``."""
    target = str(cfg.ddm.get("_target_", ""))
    try:
        return get_class(target)
    except Exception:  # noqa: BLE001 - named as the config error it is
        raise ConfigError(f"ddm._target_: cannot import {target!r}; choose one of the options in conf/ddm/") from None


def _is_global(cfg: DictConfig) -> bool:
    """Whether the algorithm trains the whole graph in one process (its class's ``whole_graph``)."""
    return bool(getattr(_algorithm_class(cfg), "whole_graph", False))


def _partition_cfg(cfg: DictConfig) -> DictConfig:
    """The partition section; ``global`` works on the whole graph: one part, no overlap."""
    if not _is_global(cfg):
        return cfg.partition
    section = OmegaConf.create(OmegaConf.to_container(cfg.partition, resolve=True))
    section.num_parts, section.overlap = 1, 0
    return section


def _default_run_name(cfg: DictConfig) -> str:
    lab = run_labels(cfg)
    return f"{lab['algorithm']}-p{lab['num_parts']}-{lab['model']}"


def _partition_summary(partition) -> dict:
    m = partition.metrics
    keys = ("edge_cut", "edge_cut_fraction", "imbalance", "halo_ratio", "boundary_fraction")
    return {"num_parts": partition.num_parts, "overlap": partition.overlap, "method": partition.method,
            **{k: m[k] for k in keys if k in m}}


def _write_summary(out_dir: Path, summary: dict) -> None:
    write_json(out_dir / "summary.json", summary)
