"""Which process this is: rank and world size from torchrun or SLURM, the process group, free ports.

- :func:`world_from_env` reads rank and world size from torchrun (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or from SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``, the master address from ``SLURM_JOB_NODELIST``, a port from ``SLURM_JOB_ID``).
- :func:`init` starts the process group (gloo on CPU, nccl on GPUs) with a timeout on every collective,
  so that a rank that dies makes the others fail with a message instead of hanging.
- :func:`assign_parts`: subdomains to ranks in contiguous balanced blocks (p may exceed the ranks).
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from dataclasses import dataclass

import numpy as np
import torch

from gnnddm.errors import ConfigError
from gnnddm.schema.root import BACKENDS

SLURM_KEYS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST")


@dataclass(frozen=True)
class World:
    """Where this process stands: rank, world size, local rank, rendezvous address, and who said so."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str  # "torchrun" | "slurm" | "single"


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``node[03-05,9],gpu1`` -> ``node03``."""
    nodelist = nodelist.strip()
    m = re.match(r"^([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if not m:
        raise ConfigError(f"SLURM_JOB_NODELIST: cannot parse {nodelist!r}")
    prefix, bracket = m.group(1), m.group(3)
    if not bracket:
        return prefix
    first = bracket.split(",")[0].split("-")[0]
    return prefix + first


def world_from_env(env: dict | None = None) -> World:
    """The world described by torchrun's or SLURM's variables (torchrun's win when both are set)."""
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        try:
            return World(
                rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                local_rank=int(env.get("LOCAL_RANK", 0)), master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                master_port=int(env.get("MASTER_PORT", 29500)), source="torchrun",
            )
        except ValueError as exc:
            raise ConfigError(f"RANK / WORLD_SIZE / LOCAL_RANK / MASTER_PORT: not integers ({exc})") from None
    present = [k for k in SLURM_KEYS if k in env]
    # Inside an allocation but outside a task step (only the node list is set): a single process.
    if present and any(k in env for k in SLURM_KEYS[:3]):
        missing = [k for k in SLURM_KEYS if k not in env]
        if missing:
            raise ConfigError(
                f"SLURM variables half set: {', '.join(present)} present but {', '.join(missing)} missing; "
                "start with srun (which sets them all) or unset them"
            )
        try:
            rank, size, local = (int(env[k]) for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))
        except ValueError as exc:
            raise ConfigError(f"SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID: not integers ({exc})") from None
        if not 0 <= rank < size:
            raise ConfigError(f"SLURM_PROCID={rank} is not in 0..SLURM_NTASKS-1={size - 1}")
        job = int(re.sub(r"\D", "", env.get("SLURM_JOB_ID", "0")) or 0)
        port = int(env.get("MASTER_PORT", 15000 + job % 20000))
        addr = env.get("MASTER_ADDR") or first_host(env["SLURM_JOB_NODELIST"])
        return World(rank, size, local, addr, port, "slurm")
    return World(0, 1, 0, "127.0.0.1", 0, "single")


def assign_parts(num_parts: int, world_size: int) -> list[tuple[int, ...]]:
    """Contiguous, balanced blocks of subdomains per rank (the first ``p mod R`` ranks get one more)."""
    if world_size > num_parts:
        raise ConfigError(
            f"distributed: {world_size} ranks but only partition.num_parts={num_parts} subdomains; "
            f"use at most {num_parts} ranks or more parts"
        )
    bounds = np.linspace(0, num_parts, world_size + 1).round().astype(int)
    return [tuple(range(bounds[r], bounds[r + 1])) for r in range(world_size)]


def check_backend(backend: str, device: str) -> None:
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("distributed.backend=nccl needs CUDA GPUs, and none is available; use gloo")
    if backend == "nccl" and not str(device).startswith("cuda"):
        raise ConfigError("distributed.backend=nccl needs trainer.device=cuda")
    if backend not in BACKENDS or backend == "none":  # none: no process group to join
        raise ConfigError(f"distributed.backend: expected {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}, "
                          f"got {backend!r}")


def init(world: World, backend: str, timeout_s: float, device: str = "cpu") -> None:
    """Join the process group described by ``world`` (no-op if already joined)."""
    import torch.distributed as dist

    check_backend(backend, device)
    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", world.master_addr)
    os.environ.setdefault("MASTER_PORT", str(world.master_port))
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
    timeout = datetime.timedelta(seconds=float(timeout_s))
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    # torchrun's agent hosts the store itself (TORCHELASTIC_USE_AGENT_STORE): its ranks are its clients
    own = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true"
    store = _loopback_store(addr, port, world, timeout) if own and is_loopback(addr) else None
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.world_size, timeout=timeout,
                            store=store)


def is_loopback(addr: str) -> bool:
    """Whether ``addr`` (a name or an IPv4/IPv6 address) is this machine's loopback."""
    import ipaddress

    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _loopback_store(addr: str, port: int, world: World, timeout: datetime.timedelta):
    """The process group's store at ``addr:port``; rank 0 hosts it on a socket bound to that address alone
    (torch's own binds every interface, where anyone on the network could join or disturb the run)."""
    import torch.distributed as dist

    if world.rank != 0:
        return dist.TCPStore(addr, port, world.world_size, False, timeout)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1" if addr == "localhost" else addr, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"distributed: cannot host the rendezvous store at {addr}:{port} ({exc.strerror}); "
                          "set MASTER_PORT to a free port") from None
    sock.listen(128)
    # the store owns the listening socket from here on (and closes it)
    return dist.TCPStore(addr, port, world.world_size, True, timeout, wait_for_workers=False,
                         master_listen_fd=sock.detach())


def shutdown(synchronise: bool = False) -> None:
    """Leave the process group; with ``synchronise`` (a run that ended normally on every rank) wait for
    the other ranks first, so that no rank tears down its connections while a peer's last messages are
    still in flight (gloo then aborts the process)."""
    import torch.distributed as dist

    if dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
