"""MLflow tracking; the only module that talks to MLflow.

Default store: an embedded SQLite database in the working directory (``sqlite:///mlflow.db``) with
artifacts beside it (``./mlartifacts``). ``tracking.uri`` may name a server; if it does not answer within
``tracking.timeout`` seconds, the run is logged to the local store instead (with a warning), so no run
is lost. A :class:`Tracker` always ends its run: FINISHED, FAILED or KILLED, never left RUNNING.

Hydra multirun sweeps: every job is its own run, grouped under one parent run per sweep directory (the
parent is found by its ``gnnddm.sweep_dir`` tag, or created and terminated at once).

Concurrent runs. MLflow creates the tables of a new SQLite store on the first client call, without a lock
between processes: two processes doing it at once leave a half-migrated store ("table
_alembic_tmp_experiments already exists") that every later run fails on. A process therefore opens a SQLite
store, and finds or creates its experiment and sweep parent, holding the file lock ``<db>.lock`` beside it
(:func:`store_lock`); writes that find the database locked by another writer are tried again.

An unusable store (not a database, damaged, unreadable, an SQLite too old) is one warning line naming
``tracking.uri`` and the SQLite or MLflow error, and the run continues untracked; with
``tracking.required=true`` it is a :class:`~gnnddm.errors.ConfigError` with that line instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gnnddm.errors import ConfigError
from gnnddm.schema.fields import parse
from gnnddm.schema.root import TrackingConfig

try:
    import fcntl
except ImportError:  # not on Windows: stores are opened without the lock
    fcntl = None

log = logging.getLogger(__name__)

LOCAL_URI = TrackingConfig.uri

#: the accounting counters and clocks, logged under ``cost/`` (cumulative over the run)
COST = ("iterations", "rounds", "comm_bytes", "grad_evals", "loss_evals", "fine_grad_evals", "fine_loss_evals",
        "model_time", "model_time_multinode", "compute_time", "wall_time", "seconds_per_iteration",
        "compile_seconds")
SPLITS = ("train", "val", "test")


def metric_name(key: str) -> str:
    """The MLflow name of a metric of the training loop (docs/report.md, *Metrics*).

    ``train/``, ``val/``, ``test/``: losses, RMSE and skill per split (``train/batch_loss`` is the
    algorithm's loss of the iteration's mini-batch; ``train/loss`` the evaluation on fixed training samples);
    ``cost/``: rounds, bytes, work and times; ``ddm/``: what an algorithm reports of itself (trust-region
    radius, acceptance, step norms). Names that already carry a namespace pass unchanged.

    >>> [metric_name(k) for k in ("loss", "val_loss", "val_rmse/t2m", "rounds", "time/wait/rank1", "tr_radius")]
    ['train/batch_loss', 'val/loss', 'val/rmse/t2m', 'cost/rounds', 'cost/rank1/wait', 'ddm/tr_radius']
    """
    if key == "loss":
        return "train/batch_loss"
    if key in COST:
        return f"cost/{key}"
    for split in SPLITS:
        if key == f"{split}_loss":
            return f"{split}/loss"
        for kind in ("rmse", "skill", "baseline_rmse"):
            if key.startswith(f"{split}_{kind}/"):
                return f"{split}/{kind}/{key.split('/', 1)[1]}"
    if key.startswith("time/"):  # time/<kind>/rank<r>: one rank's clocks
        _, kind, rank = key.split("/")
        return f"cost/{rank}/{kind}"
    if "/" in key:
        return key
    return f"ddm/{key}"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b.c": "value"} with string values (MLflow params)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else str(v)
    return out


#: config keys that are Hydra's or the tracker's own, not the experiment's: left out of the params
_INTERNAL = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def config_params(config: dict) -> dict[str, str]:
    """The flattened config as MLflow params, without Hydra's instantiation keys and the ``tracking``
    section (the full config is the run's ``config.yaml`` artifact)."""
    return {k: v for k, v in flatten(config).items()
            if not k.startswith(("tracking.", "hydra.")) and k.rsplit(".", 1)[-1] not in _INTERNAL}


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        commit = out.stdout.strip()
        if commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=here, capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def environment_tags() -> dict[str, str]:
    """Git commit, package versions and host, as run tags."""
    from importlib import metadata

    import gnnddm

    commit = git_commit()
    tags = {
        "gnnddm.git_commit": commit,
        # MLflow's own key, shown in its UI (the commit alone; gnnddm.git_commit marks a dirty tree)
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
        "gnnddm.version": gnnddm.__version__,
        "version.python": platform.python_version(),
        "host": socket.gethostname(),
    }
    for dist in ("torch", "torch_geometric", "numpy", "mlflow", "pymetis", "hydra-core", "xarray"):
        try:
            tags[f"version.{dist}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            tags[f"version.{dist}"] = "not installed"
    return tags


def _local_uri(uri: str) -> str:
    """Relative sqlite paths are made absolute so the store does not move with chdir."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store (None for other stores and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold the exclusive file lock ``<db>.lock`` beside the SQLite store of ``uri`` (``fcntl.flock``; for
    other stores, nothing).

    Every :class:`Tracker` opens a SQLite store under it, so that one process at a time creates or
    migrates the schema, and experiments and sweep parents are found or created once. An existing store
    costs one uncontended lock; the lock file stays beside the database.
    """
    db = sqlite_path(uri)
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)  # MLflow would create it too
    with open(f"{db}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


#: the oldest SQLite library that MLflow's SQLite store works with (computed columns)
MIN_SQLITE = (3, 31, 0)


def _check_sqlite(uri: str) -> None:
    """A :class:`ConfigError` naming ``tracking.uri`` when the SQLite library of this process is older than
    :data:`MIN_SQLITE`, which MLflow's SQLite store needs.

    It happens when a copy of eccodes (``gnnddm[grib]``) that bundles an older SQLite was loaded before
    Python's ``sqlite3``: importing :mod:`gnnddm` first prevents it (see ``gnnddm/__init__.py``).
    """
    import sqlite3

    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ConfigError(
            f"tracking.uri={uri}: this process loaded SQLite {sqlite3.sqlite_version}, older than the "
            f"{'.'.join(map(str, MIN_SQLITE[:2]))} that MLflow's SQLite store needs (eccodes, imported before "
            "gnnddm, may bundle an older SQLite); import gnnddm before eccodes/cfgrib, or set tracking.uri to "
            "an MLflow server"
        )


def _probe_sqlite(db: Path) -> None:
    """Raise the SQLite error at once when ``db`` cannot be read as a database (MLflow would retry opening
    an unreadable file for about 100 s before giving up). A missing file becomes an empty database."""
    import sqlite3

    con = sqlite3.connect(db, timeout=30)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        con.close()


def _store_error(exc: BaseException) -> str:
    """What went wrong with a store: the SQLite error that ``exc`` wraps (MLflow and SQLAlchemy wrap it), else
    the first line of ``exc``."""
    import sqlite3

    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, sqlite3.Error):
            return str(cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _quiet_store_logs() -> Iterator[None]:
    """MLflow's store logs a failing query with its traceback; while a store is being opened, the one line
    of :meth:`Tracker._unusable` says it instead."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


#: SQLite's message when another process holds the write lock past the wait MLflow sets (20 s)
_LOCKED = "database is locked"


def _retry(fn, *args, tries: int = 4, **kwargs):
    """``fn(*args, **kwargs)``, called again (after 1, 2, 4 s) while SQLite reports the database locked by
    another writer; a locked write is rolled back, so calling it again writes it once."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == tries - 1 or _LOCKED not in str(exc):
                raise
            log.debug("%s; trying again", _LOCKED)
            time.sleep(2.0**attempt)
    return None


def _server_answers(uri: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status < 500
    except Exception:
        return False


class Tracker:
    """One MLflow run. Disabled trackers accept every call and do nothing, and so does a tracker whose
    store turned out unusable when it started (:attr:`error` says why).

    Parameters
    ----------
    config : TrackingConfig, optional
        The validated ``tracking`` section (default: its defaults): ``enabled``; ``uri``, the tracking URI
        (``sqlite:///mlflow.db``, or ``http://host:port``); ``experiment``; ``run_name``; ``timeout``, seconds to
        wait for a tracking server before falling back to the local store; ``flush_seconds``: metrics are
        buffered and handed to the store at most this often, and by :meth:`flush` / :meth:`end` (0: every
        call); ``required``: an unusable store raises a :class:`ConfigError` (instead of a warning and an
        untracked run).
    run_name : str, optional
        The run's name where ``config.run_name`` names none.
    """

    def __init__(self, config: TrackingConfig | None = None, run_name: str | None = None):
        config = TrackingConfig() if config is None else config
        self.enabled = config.enabled
        self.required = config.required
        self.error: str | None = None  # why the store could not be used (the tracker is then disabled)
        self.run_id: str | None = None
        self.logged_up_to: int | None = None  # of a reopened run
        self.uri = config.uri or LOCAL_URI
        self.experiment = config.experiment or "gnnddm"
        self.run_name = config.run_name or run_name
        self.timeout = float(config.timeout)
        self._client = None
        self.owns_run = True
        self.flush_seconds = float(config.flush_seconds)
        self._buffer: list = []  # metrics not yet handed to MLflow
        self._sent_at = time.monotonic()
        self._pending: list = []  # metric batches being written in the background

    @property
    def _live(self) -> bool:
        """Whether there is a run to log into."""
        return self.enabled and self._client is not None and self.run_id is not None

    # ------------------------------------------------------------------ setup
    def start(self, tags: dict | None = None, sweep_dir: str | None = None) -> str | None:
        """Create the run (None, with :attr:`error` set, when the store is unusable)."""
        if not self.enabled:
            return None
        all_tags = dict(tags or {})
        try:
            self._resolve_uri()
            with _quiet_store_logs():
                with self._store():
                    exp_id = self._experiment_id(self.experiment)
                    if sweep_dir:  # under the lock: the jobs of a parallel sweep find one parent
                        all_tags["mlflow.parentRunId"] = self._parent_run(exp_id, sweep_dir)
                        all_tags["gnnddm.sweep_dir"] = sweep_dir
                run = _retry(self._client.create_run, exp_id, run_name=self.run_name, tags=all_tags)
        except Exception as exc:
            self._unusable(exc)
            return None
        self.run_id = run.info.run_id
        return self.run_id

    def reopen(self, run_id: str, up_to: int | None = None) -> bool:
        """Continue the run ``run_id`` of this experiment (a resumed training): set it RUNNING again and log
        into it. False, with nothing changed, when the store does not hold that run, or when ``up_to`` is
        given and the run logged steps after it (continuing would repeat them); False too, with
        :attr:`error` set, when the store is unusable. ``logged_up_to`` is then the last step the run holds
        (0: only the start's metrics; None: nothing)."""
        if not self.enabled:
            return False
        try:
            self._resolve_uri()
            with _quiet_store_logs(), self._store():
                exp_id = self._experiment_id(self.experiment)
        except Exception as exc:
            self._unusable(exc)
            return False
        try:
            run = self._client.get_run(run_id)
        except Exception:  # not in this store
            return False
        if run.info.experiment_id != exp_id or run.info.lifecycle_stage != "active":
            return False
        steps = [m.step for m in self._client.get_metric_history(run_id, "cost/wall_time")]  # every iteration
        last = max(steps, default=0 if run.data.metrics else None)  # only the start's metrics: step 0
        if up_to is not None and last is not None and last > up_to:
            return False
        _retry(self._client.update_run, run_id, status="RUNNING")
        self.run_id, self.logged_up_to = run_id, last
        return True

    def end_orphan(self, run_id: str) -> bool:
        """Mark ``run_id`` KILLED if the store still holds it RUNNING: the run of a process killed without
        a chance to end it (``kill -9``), which a resumed training could not continue. True if it did."""
        if not self.enabled or self._client is None:
            return False
        try:
            if self._client.get_run(run_id).info.status != "RUNNING":
                return False
            _retry(self._client.set_terminated, run_id, "KILLED")
        except Exception as exc:  # noqa: BLE001 - the resumed run goes on; the old one stays as it was
            log.warning("could not mark the interrupted MLflow run %s as KILLED: %s", run_id, exc)
            return False
        return True

    def has_run(self, run_id: str) -> bool:
        """Whether the store holds the run ``run_id`` (after :meth:`start`)."""
        if not self.enabled or self._client is None:
            return False
        try:
            self._client.get_run(run_id)
        except Exception:
            return False
        return True

    @property
    def parent_run_id(self) -> str | None:
        """The sweep's parent run of this run (None outside a sweep)."""
        if not self._live:
            return None
        return self._client.get_run(self.run_id).data.tags.get("mlflow.parentRunId")

    def _resolve_uri(self) -> None:
        """The store to log to: ``uri``, or the local one when a server does not answer."""
        uri = self.uri
        if uri.startswith(("http://", "https://")) and not _server_answers(uri, self.timeout):
            warnings.warn(
                f"tracking.uri: the MLflow server {uri} did not answer within {self.timeout:g} s; "
                f"logging to the local store {LOCAL_URI} instead",
                stacklevel=3,
            )
            uri = LOCAL_URI
        self.uri = _local_uri(uri)

    @contextmanager
    def _store(self) -> Iterator[None]:
        """Open the store (the client), holding the store's lock for what the block does.

        A SQLite file that cannot be read as a database is its SQLite error at once. MLflow creates the
        schema of a new store when the client is made; alembic's warnings while it does are noise to a user.
        """
        from mlflow.tracking import MlflowClient

        self.uri = _local_uri(self.uri)
        db = sqlite_path(self.uri)
        if db is not None:
            _check_sqlite(self.uri)
            logging.getLogger("alembic").setLevel(logging.WARNING)
        with store_lock(self.uri):
            if db is not None:
                _probe_sqlite(db)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", module="alembic")
                self._client = MlflowClient(tracking_uri=self.uri)
                yield

    def _unusable(self, exc: Exception) -> None:
        """The store cannot be used: a :class:`ConfigError` when tracking is required, else one warning
        line and a disabled tracker (every later call does nothing)."""
        reason = _store_error(exc)
        reason = reason.removeprefix(f"tracking.uri={self.uri}: ")  # _check_sqlite's message names it
        where = f"tracking.uri={self.uri}: {reason}"
        self.enabled, self._client, self.run_id, self._buffer = False, None, None, []
        if self.required:
            self.error = f"{where}; tracking.required=true stops the run (false: it continues untracked)"
            raise ConfigError(self.error) from exc
        self.error = f"{where}; the run continues untracked (set tracking.required=true to fail instead)"
        log.warning("%s", self.error)

    def attach(self, run_id: str) -> None:
        """Log into an existing run that another process started and will end (the rank launcher)."""
        if not self.enabled:
            return
        try:
            with _quiet_store_logs(), self._store():
                pass
        except Exception as exc:
            self._unusable(exc)
            return
        self.run_id, self.owns_run = run_id, False

    def _experiment_id(self, name: str) -> str:
        exp = self._client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        artifact_location = None
        db = sqlite_path(self.uri)
        if db is not None:
            artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
        try:
            return _retry(self._client.create_experiment, name, artifact_location=artifact_location)
        except Exception:  # created concurrently by a process that opened the store without the lock
            return self._client.get_experiment_by_name(name).experiment_id

    def _parent_run(self, exp_id: str, sweep_dir: str) -> str:
        found = self._client.search_runs(
            [exp_id], filter_string=f"tags.`gnnddm.sweep_dir_parent` = '{sweep_dir}'", max_results=1
        )
        if found:
            return found[0].info.run_id
        parent = _retry(
            self._client.create_run,
            exp_id,
            run_name=f"sweep {Path(sweep_dir).name}",
            tags={"gnnddm.sweep_dir_parent": sweep_dir, "gnnddm.kind": "sweep"},
        )
        # The parent only groups its children; it is never left RUNNING.
        _retry(self._client.set_terminated, parent.info.run_id, "FINISHED")
        return parent.info.run_id

    # ---------------------------------------------------------------- logging
    def log_params(self, params: dict) -> None:
        if not self._live:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            _retry(self._client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self._live:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, int(step))
            for k, v in metrics.items()
            if v is not None and _finite(v)
        ]
        self._buffer.extend(items)
        if time.monotonic() - self._sent_at >= self.flush_seconds or len(self._buffer) >= 1000:
            self.send()

    def send(self) -> None:
        """Hand the buffered metrics to MLflow's background logging thread (without waiting).

        Metrics are buffered and sent at most every ``flush_seconds`` (and by :meth:`flush`): the store's
        cost is mostly per call, so one call for several iterations costs the training loop about half
        the CPU of one call per iteration. :meth:`flush` and :meth:`end` wait until all is stored.
        """
        self._sent_at = time.monotonic()
        items, self._buffer = self._buffer, []
        if not self._live:
            return
        for i in range(0, len(items), 1000):
            op = self._client.log_batch(self.run_id, metrics=items[i : i + 1000], synchronous=False)
            if op is not None:
                self._pending.append(op)

    def flush(self) -> None:
        """Wait until every metric logged so far is in the store."""
        if self._buffer:
            self.send()
        pending, self._pending = self._pending, []
        for op in pending:
            op.wait()

    def set_tags(self, tags: dict) -> None:
        if not self._live:
            return
        for k, v in tags.items():
            _retry(self._client.set_tag, self.run_id, k, str(v))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if not self._live or not Path(path).exists():
            return
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder, artifact_path: str | None = None) -> None:
        """Every file under ``folder`` (kept relative), e.g. Hydra's ``.hydra/``."""
        if not self._live or not Path(folder).is_dir():
            return
        self._client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        if not self._live:
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(text)
            self._client.log_artifact(self.run_id, str(p))

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run (FINISHED, FAILED or KILLED)."""
        if not self._live:
            return
        self.flush()
        if not self.owns_run:
            return
        try:
            _retry(self._client.set_terminated, self.run_id, status)
        except Exception as exc:  # the run must not be lost silently
            log.error("could not mark MLflow run %s as %s: %s", self.run_id, status, exc)


def _finite(v) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return f == f and abs(f) != float("inf")


def tracker_from_config(tracking_cfg, run_name: str | None = None) -> Tracker:
    """A :class:`Tracker` from the ``tracking`` config section (validated against
    :class:`~gnnddm.schema.root.TrackingConfig`, whose defaults fill what it leaves out); ``run_name`` when the
    section names none. ``GNNDDM_TRACKING_DISABLED`` (set by a launcher whose store was unusable) turns it off."""
    section = OmegaConf.to_container(tracking_cfg, resolve=True) if isinstance(tracking_cfg, DictConfig) \
        else dict(tracking_cfg)
    config = parse(TrackingConfig, section, "tracking.")
    if os.environ.get("GNNDDM_TRACKING_DISABLED"):
        config = dataclasses.replace(config, enabled=False)
    return Tracker(config, run_name=run_name)
