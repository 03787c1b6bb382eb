"""What a training run leaves behind: ``summary.json``, its MLflow run, its log and the summary it prints.

A :class:`RunBook` owns them for one process. Rank 0 writes; on other ranks every call does nothing. It
opens the MLflow run (a new one, the stopped run that a resumed training continues, or the run of the
launcher that started this rank), logs metrics under their MLflow names (:func:`gnnddm.training.tracking.metric_name`)
and ends the run FINISHED, FAILED or KILLED, never RUNNING.

When the run checkpoints (``trainer.checkpoint_every`` > 0), the metrics of the iterations after the last
checkpoint are held back and stored with the next checkpoint (or at the end): what the store holds is then
exactly what a resumed run continues from, and a resumed run's history is one series without repeated
steps.

The log. Under ``gnnddm train``, the run's log is ``train.log`` in its output folder (timestamps, levels,
every evaluation); the terminal shows the start, the end-of-run summary, warnings and errors. A record
logged with ``extra={"console": False}`` goes to the file only (:class:`ConsoleFilter`, used by
``conf/hydra/job_logging/gnnddm.yaml``).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from gnnddm.outputs import save_figure, write_json
from gnnddm.training.scores import skills
from gnnddm.training.signals import Terminated
from gnnddm.training.tracking import Tracker, config_params, environment_tags, metric_name

log = logging.getLogger("gnnddm.train")

FILE_ONLY = {"console": False}


class ConsoleFilter(logging.Filter):
    """Keeps records marked ``console=False`` off the terminal (they go to ``train.log`` only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True)


class RunBook:
    """The summary, the MLflow run and the log of one training process; as a context (``with book:``) it
    records a run that an exception ends as failed or terminated.

    Parameters
    ----------
    tracker : Tracker
        Disabled on ranks other than 0; attached (not owning the run) on the ranks of a local launcher.
    out_dir : Path
    rank0 : bool
    hold : bool
        Hold back metrics until :meth:`commit` (runs that checkpoint).
    """

    def __init__(self, tracker: Tracker, out_dir: Path, rank0: bool = True, hold: bool = False):
        self.tracker, self.out_dir, self.rank0, self.hold = tracker, Path(out_dir), rank0, hold
        self.summary: dict = {"status": "running", "mlflow_run_id": tracker.run_id, "output_dir": str(out_dir)}
        self.reopened = False  # continues the MLflow run of a stopped training
        self.holds_start = False  # the continued run holds the start's metrics (step 0) already
        self._held: list[tuple[dict, int]] = []
        self.history: list[dict] = []  # every iteration's metrics (loop names), kept in checkpoints

    # ------------------------------------------------------------------ as a context
    def __enter__(self) -> RunBook:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """A run left by an exception is recorded as failed, or as terminated when a stop signal ended it
        (:func:`stop_reason`); the exception goes on."""
        if exc is not None:
            reason = stop_reason(exc)
            self.fail(reason or str(exc), interrupted=reason is not None)
        return False

    # ------------------------------------------------------------------ the MLflow run
    def open(self, cfg: DictConfig, labels: dict, resuming: bool, sweep_dir: str | None = None, **tags) -> None:
        """Start the MLflow run, or continue the previous run of ``out_dir`` when ``resuming``: the run id
        recorded in its ``summary.json``, when the store holds it and its history ends at the checkpoint
        resumed from. A run that failed after logging beyond its last checkpoint is left as it is: the
        resumed training opens a new run, linked by the tag ``gnnddm.resumed_run_id``, that holds the history
        from iteration 1. A training started again without a checkpoint continues its run only when that
        logged no iteration. A rank of a local launcher is attached to the launcher's run already and opens
        nothing."""
        tracker = self.tracker
        if not tracker.enabled or tracker.run_id is not None:
            self.summary["mlflow_run_id"] = tracker.run_id
            return
        # the run named by the newest checkpoint (a process killed with -9 wrote no summary), else summary.json's
        previous = (checkpointed_run_id(self.out_dir) or previous_run_id(self.out_dir)) if resuming else None
        if previous:
            from gnnddm.training.checkpoint import latest_checkpoint

            # without a checkpoint the training starts again: only a run that logged no iteration continues
            self.reopened = tracker.reopen(previous, up_to=latest_checkpoint(self.out_dir) or 0)
            self.holds_start = self.reopened and tracker.logged_up_to is not None
            if not self.reopened:
                tags = {**tags, "gnnddm.resumed_run_id": previous}
                self.summary["resumed_run_id"] = previous
                tracker.end_orphan(previous)  # killed while RUNNING: it ends KILLED, linked from the new run
        if not self.reopened:
            all_tags = {**environment_tags(), "gnnddm.command": "train",
                        **{f"gnnddm.{k}": v for k, v in labels.items()}, **tags}
            overrides = hydra_overrides()
            if overrides is not None:
                all_tags["gnnddm.overrides"] = " ".join(overrides) or "(none)"
            tracker.start(tags=all_tags, sweep_dir=sweep_dir)
            if tracker.error:  # an unusable store: the run goes on untracked, and says why
                self.summary["tracking_error"] = tracker.error
            self.summary["mlflow_run_id"] = tracker.run_id  # named by summary.json even if stopped from here
        if not self.holds_start:  # a new run, or one stopped before it logged anything (its params maybe)
            tracker.log_params(config_params(OmegaConf.to_container(cfg, resolve=True)))
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        self.summary["mlflow_run_id"] = tracker.run_id
        if sweep_dir and self.rank0:
            self._note_sweep(Path(sweep_dir))
        log.info("run %s%s: output folder %s", tracker.run_id or "(not tracked)",
                 " (continued)" if self.reopened else "", self.out_dir)

    def _note_sweep(self, sweep_dir: Path) -> None:
        """``<sweep>/sweep.json``: the parent run and how to report on the sweep (read at its end)."""
        parent = self.tracker.parent_run_id
        if parent is None:
            return
        write_json(sweep_dir / "sweep.json", {
            "parent_run_id": parent, "tracking_uri": self.tracker.uri, "experiment": self.tracker.experiment,
            "report": report_command(self.tracker.uri, parent)})

    # ------------------------------------------------------------------ metrics
    def log(self, metrics: dict, step: int) -> None:
        """Log ``metrics`` (loop names) at ``step`` under their MLflow names (held back when :attr:`hold`)."""
        named = {metric_name(k): v for k, v in metrics.items()}
        if self.hold:
            self._held.append((named, step))
        else:
            self.tracker.log_metrics(named, step=step)

    def record(self, metrics: dict, step: int) -> None:
        """Log the metrics of outer iteration ``step`` and keep them in :attr:`history`."""
        self.log(metrics, step)
        self.history.append({"iteration": step, **metrics})

    def restore(self, history: list[dict]) -> None:
        """Continue a checkpointed run: its :attr:`history`, logged again unless the MLflow run was reopened
        (which holds it already)."""
        self.history = list(history)
        if not self.reopened:
            for metrics in self.history:
                self.log(metrics, step=int(metrics["iteration"]))

    def commit(self) -> None:
        """Everything logged so far into the store (at a checkpoint, at the end)."""
        held, self._held = self._held, []
        for named, step in held:
            self.tracker.log_metrics(named, step=step)
        self.tracker.flush()

    def tags(self, tags: dict) -> None:
        self.tracker.set_tags(tags)

    def artifact(self, path: Path) -> None:
        self.tracker.log_artifact(path)

    # ------------------------------------------------------------------ the end
    def finish(self, announce: bool = True) -> None:
        """The run finished: ``summary.json``, the summary printed and logged, the log and Hydra's config
        uploaded, the MLflow run FINISHED (``announce``: print the summary; the ranks of a local launcher
        leave it to the launcher)."""
        self.commit()
        if self.rank0:
            write_json(self.out_dir / "summary.json", self.summary)
            self.tracker.log_artifact(self.out_dir / "summary.json")
            if announce:
                log.info("%s", describe(self.summary, self.tracker))
            self.upload_logs()
        self.tracker.end("FINISHED")  # anything above that fails (a full disk) ends it FAILED (:meth:`fail`)

    def fail(self, message: str, interrupted: bool) -> None:
        """The run did not finish: the MLflow run FAILED or KILLED with the reason as a tag, then
        ``summary.json`` with status ``failed`` (the error) or ``terminated`` (by a signal). The run record
        is ended before anything that touches the disk, so that a full disk (often the very error being
        reported) cannot leave it RUNNING; what cannot be written is one warning naming the file. The
        metrics held since the last checkpoint are stored, unless the elastic agent will restart the
        ranks from that checkpoint."""
        if interrupted:
            self.summary.update(status="terminated", reason=message)
        else:
            self.summary.update(status="failed", error=message)
        if _restart_follows():
            self._held = []  # the next attempt recomputes and logs them
        try:
            try:
                self.commit()
            except Exception as exc:  # the store failing must not hide the run's own error
                log.warning("could not store the last metrics: %s", exc)
            if self.tracker.run_id:
                self.tracker.set_tags({"gnnddm.terminated_by" if interrupted else "gnnddm.error": message[:5000]})
        except Exception as exc:
            log.warning("could not tag the MLflow run: %s", exc)
        finally:
            self.tracker.end("KILLED" if interrupted else "FAILED")
        if self.rank0:
            log.info("%s: %s", self.summary["status"], message, extra=FILE_ONLY)
            for write in (lambda: write_json(self.out_dir / "summary.json", self.summary), self.upload_logs):
                try:
                    write()
                except Exception as exc:  # noqa: BLE001 - the run's own error is what the user must see
                    log.warning("%s", exc, extra=FILE_ONLY)

    def upload_logs(self) -> None:
        """``train.log`` and Hydra's ``.hydra/`` (composed config, overrides) of the output folder."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.flush()
        for path in sorted(self.out_dir.glob("*.log")):
            self.tracker.log_artifact(path)
        self.tracker.log_artifacts(self.out_dir / ".hydra", "hydra")


# ---------------------------------------------------------------------------------------------- helpers
def _restart_follows() -> bool:
    """Whether torch's elastic agent restarts this rank's group after a failure (restarts left)."""
    import os

    env = os.environ
    return int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > int(env.get("TORCHELASTIC_RESTART_COUNT", "0"))


def previous_run_id(out_dir: Path) -> str | None:
    """The MLflow run recorded in ``out_dir/summary.json`` (the run a resumed training continues)."""
    import json

    try:
        return json.loads((Path(out_dir) / "summary.json").read_text()).get("mlflow_run_id")
    except (OSError, ValueError, AttributeError):
        return None


def checkpointed_run_id(out_dir: Path) -> str | None:
    """The MLflow run recorded in the newest complete checkpoint of ``out_dir`` (rank 0's), if any."""
    from gnnddm.errors import GnnddmError
    from gnnddm.training.checkpoint import checkpoint_dir, latest_checkpoint, load_checkpoint

    it = latest_checkpoint(out_dir)
    if it is None:
        return None
    try:
        run_id = load_checkpoint(checkpoint_dir(out_dir) / f"it{it:07d}.rank0.pt").get("mlflow_run_id")
    except GnnddmError:  # unreadable: resuming reports it
        return None
    return run_id if isinstance(run_id, str) and run_id else None


def hydra_overrides() -> list[str] | None:
    """The command line's overrides of this Hydra job (None outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return None


def ui_command(uri: str) -> str:
    """How to look at the runs of the store ``uri`` in MLflow's UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def report_command(uri: str, parent: str) -> str:
    return f"gnnddm report --tracking-uri {uri} --parent {parent}"


def describe(summary: dict, tracker: Tracker | None = None) -> str:
    """The end-of-run summary: status, iterations, losses, per-variable RMSE against the baseline with
    skill, sample counts, seconds per iteration, output folder and MLflow run."""
    acc, final = summary.get("accounting", {}), summary.get("final", {})
    base = summary.get("baseline", {})
    units = summary.get("units", {})
    samples = summary.get("samples", {})
    lines = [f"gnnddm train: {summary.get('status')} after {acc.get('iterations', '?')} iterations "
             f"({_num(acc.get('seconds_per_iteration'), '.3g')} s per iteration, "
             f"{_num(acc.get('wall_time'), '.1f')} s)"]
    lines.append(f"  loss: train {_num(final.get('train_loss'))}, val {_num(final.get('val_loss'))}"
                 + (f", test {_num(final.get('test_loss'))}" if final.get("test_loss") is not None else ""))
    lines.append("  samples: " + ", ".join(f"{k} {v}" for k, v in samples.items()))
    data = summary.get("data", {})
    if data.get("reading"):
        wait = acc.get("data_wait_seconds")
        lines.append(f"  data: {data['reading']}" + (f"; waited {wait:.2f} s for batches" if wait else "")
                     + (f"; peak memory {summary['peak_memory_gb']:.2f} GB" if summary.get("peak_memory_gb") else ""))
    name = base.get("name", "baseline")
    for split in ("val", "test"):
        rmse = final.get(f"{split}_rmse") or {}
        if not rmse:
            continue
        ref = base.get(f"{split}_rmse", {})
        sk = skills(rmse, ref)
        lines.append(f"  {split} RMSE against {name}:")
        width = max(len(v) for v in rmse)
        for var, value in rmse.items():
            unit = f" {units[var]}" if units.get(var) else ""
            lines.append(f"    {var:<{width}}  {value:.4g}{unit}  ({name} {_num(ref.get(var), '.4g')}{unit}; "
                         f"skill {_num(sk.get(var), '+.1f')} %)")
    lines.append(f"  output folder: {summary.get('output_dir')}")
    run_id = summary.get("mlflow_run_id")
    if run_id and tracker is not None and tracker.enabled:
        lines.append(f"  MLflow run: {run_id} (experiment {tracker.experiment}); see it with: "
                     f"{ui_command(tracker.uri)}")
    else:
        unusable = getattr(tracker, "error", None)  # said once when it happened, and kept in summary.json
        reason = "the tracking store could not be used: see tracking_error in summary.json" if unusable else \
            "tracking.enabled=false"
        lines.append(f"  MLflow: not tracked ({reason})")
    return "\n".join(lines)


def _num(value, fmt: str = ".5g") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def stop_reason(exc: BaseException) -> str | None:
    """The reason of a stop by signal (Ctrl-C, SIGTERM, SIGUSR1, or the elastic agent's), else None."""
    if isinstance(exc, Terminated):
        return exc.reason
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT"
    if type(exc).__name__ == "SignalException":  # torch's elastic agent received the signal
        sigval = getattr(exc, "sigval", None)
        return sigval.name if sigval is not None else "SIGTERM"
    return None


def resume_advice(summary: dict, out_dir: Path, reason: str, requeued: bool = False) -> str:
    """What the command line prints: where the run stopped and how to continue it (``requeued``: submitit
    requeues the job, which resumes by itself)."""
    it = summary.get("checkpoint_iteration")
    where = f"after iteration {summary['iteration']}" if "iteration" in summary else "during set-up"
    if requeued:
        requeue = "if submitit requeues the job (up to hydra.launcher.max_num_timeout times), it"
        how = (f"checkpoint of iteration {it} saved; {requeue} resumes from there" if it is not None else
               f"no checkpoint of this run; {requeue} starts again (set trainer.checkpoint_every=N to resume)")
        return f"run terminated by {reason} {where} (time limit or preemption); {how}"
    if it is not None:
        how = (f"checkpoint of iteration {it} saved; continue with the same command plus resume=true "
               f"output_dir={out_dir}")
    else:
        how = ("no checkpoint of this run; run the command again (set trainer.checkpoint_every=N to be able to "
               "continue with resume=true)")
    return f"run terminated by {reason} {where}; {how}"


def sweep_dir() -> str | None:
    try:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return str(Path(hc.sweep.dir).resolve())
    except ValueError:
        pass
    return None


def progress_bar(total: int, initial: int, enabled: bool):
    # on a terminal only (None: off when stdout is not a TTY, e.g. a batch job's log); train.log has the evaluations
    return tqdm(total=total, initial=initial, disable=None if enabled else True, desc="outer iterations", unit="it",
                leave=False)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "train_loss", "val_loss"):
        pts = [(h["iteration"], h[key]) for h in history if key in h and h[key] > 0]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key, marker="." if key != "loss" else None)
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("loss (normalised units)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_figure(fig, path, dpi=100)
    plt.close(fig)
