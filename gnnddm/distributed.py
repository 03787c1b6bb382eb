"""The only module that talks to ``torch.distributed``.

- :func:`world_from_env` reads rank and world size from torchrun (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or from SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``, the master address from ``SLURM_JOB_NODELIST``, a port from ``SLURM_JOB_ID``).
- :func:`init` starts the process group (gloo on CPU, nccl on GPUs) with a timeout on every collective,
  so that a rank that dies makes the others fail with a message instead of hanging.
- :class:`TorchComm` implements the algorithms' :class:`~gnnddm.ddm.comm.Communicator` on real ranks:
  subdomains are assigned to ranks in contiguous balanced blocks (p may exceed the number of ranks).
- :func:`launch` starts ``nproc_per_node`` local ranks with torch's elastic launcher (restarts included).

A world of size 1 is not a special case: the same algorithms run with :class:`~gnnddm.ddm.comm.LocalComm`.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch

from gnnddm.ddm.accounting import Accounting
from gnnddm.ddm.comm import copy_halo, payload_bytes, row_bytes
from gnnddm.errors import ConfigError

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
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"distributed.backend: expected none, gloo or nccl, got {backend!r}")


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
    dist.init_process_group(
        backend=backend, rank=world.rank, world_size=world.world_size,
        timeout=datetime.timedelta(seconds=float(timeout_s)),
    )


def shutdown(synchronise: bool = False) -> None:
    """Leave the process group; with ``synchronise`` (a run that ended normally on every rank) wait for
    the other ranks first, so that no rank tears down its connections while a peer's last messages are
    still in flight (gloo then aborts the process)."""
    import torch.distributed as dist

    if dist.is_initialized():
        if synchronise:
            dist.barrier()
        dist.destroy_process_group()


class TorchComm:
    """:class:`~gnnddm.ddm.comm.Communicator` over ``torch.distributed`` (an initialised process group).

    Each collective flattens its tensors into one buffer (one round), and records in :attr:`times`
    the seconds this rank spent computing since the previous collective (``compute``), waiting for the
    slowest rank (``wait``, measured by a one-element all-reduce that synchronises first, when
    ``measure_wait``) and moving the payload (``communicate``).
    """

    def __init__(self, num_parts: int, accounting: Accounting | None = None, measure_wait: bool = True,
                 device="cpu"):
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.num_parts = int(num_parts)
        self._blocks = assign_parts(self.num_parts, self.world_size)
        self.parts_of_rank = self._blocks[self.rank]
        # work that "every rank does" stands for this rank's subdomains, so the sum over ranks counts p copies
        self.redundant_copies = len(self.parts_of_rank)
        self.accounting = accounting
        self.measure_wait = measure_wait
        self.device = torch.device(device)
        self.times = {"compute": 0.0, "wait": 0.0, "communicate": 0.0}
        self._mark = time.perf_counter()

    @property
    def accounting(self) -> Accounting | None:
        """Where collectives are recorded; its iterations are reduced over the ranks (:meth:`reduce_iteration`)."""
        return self._accounting

    @accounting.setter
    def accounting(self, accounting: Accounting | None) -> None:
        self._accounting = accounting
        if accounting is not None:
            accounting.world = self.reduce_iteration

    def owner(self, part: int) -> int:
        for r, block in enumerate(self._blocks):
            if part in block:
                return r
        raise ValueError(f"part {part} is not in 0..{self.num_parts - 1}")

    def _sync(self) -> None:
        now = time.perf_counter()
        self.times["compute"] += now - self._mark
        if self.measure_wait:
            flag = torch.zeros(1, device=self.device)
            self._dist.all_reduce(flag)
            self.times["wait"] += time.perf_counter() - now

    def _flat(self, tensors):
        return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors]).to(self.device)

    def _unflat(self, buf, tensors) -> None:
        i = 0
        with torch.no_grad():
            for t in tensors:
                n = t.numel()
                t.copy_(buf[i : i + n].view_as(t).to(t.dtype))
                i += n

    def all_reduce_sum_(self, tensors: list[torch.Tensor], account: bool = True) -> None:
        self._sync()
        start = time.perf_counter()
        buf = self._flat(tensors)
        self._dist.all_reduce(buf)
        self._unflat(buf, tensors)
        self._finish(start, payload_bytes(tensors) if account else None)

    def broadcast_(self, tensors: list[torch.Tensor], src: int) -> None:
        self._sync()
        start = time.perf_counter()
        buf = self._flat(tensors)
        self._dist.broadcast(buf, src=src)
        self._unflat(buf, tensors)
        self._finish(start, payload_bytes(tensors), kind="broadcast")

    def all_gather_parts(self, values: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Every part's tensor on every rank (one all-gather of the blocks, padded to the largest)."""
        self._sync()
        start = time.perf_counter()
        template = next(iter(values.values())) if values else None
        shape = self._gather_shape(template)
        width = max(len(b) for b in self._blocks)
        mine = torch.zeros((width, *shape), dtype=torch.float64, device=self.device)
        for i, k in enumerate(self.parts_of_rank):
            mine[i] = values[k].detach().to(self.device, torch.float64)
        out = [torch.zeros_like(mine) for _ in range(self.world_size)]
        self._dist.all_gather(out, mine)
        dtype = torch.float32 if template is None else template.dtype
        gathered = {k: out[r][i].to(dtype) for r, block in enumerate(self._blocks) for i, k in enumerate(block)}
        self._finish(start, self.num_parts * shape.numel() * torch.tensor([], dtype=dtype).element_size(),
                     kind="all_gather")
        return gathered

    def _gather_shape(self, template) -> torch.Size:
        """The common shape of the gathered tensors (a rank without parts learns it from the others)."""
        dims = torch.zeros(8, dtype=torch.int64, device=self.device)
        if template is not None:
            dims[0] = template.dim()
            dims[1 : 1 + template.dim()] = torch.tensor(template.shape)
        self._dist.all_reduce(dims, op=self._dist.ReduceOp.MAX)
        return torch.Size(int(d) for d in dims[1 : 1 + int(dims[0])])

    def exchange_halo(self, plan, values: dict[int, torch.Tensor], reverse: bool = False):
        """See :meth:`gnnddm.ddm.comm.Communicator.exchange_halo`: point-to-point messages between the
        ranks that share halo rows (``batch_isend_irecv``), copies within a rank."""
        self._sync()
        start = time.perf_counter()
        dist = self._dist
        mine = set(self.parts_of_rank)
        template = next(iter(values.values()))
        tail = template.shape[1:]
        rank_of = {k: r for r, block in enumerate(self._blocks) for k in block}
        pairs = sorted(plan.send)
        local = [(j, k) for j, k in pairs if j in mine and k in mine]
        out = copy_halo(plan, values, local, reverse, self.parts_of_rank)
        # forward: owners (j) send to halo holders (k); reverse: the other way round
        outgoing, incoming = {}, {}
        for j, k in pairs:
            src, dst = (k, j) if reverse else (j, k)
            if src in mine and dst not in mine:
                outgoing.setdefault(rank_of[dst], []).append((j, k))
            elif dst in mine and src not in mine:
                incoming.setdefault(rank_of[src], []).append((j, k))
        ops, buffers = [], {}
        for r, lst in sorted(outgoing.items()):
            if reverse:
                rows = [values[k][torch.as_tensor(plan.recv[(j, k)], device=template.device)] for j, k in lst]
            else:
                rows = [values[j][torch.as_tensor(plan.send[(j, k)], device=template.device)] for j, k in lst]
            buf = torch.cat(rows).contiguous()
            ops.append(dist.P2POp(dist.isend, buf, r))
            buffers[("out", r)] = buf
        for r, lst in sorted(incoming.items()):
            n = sum(len(plan.send[pair]) for pair in lst)
            buf = template.new_empty((n, *tail)).contiguous()
            ops.append(dist.P2POp(dist.irecv, buf, r))
            buffers[("in", r)] = buf
        if ops:
            for req in dist.batch_isend_irecv(ops):
                req.wait()
        for r, lst in sorted(incoming.items()):
            buf, i = buffers[("in", r)], 0
            for j, k in lst:
                n = len(plan.send[(j, k)])
                if reverse:
                    out[j].index_add_(0, torch.as_tensor(plan.send[(j, k)], device=buf.device), buf[i : i + n])
                else:
                    out[k][torch.as_tensor(plan.recv[(j, k)], device=buf.device)] = buf[i : i + n]
                i += n
        # accounted as the modelled p-way exchange (one part per rank), as in one process
        self._finish(start, plan.rows_sent() * row_bytes(values), kind="halo")
        return out

    def _finish(self, start: float, nbytes: int | None, kind: str = "all_reduce") -> None:
        """Close the timed collective; account ``nbytes`` of payload unless None (control traffic)."""
        self._mark = time.perf_counter()
        self.times["communicate"] += self._mark - start
        if self.accounting is not None and nbytes is not None:
            self.accounting.collective(int(nbytes), kind=kind, parties=self.num_parts)

    # ---------------------------------------------------------------- control (not accounted)
    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on rank 0 (for stopping together)."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self._dist.broadcast(t, src=0)
        return bool(t.item() > 0.5)

    def sum_control_(self, tensor: torch.Tensor) -> None:
        """Sum over ranks for evaluation and control: timed like the others, not accounted."""
        self.all_reduce_sum_([tensor], account=False)

    def reduce_iteration(self, work: list[float], phases: list[float]) -> tuple[list[float], list[float]]:
        """One iteration's work summed over the ranks and each phase's slowest compute (one control
        all-gather, timed, not accounted): what makes the accounting of R ranks that of the p-way run."""
        self._sync()
        start = time.perf_counter()
        mine = torch.tensor([float(len(phases)), *work, *phases], dtype=torch.float64, device=self.device)
        out = [torch.zeros_like(mine) for _ in range(self.world_size)]
        self._dist.all_gather(out, mine)
        every = torch.stack(out).cpu()
        if bool((every[:, 0] != every[0, 0]).any()):
            raise RuntimeError(f"ranks closed different numbers of phases: {every[:, 0].tolist()}")
        n = len(work)
        self._finish(start, None)
        return every[:, 1 : 1 + n].sum(0).tolist(), every[:, 1 + n :].max(0).values.tolist()

    def reset_times(self) -> None:
        """Start the compute / wait / communicate clocks afresh (at the first outer iteration)."""
        self.times = dict.fromkeys(self.times, 0.0)
        self._mark = time.perf_counter()

    def gather_times(self) -> list[dict[str, float]]:
        """Every rank's compute / wait / communicate seconds (on every rank)."""
        t = torch.tensor([self.times["compute"], self.times["wait"], self.times["communicate"]],
                         dtype=torch.float64, device=self.device)
        out = [torch.zeros_like(t) for _ in range(self.world_size)]
        self._dist.all_gather(out, t)
        return [{"compute": float(o[0]), "wait": float(o[1]), "communicate": float(o[2])} for o in out]

    def __repr__(self) -> str:
        return f"TorchComm(rank={self.rank}/{self.world_size}, parts={self.parts_of_rank})"


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
