"""Starting local ranks: torch's elastic launcher, with a fresh rendezvous store per attempt.

:func:`run_ranks` runs a worker function on ``nproc`` local ranks and returns rank 0's result with the
number of restarts; a failure comes back as :class:`RanksFailed` naming the rank that caused it (a rank
killed by a signal before the ranks that lost their connection to it). The worker (any picklable
function of one argument) is passed in: nothing here knows what it trains.

Nothing listens on the network: the agent meets its ranks through a file store (no TCP rendezvous
store, no shared agent store), and each attempt's process group meets at ``master_addr`` (loopback by
default, where :func:`gnnddm.distributed.world.init` binds rank 0's store to that address alone).
The elastic agent's own log (tracebacks of failed ranks) goes to the run's log file, not the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

from gnnddm.distributed.world import free_ports, is_loopback

log = logging.getLogger("gnnddm.distributed")
ELASTIC_LOGGERS = ("torch.distributed.elastic", "torch.multiprocessing")


def launch(entrypoint, args: tuple, nproc: int, max_restarts: int = 0, run_id: str = "gnnddm") -> dict:
    """Run ``entrypoint(*args)`` on ``nproc`` local ranks (torch elastic); returns {rank: return value}.

    The agent restarts all ranks up to ``max_restarts`` times when one fails; the workers see the
    restart count in ``TORCHELASTIC_RESTART_COUNT``. Each attempt's process group meets on a fresh store
    of its own (:func:`use_attempt_store`), never on one that still holds the failed attempt's keys.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="gnnddm-rdzv-") as folder, _no_shared_agent_store(), \
            _elastic_log_to_file():
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=int(nproc), run_id=run_id,
            rdzv_backend="c10d", rdzv_endpoint=str(Path(folder) / "rendezvous"),
            rdzv_configs={"store_type": "file"}, max_restarts=int(max_restarts),
            monitor_interval=0.2, start_method="spawn",
        )
        return elastic_launch(config, entrypoint)(*args)


@contextlib.contextmanager
def _no_shared_agent_store():
    """Keep the agent from hosting a TCP store for its workers (it would listen on every interface): the
    workers meet on their own store (:func:`use_attempt_store`). A rank killed by a signal leaves its
    semaphores to the resource tracker, whose warning about them would follow the one-line cause."""
    settings = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
                "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                          "ignore:resource_tracker:UserWarning"]))}
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _elastic_log_to_file():
    """The elastic agent's records (a failed rank's traceback runs to 60 lines, the ranks it then stops)
    go to the log files of the root logger (``train.log``) only; the caller prints the one-line cause."""
    loggers = [logging.getLogger(name) for name in ELASTIC_LOGGERS]
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    before = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
        for h in files:
            logger.addHandler(h)
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, before, strict=True):
            for h in files:
                logger.removeHandler(h)
            logger.propagate = propagate


ENV_ATTEMPT_PORTS = "GNNDDM_ATTEMPT_PORTS"
ENV_MASTER_ADDR = "GNNDDM_MASTER_ADDR"


def attempt_ports(max_restarts: int) -> str:
    """One rendezvous port per launch attempt, for :func:`use_attempt_store` (comma-separated)."""
    return ",".join(str(p) for p in free_ports(int(max_restarts) + 1))


def use_attempt_store() -> None:
    """In a rank started by :func:`launch`: meet on this attempt's own port, with rank 0 hosting the store.

    The elastic agent's store outlives a failed attempt; gloo's connection set-up can then read the
    dead ranks' addresses and hang. A fresh store per attempt avoids that.
    """
    ports = os.environ.get(ENV_ATTEMPT_PORTS)
    if not ports:
        return
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    addr = os.environ.get(ENV_MASTER_ADDR) or "127.0.0.1"
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = ports.split(",")[attempt]
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
    if is_loopback(addr):  # gloo's and NCCL's own sockets on the loopback interface too
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")


class RanksFailed(RuntimeError):
    """The ranks did not finish; the message names each failing rank's error."""


def run_ranks(worker, arg, nproc: int, max_restarts: int, folder: Path, env: dict[str, str],
              master_addr: str = "127.0.0.1") -> tuple[object, int]:
    """``worker(arg)`` on ``nproc`` local ranks (rank 0's return value, restarts used).

    ``env`` is set in every rank before the worker runs (empty values are skipped); ``folder`` (the run's
    output folder) receives the restart count and each failing rank's message, which the elastic agent
    does not report; the ranks meet at ``master_addr``.
    """
    folder = Path(folder)
    env = {**env, ENV_ATTEMPT_PORTS: attempt_ports(max_restarts), ENV_MASTER_ADDR: master_addr}
    try:
        results = launch(_rank_main, (worker, arg, env, str(folder)), nproc=nproc, max_restarts=max_restarts,
                         run_id=f"gnnddm-{os.getpid()}")
    except Exception as exc:
        if type(exc).__name__ == "SignalException":  # the agent was signalled: the caller reports the stop
            raise
        # the agent's whole report (each failed rank, its exit code, traceback or signal) to the log file
        log.info("the ranks failed; the elastic agent reports:\n%s", exc, extra={"console": False})
        raise RanksFailed(_rank_errors(exc, folder)) from None
    return results[0], _restarts(folder)


def _rank_main(worker, arg, env: dict[str, str], folder: str):
    os.environ.update({k: v for k, v in env.items() if v})
    use_attempt_store()
    if int(os.environ.get("RANK", "0")) == 0:
        (Path(folder) / ".restarts").write_text(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    try:
        return worker(arg)
    except Exception as exc:
        (Path(folder) / f".error.rank{os.environ.get('RANK', '0')}").write_text(str(exc))
        raise


def _restarts(folder: Path) -> int:
    p = folder / ".restarts"
    return int(p.read_text()) if p.exists() else 0


def _rank_errors(exc: BaseException, folder: Path) -> str:
    """The cause, in one line: a rank killed by a signal (the others then only lost their connection to
    it), else each failing rank's own message, else the first line of the agent's."""
    killed = sorted(_killed_ranks(exc).items())
    if killed:
        return "; ".join(f"rank {r} died from {name} (exit code {code}); the other ranks lost their connection "
                         "to it" if len(killed) == 1 else f"rank {r} died from {name} (exit code {code})"
                         for r, (name, code) in killed)
    msgs = [f"rank {p.name.rsplit('rank', 1)[1]}: {p.read_text()}" for p in sorted(folder.glob(".error.rank*"))]
    if msgs:
        return "; ".join(msgs)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _killed_ranks(exc: BaseException) -> dict[int, tuple[str, int]]:
    """{rank: (signal name, exit code)} of the ranks that a signal ended (torch elastic's failures)."""
    out = {}
    for rank, failure in (getattr(exc, "failures", None) or {}).items():
        code = int(getattr(failure, "exitcode", 0) or 0)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            out[int(getattr(failure, "rank", rank))] = (name, code)
    return out
