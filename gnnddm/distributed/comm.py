"""The communication layer seen by the training algorithms, and the only code that calls ``torch.distributed``
collectives.

Algorithms never call ``torch.distributed``: they talk to a :class:`Communicator`. Each rank owns one or
more subdomains (``parts_of_rank``), sums its own subdomains' contributions locally and then calls one
collective, so the same algorithm code runs in one process (:class:`LocalComm`, every subdomain on rank 0)
and across processes (:class:`TorchComm`, subdomains assigned to ranks in contiguous balanced blocks).

Every collective is recorded in the communicator's :class:`~gnnddm.distributed.accounting.Accounting`: one round
and its payload bytes per rank (an all-reduce or broadcast of ``n`` bytes counts ``n``).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import torch

from gnnddm.distributed.accounting import Accounting
from gnnddm.distributed.world import assign_parts


def payload_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the flattened list of tensors (what one collective on them sends per rank)."""
    return int(sum(t.numel() * t.element_size() for t in tensors))


@runtime_checkable
class Communicator(Protocol):
    """What an algorithm may ask of the communication layer.

    Attributes
    ----------
    rank, world_size : int
        This process and the number of processes.
    num_parts : int
        p, the number of subdomains of the whole run.
    parts_of_rank : tuple[int, ...]
        The subdomains this rank computes (all of them in one process).
    redundant_copies : int
        How many ranks of the modelled parallel run each computation that "every rank does" stands for
        (a coarse solve repeated on every rank): p for :class:`LocalComm`, which plays all p ranks, and the
        rank's number of subdomains on a real rank, so that the work summed over the ranks counts p copies.
    accounting : Accounting
        Where collectives are recorded, and where the algorithms using the communicator account their work.
    """

    rank: int
    world_size: int
    num_parts: int
    parts_of_rank: tuple[int, ...]
    redundant_copies: int
    accounting: Accounting

    def owner(self, part: int) -> int:
        """The rank that computes subdomain ``part``."""
        ...

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum each tensor over all ranks, in place, as one collective on the flattened list."""
        ...

    def broadcast_(self, tensors: list[torch.Tensor], src: int) -> None:
        """Overwrite each tensor with rank ``src``'s copy, as one collective."""
        ...

    def all_gather_parts(self, values: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Every part's tensor on every rank, from ``values`` = this rank's parts' tensors (equal shapes),
        as one collective (accounted with the gathered bytes, all parts together)."""
        ...

    def exchange_halo(self, plan, values: dict[int, torch.Tensor], reverse: bool = False):
        """The halo exchange of a :class:`~gnnddm.partition.halo.HaloPlan`, as one collective.

        Forward: ``values[k]`` = node-major rows of this rank's part k (owned rows first); returns, per
        part k of this rank, the rows of its halo nodes ``[n_halo_k, ...]`` copied from their owners.
        ``reverse``: ``values[k]`` = gradients of part k's halo rows; returns, per part j of this rank,
        ``[n_owned_j, ...]``: the sum of what its halo copies received (the adjoint of the copy).
        Accounted as kind ``halo`` with the largest number of bytes one rank sends.
        """
        ...

    def sum_control_(self, tensor: torch.Tensor) -> None:
        """Sum ``tensor`` over all ranks in place for work outside the algorithm (evaluation): not accounted."""
        ...

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (for stopping together): not accounted."""
        ...

    def reset_times(self) -> None:
        """Start this rank's compute / wait / communicate clocks afresh."""
        ...

    def gather_times(self) -> list[dict[str, float]]:
        """Every rank's compute / wait / communicate seconds, on every rank (empty in one process, where the
        subdomains' times are in the accounting)."""
        ...


def copy_halo(plan, values: dict[int, torch.Tensor], pairs, reverse: bool, parts) -> dict[int, torch.Tensor]:
    """The halo copies (or their adjoint) for the part pairs ``pairs`` whose both ends are local.

    Forward: ``{k: halo rows}``; reverse: ``{j: owned-row sums}`` (see
    :meth:`Communicator.exchange_halo`), for every part of ``parts``: zeros where no pair contributes,
    to be filled by the messages from other ranks.
    """
    template = next(iter(values.values()))
    out = {k: template.new_zeros(((plan.num_owned[k] if reverse else plan.num_halo(k)), *template.shape[1:]))
           for k in parts}
    for j, k in pairs:
        send = torch.as_tensor(plan.send[(j, k)], device=template.device)
        recv = torch.as_tensor(plan.recv[(j, k)], device=template.device)
        if reverse:
            out[j].index_add_(0, send, values[k][recv])
        else:
            out[k][recv] = values[j][send]
    return out


def row_bytes(values: dict[int, torch.Tensor]) -> int:
    """Bytes of one row (first dimension) of the tensors in ``values``."""
    t = next(iter(values.values()))
    return int(t.shape[1:].numel() * t.element_size())


class LocalComm:
    """One process computing all ``num_parts`` subdomains in turn (world size 1).

    The collectives are identities (the one rank already holds the sum), but they are accounted as if
    ``num_parts`` ranks took part, so that rounds, bytes and the modelled time describe the p-way
    parallel run this process simulates.

    Parameters
    ----------
    num_parts : int
        p.
    accounting : Accounting, optional
        Records every collective, and the work of the algorithms using this communicator (a new one with
        the default network model when not given).
    """

    rank = 0
    world_size = 1

    def __init__(self, num_parts: int, accounting: Accounting | None = None):
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        self.num_parts = int(num_parts)
        self.parts_of_rank = tuple(range(self.num_parts))
        self.redundant_copies = self.num_parts
        self.accounting = Accounting() if accounting is None else accounting

    def owner(self, part: int) -> int:
        return 0

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        self._record(tensors)

    def broadcast_(self, tensors: list[torch.Tensor], src: int) -> None:
        if src != 0:
            raise ValueError(f"broadcast source rank {src} does not exist in a world of size 1")
        self._record(tensors, kind="broadcast")

    def sum_control_(self, tensor: torch.Tensor) -> None:
        """Sum over ranks outside the algorithm (evaluation, control): not accounted; the identity here."""

    def agree(self, flag: bool) -> bool:
        return bool(flag)

    def reset_times(self) -> None:
        """No rank clocks in one process."""

    def gather_times(self) -> list[dict[str, float]]:
        return []

    def all_gather_parts(self, values: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        self._record(list(values.values()), kind="all_gather")
        return dict(values)

    def exchange_halo(self, plan, values: dict[int, torch.Tensor], reverse: bool = False):
        """See :meth:`Communicator.exchange_halo`; every part is its own modelled rank."""
        out = copy_halo(plan, values, sorted(plan.send), reverse, self.parts_of_rank)
        self.accounting.collective(plan.rows_sent() * row_bytes(values), kind="halo", parties=self.num_parts)
        return out

    def _record(self, tensors: list[torch.Tensor], kind: str = "all_reduce") -> None:
        self.accounting.collective(payload_bytes(tensors), kind=kind, parties=self.num_parts)

    def __repr__(self) -> str:
        return f"LocalComm(num_parts={self.num_parts})"


class TorchComm:
    """:class:`~gnnddm.distributed.comm.Communicator` over ``torch.distributed`` (an initialised process group).

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
        self.accounting = Accounting() if accounting is None else accounting
        self.measure_wait = measure_wait
        self.device = torch.device(device)
        self.times = {"compute": 0.0, "wait": 0.0, "communicate": 0.0}
        self._mark = time.perf_counter()

    @property
    def accounting(self) -> Accounting:
        """Where collectives are recorded; its iterations are reduced over the ranks (:meth:`reduce_iteration`)."""
        return self._accounting

    @accounting.setter
    def accounting(self, accounting: Accounting) -> None:
        self._accounting = accounting
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
        """See :meth:`gnnddm.distributed.comm.Communicator.exchange_halo`: point-to-point messages between the
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
        if nbytes is not None:
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
