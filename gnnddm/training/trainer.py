"""``train(cfg) -> summary``: the training run of ``gnnddm train``, and its loop (:meth:`Trainer.train`).

The loop reads as the algorithm: draw a mini-batch -> one algorithm step (the subdomain solves and their
combination happen inside it) -> log -> validate when due -> checkpoint when due -> stop when due. Its
state is held by components that the loop calls: the :class:`~gnnddm.training.checkpoint.CheckpointManager`,
the :class:`~gnnddm.training.validate.Validator`, the :class:`~gnnddm.training.runbook.RunBook` (summary,
MLflow run, metric history) and :class:`~gnnddm.training.signals.StopSignals`;
:func:`~gnnddm.training.build.build_run` builds the parts it trains (data, graph, partition, model,
communicator, algorithm).

Execution: with ``distributed.backend=none`` one process computes every subdomain in turn.
With ``gloo`` / ``nccl``, a process started by ``torchrun`` or ``srun`` joins the process group its
environment describes; a plain ``gnnddm train distributed.nproc_per_node=N`` starts N local ranks itself
(:mod:`gnnddm.training.launcher`) and owns the MLflow run, which its ranks log into. Only rank 0 logs and
writes ``summary.json``. Every run ends with ``summary.json`` and its MLflow run FINISHED, FAILED or KILLED:
Ctrl-C, SIGTERM and SIGUSR1 (:mod:`gnnddm.training.signals`) stop it after the current outer iteration with
a checkpoint (when ``trainer.checkpoint_every`` > 0), status ``terminated`` and the way to resume.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gnnddm.bundle import save_model
from gnnddm.data.prefetch import BatchStream
from gnnddm.distributed import shutdown, world_from_env
from gnnddm.errors import ConfigError, DataError
from gnnddm.models.execution import compile_seconds
from gnnddm.outputs import output_dir, write_json
from gnnddm.schema import validate
from gnnddm.schema.root import RootConfig
from gnnddm.tasks.rollout import format_table as format_leads
from gnnddm.tasks.rollout import metrics as lead_metrics
from gnnddm.training.build import Run, build_run
from gnnddm.training.checkpoint import CheckpointManager, check_resume, config_changes, restarted, resuming
from gnnddm.training.checks import check_finite
from gnnddm.training.labels import run_labels
from gnnddm.training.launcher import continues_run, inject_fault, join_world, launch_ranks, tracker_for_rank
from gnnddm.training.runbook import RunBook, plot_history, progress_bar, resume_advice, stop_reason, sweep_dir
from gnnddm.training.scores import skill_metrics, skills, split_rmse
from gnnddm.training.signals import StopSignals, Terminated
from gnnddm.training.validate import Validator

log = logging.getLogger("gnnddm.train")


def train(cfg: DictConfig) -> dict:
    """Train as configured; return the summary (also written to ``summary.json`` by rank 0)."""
    try:
        settings = validate(cfg)
    except ConfigError as exc:  # before any run starts: no MLflow run, but scripts still find the reason
        if int(os.environ.get("RANK", "0")) == 0:
            write_json(output_dir(cfg) / "summary.json", {"status": "failed", "mlflow_run_id": None,
                                                          "error": str(exc)})
        raise
    check_resume(cfg)  # the folder holds the stopped run's summary: nothing is written on this error
    # a backend, but no torchrun or srun started this process as a rank: start the ranks here
    if settings.distributed.backend != "none" and world_from_env().source == "single":
        return launch_ranks(cfg, _rank_worker)
    return _train_process(cfg, settings)


def _train_process(cfg: DictConfig, settings: RootConfig) -> dict:
    """One process of the run (the only one, or one rank): its run book, its parts and the loop."""
    world = join_world(cfg)
    out_dir = output_dir(cfg)
    tracker = tracker_for_rank(cfg, world.rank == 0)
    book = RunBook(tracker, out_dir, rank0=world.rank == 0, hold=settings.trainer.checkpoint_every > 0)
    # a rank of a local launcher logs into the launcher's run, which holds the history when it continues
    # a stopped training or when the elastic agent restarted this rank
    book.reopened = tracker.run_id is not None and (continues_run() or restarted())
    book.holds_start = book.reopened
    finished = False
    stops = StopSignals()
    try:
        with stops, book:
            seed_everything(settings.seed)
            book.summary["labels"] = run_labels(cfg)
            book.open(cfg, book.summary["labels"], resuming=resuming(cfg), sweep_dir=sweep_dir())
            run = build_run(cfg, settings, world, book)
            Trainer(cfg, settings, run, book, stops).train()
            book.finish(announce=tracker.owns_run)
            finished = True
            return book.summary
    except BaseException as exc:
        reason = stop_reason(exc)
        if reason is not None:
            advice = resume_advice(book.summary, out_dir, reason, requeued=stops.preempted)
            raise Terminated(reason, advice, preempted=stops.preempted) from None
        raise
    finally:
        if world.world_size > 1 or settings.distributed.backend != "none":
            shutdown(synchronise=finished)


def _rank_worker(cfg_container: dict) -> dict:
    """One rank started by :func:`~gnnddm.training.launcher.launch_ranks`.

    A stop signal ends the rank with the shell's status for it (143 for SIGTERM) and no traceback: the
    launching process reports the stop, or the rank whose failure made the agent stop the others.
    """
    cfg = OmegaConf.create(cfg_container)
    cfg.trainer.progress = cfg.trainer.progress and int(os.environ.get("RANK", "0")) == 0
    try:
        return _train_process(cfg, validate(cfg))
    except Terminated as exc:
        raise SystemExit(exc.exit_code) from None


# ------------------------------------------------------------------------------------------ the loop
class Trainer:
    """The outer iterations of one process of a run, over the parts of ``run``.

    Parameters
    ----------
    cfg : DictConfig
        The composed configuration (stored in ``model.pt`` and named in messages).
    settings : RootConfig
        Its validated root keys: ``trainer``, ``seed``, ``resume``.
    run : Run
        What is trained (:func:`~gnnddm.training.build.build_run`).
    book : RunBook
        The summary, the MLflow run and the metric history.
    stops : StopSignals
        Stop signals received; the loop stops after the iteration in which one arrived.
    """

    def __init__(self, cfg: DictConfig, settings: RootConfig, run: Run, book: RunBook, stops: StopSignals):
        self.cfg, self.run, self.book, self.stops = cfg, run, book, stops
        t = settings.trainer
        self.trainer = t
        self.batch_size = min(t.batch_size, len(run.anchors["train"]))
        self.cosine = t.lr_schedule == "cosine"
        if self.cosine and run.algorithm._optimizer_factory is None:
            raise ConfigError(f"trainer.lr_schedule=cosine: ddm={cfg.ddm.name} has no global optimizer to schedule; "
                              "use trainer.lr_schedule=constant")
        self.checkpoints = CheckpointManager(book.out_dir, t.checkpoint_every, run.world.rank,
                                             run.world.world_size, settings.resume)
        self.validator = Validator(run.evaluator, t, book.summary["baseline"])
        self.rng = np.random.default_rng(settings.seed)  # the training batches' draws
        self.start = time.perf_counter()  # less the elapsed time of a resumed run
        self.compiled_from = compile_seconds()  # trainer.compile: the compile time inside the wall time
        self.iteration = 0  # the last outer iteration done

    def train(self) -> None:
        """The outer iterations; a stop signal ends them after the current one (:mod:`~gnnddm.training.signals`)."""
        first = self.resume() + 1
        shown = self.trainer.progress and self.run.world.rank == 0
        progress = progress_bar(self.trainer.max_iterations, first - 1, enabled=shown)
        batches = self.batch_stream(count=self.trainer.max_iterations - first + 1)
        status = "finished"
        # a stop signal from here on ends the run after an iteration, with its checkpoint, or not at all once
        # the last one is done: never between a logged iteration and its checkpoint
        with self.stops.deferred(), batches:
            for it in range(first, self.trainer.max_iterations + 1):
                inject_fault(self.run.world.rank, it)
                metrics = self.step(it, batches)
                if self.validator.should_validate(it):
                    metrics.update(_rank_times(self.run.comm))
                    metrics.update(self.validator.validate(self.run.model, it))
                self.book.record(metrics, it)
                self.iteration = it
                progress.update(1)
                progress.set_postfix(loss=f"{metrics.get('loss', float('nan')):.4f}",
                                     val=f"{self.validator.last.get('val_loss', float('nan')):.4f}")
                if self.checkpoints.should_save(it, self.trainer.max_iterations):
                    self.checkpoints.save(it, self.state_dict(batches))
                    self.book.commit()  # what was logged up to a checkpoint survives a crash
                self.stop_if_signalled(batches)
                if self.validator.reached:
                    status = "target_reached"
                    break
            progress.close()
            self.finish(status, batches)

    # ------------------------------------------------------------------ one iteration
    def step(self, it: int, batches: BatchStream) -> dict[str, float]:
        """Outer iteration ``it`` on the next batch; its metrics."""
        run = self.run
        steps = 1 if run.training is None else run.training.at(it)  # before its batch is assembled
        batch = batches.next()
        if batches.nodes is None and not bool(batch.valid.any()):
            raise DataError(f"{run.data.source}: the mini-batch of iteration {it} has no valid target; the "
                            f"training split is too sparse for trainer.batch_size={self.batch_size}")
        if self.cosine:
            cosine = math.cos(math.pi * (it - 1) / self.trainer.max_iterations)
            run.algorithm.scale_learning_rate(0.5 * (1.0 + cosine))
        stats = run.algorithm.step(batch)
        check_finite(stats.get("loss"), it, self.trainer.max_loss, "loss")
        metrics = {**run.comm.accounting.as_dict(), "wall_time": time.perf_counter() - self.start,
                   "data/wait_seconds": batches.wait_seconds, **stats}
        if self.trainer.compile:
            metrics["compile_seconds"] = compile_seconds() - self.compiled_from
        if run.training is not None:
            metrics["train/rollout_steps"] = steps
        if self.cosine:
            metrics["train/lr"] = run.algorithm.optimizer.param_groups[0]["lr"]
        return metrics

    def batch_stream(self, count: int) -> BatchStream:
        """The training batches of the next ``count`` iterations, each read while the previous step computes."""
        run = self.run
        # a rank assembles only the rows its subdomains read, unless the algorithm needs the whole graph
        rows = None if run.algorithm.uses_full_batch or run.world.world_size == 1 else run.objective.local_nodes
        if run.data.lazy:  # what a training batch reads of each time step on this rank
            self.book.summary["data"].update(rows=run.data.num_nodes if rows is None else len(rows),
                                             points_per_step=run.data.X.reader.points_per_step(rows))
        run.comm.reset_times()  # the rank times cover the outer iterations, not the set-up
        source = run.task if run.training is None else run.training.batches
        return BatchStream(source, run.anchors["train"], self.batch_size, self.rng, rows, count=count,
                           prefetch=self.trainer.prefetch)

    def stop_if_signalled(self, batches: BatchStream) -> None:
        """After an iteration: if a stop signal arrived (on rank 0, for all ranks), checkpoint and stop."""
        if not self.run.comm.agree(self.stops.received is not None):  # every rank stops after the same one
            return
        it = self.book.summary["iteration"] = self.iteration
        if self.checkpoints.on_stop:
            self.checkpoints.save(it, self.state_dict(batches))
            self.book.summary["checkpoint_iteration"] = it
        self.book.commit()
        raise Terminated(self.stops.received or "a stop signal on rank 0")

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self, batches: BatchStream) -> dict:
        """This rank's state after :attr:`iteration` (see :mod:`gnnddm.training.checkpoint` for its kinds)."""
        run = self.run
        return {
            "iteration": self.iteration,
            "history": self.book.history if run.world.rank == 0 else [],  # for a resumed run's history
            "elapsed": time.perf_counter() - self.start,
            "model": run.model.state_dict(),
            "algorithm": run.algorithm.state_dict(),
            "numpy_rng": batches.rng_state,
            "torch_rng": torch.get_rng_state(),
            **self.validator.state_dict(),
            "world_size": run.world.world_size,
            "config": run.params,
            "mlflow_run_id": self.book.summary.get("mlflow_run_id"),
        }

    def resume(self) -> int:
        """Continue from the latest complete checkpoint where there is one to continue from
        (:meth:`CheckpointManager.load`); start the run's metrics. The last iteration done (0: none)."""
        state = self.checkpoints.load()
        if state is not None:
            self.load_state_dict(state)
            self.book.summary["resumed_from"] = self.iteration
            self.book.tags({"gnnddm.resumed_from": self.iteration,
                            "gnnddm.restarts": os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")})
        if not self.book.holds_start:  # a new MLflow run, or a continued one that logged nothing yet
            self.book.log(self.run.start_metrics, step=0)
        self.book.restore([] if state is None else state.get("history", []))
        return self.iteration

    def load_state_dict(self, state: dict) -> None:
        run = self.run
        try:
            run.model.load_state_dict(state["model"])
            run.algorithm.load_state_dict(state["algorithm"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(f"resume=true: the checkpoint of iteration {state['iteration']} in {self.book.out_dir} "
                              f"does not fit this configuration ({config_changes(state.get('config'), run.params)}); "
                              "resume with the values it was made with, or start afresh in another output_dir") from exc
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.iteration, self.start = state["iteration"], time.perf_counter() - state["elapsed"]
        self.validator.load_state_dict(state)
        log.info("resumed from iteration %d", state["iteration"])

    # ------------------------------------------------------------------ the end
    def finish(self, status: str, batches: BatchStream) -> None:
        """The test scores, the summary's final entries, the last checkpoint, ``model.pt`` and the loss curve."""
        run, summary, it = self.run, self.book.summary, self.iteration
        acc = run.comm.accounting.as_dict()
        acc.update(iterations=it, wall_time=time.perf_counter() - self.start)
        if self.trainer.compile:  # reported apart: the step time is the wall time less the compiling
            acc["compile_seconds"] = compile_seconds() - self.compiled_from
        acc["seconds_per_iteration"] = (acc["wall_time"] - acc.get("compile_seconds", 0.0)) / max(it, 1)
        acc["data_wait_seconds"] = batches.wait_seconds  # waiting for a batch's fields, not covered by a step
        if run.data.lazy:
            summary["data"]["points_read"] = run.data.X.reader.points_read
        summary["peak_memory_gb"] = peak_memory_gb()  # of this process (rank)
        rank_times = run.comm.gather_times()
        if rank_times:
            summary["rank_times"] = rank_times
        last, test = self.validator.last, run.evaluator(run.model, splits=("test",))
        scores, base = {**last, **test}, summary["baseline"]
        summary.update(
            status=status,
            final={"train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
                   "val_rmse": split_rmse(scores, "val"), "test_loss": test.get("test_loss"),
                   "test_rmse": split_rmse(scores, "test"),
                   "val_skill": skills(split_rmse(scores, "val"), base["val_rmse"]),
                   "test_skill": skills(split_rmse(scores, "test"), base["test_rmse"])},
            accounting=acc,
        )
        self.book.log({"iterations": it, "seconds_per_iteration": acc["seconds_per_iteration"], **test,
                       **skill_metrics(test, base, "test")}, step=it)
        self.lead_scores()
        self.checkpoints.save(it, self.state_dict(batches))
        if run.world.rank == 0:
            self.save_outputs()

    def lead_scores(self) -> None:
        """The test split's scores per lead time (:func:`gnnddm.tasks.rollout.score_leads`) when
        ``trainer.eval_leads`` asks for them; every rank rolls out its share of the initial times."""
        leads = self.trainer.eval_leads
        if not leads:
            return
        from gnnddm.tasks.rollout import Climatology, Rollout, score_leads

        run, out_dir = self.run, self.book.out_dir
        rollout = Rollout(run.task, run.model, run.evaluator.graph, device=run.evaluator.device,
                          batch_size=self.trainer.batch_size)
        climatology = Climatology.from_steps(run.task, run.split.train)
        world = run.world
        scores = score_leads(rollout, climatology, run.split.test, None if leads == "max" else leads,
                             rank=world.rank, world=world.world_size, comm=run.comm if world.world_size > 1 else None)
        self.book.summary["leads"] = {k: scores[k] for k in ("leads", "lead_hours", "inits", "climatology")}
        self.book.log(lead_metrics(scores), step=self.iteration)
        if world.rank == 0:
            write_json(out_dir / "leads_test.json", scores)
            self.book.artifact(out_dir / "leads_test.json")
            log.info("%s", format_leads(scores))

    def save_outputs(self) -> None:
        """``model.pt`` and the loss curve (rank 0)."""
        run, out_dir = self.run, self.book.out_dir
        model_path = out_dir / "model.pt"
        save_model(model_path, run.model, self.cfg, run.data, run.task, self.iteration,
                   run_id=self.book.summary.get("mlflow_run_id"))
        self.book.artifact(model_path)
        if self.book.history:
            plot_history(self.book.history, out_dir / "loss_curve.png")
            self.book.artifact(out_dir / "loss_curve.png")


# ------------------------------------------------------------------------------------------ helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def peak_memory_gb() -> float:
    """The peak resident memory of this process so far, GB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB


def _rank_times(comm) -> dict[str, float]:
    """Every rank's clocks (none in one process), as ``time/<kind>/rank<r>``."""
    return {f"time/{key}/rank{r}": v for r, t in enumerate(comm.gather_times()) for key, v in t.items()}
