"""Starting local ranks: torch's elastic launcher, with a fresh rendezvous store per attempt.

:func:`run_ranks` runs a worker function on ``nproc`` local ranks and returns rank 0's result with the
number of restarts; a failure comes back as :class:`RanksFailed` naming each failing rank's error. The
worker (any picklable function of one argument) is passed in: nothing here knows what it trains.
"""

from __future__ import annotations

import os
from pathlib import Path

from gnnddm.distributed.world import free_port, free_ports


def launch(entrypoint, args: tuple, nproc: int, max_restarts: int = 0, run_id: str = "gnnddm") -> dict:
    """Run ``entrypoint(*args)`` on ``nproc`` local ranks (torch elastic); returns {rank: return value}.

    The agent restarts all ranks up to ``max_restarts`` times when one fails; the workers see the
    restart count in ``TORCHELASTIC_RESTART_COUNT``. Each attempt's process group meets on a fresh store
    of its own (:func:`use_attempt_store`), never on one that still holds the failed attempt's keys.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=int(nproc), run_id=run_id,
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=int(max_restarts),
        monitor_interval=0.2, start_method="spawn",
    )
    return elastic_launch(config, entrypoint)(*args)


ENV_ATTEMPT_PORTS = "GNNDDM_ATTEMPT_PORTS"


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
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = ports.split(",")[attempt]
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"


class RanksFailed(RuntimeError):
    """The ranks did not finish; the message names each failing rank's error."""


def run_ranks(worker, arg, nproc: int, max_restarts: int, folder: Path, env: dict[str, str]) -> tuple[object, int]:
    """``worker(arg)`` on ``nproc`` local ranks (rank 0's return value, restarts used).

    ``env`` is set in every rank before the worker runs (empty values are skipped); ``folder`` (the run's
    output folder) receives the restart count and each failing rank's message, which the elastic agent
    does not report.
    """
    folder = Path(folder)
    env = {**env, ENV_ATTEMPT_PORTS: attempt_ports(max_restarts)}
    try:
        results = launch(_rank_main, (worker, arg, env, str(folder)), nproc=nproc, max_restarts=max_restarts,
                         run_id=f"gnnddm-{os.getpid()}")
    except Exception as exc:
        if type(exc).__name__ == "SignalException":  # the agent was signalled: the caller reports the stop
            raise
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
    msgs = [f"rank {p.name.rsplit('rank', 1)[1]}: {p.read_text()}" for p in sorted(folder.glob(".error.rank*"))]
    if msgs:
        return "; ".join(msgs)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
