"""The communication layer seen by the training algorithms.

Algorithms never call ``torch.distributed``: they talk to a :class:`Communicator`. Each rank owns one or
more subdomains (``parts_of_rank``), sums its own subdomains' contributions locally and then calls one
collective, so the same algorithm code runs in one process (:class:`LocalComm`, every subdomain on rank 0)
and across processes (the torch.distributed implementation in ``gnnddm.distributed``).

Every collective is recorded in the communicator's :class:`~gnnddm.ddm.accounting.Accounting`: one round
and its payload bytes per rank (an all-reduce or broadcast of ``n`` bytes counts ``n``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from gnnddm.ddm.accounting import Accounting


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
    accounting : Accounting or None
        Where collectives are recorded.
    """

    rank: int
    world_size: int
    num_parts: int
    parts_of_rank: tuple[int, ...]
    redundant_copies: int
    accounting: Accounting | None

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
        Records every collective; an algorithm attaches its own when this is None.
    """

    rank = 0
    world_size = 1

    def __init__(self, num_parts: int, accounting: Accounting | None = None):
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        self.num_parts = int(num_parts)
        self.parts_of_rank = tuple(range(self.num_parts))
        self.redundant_copies = self.num_parts
        self.accounting = accounting

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
        if self.accounting is not None:
            self.accounting.collective(plan.rows_sent() * row_bytes(values), kind="halo", parties=self.num_parts)
        return out

    def _record(self, tensors: list[torch.Tensor], kind: str = "all_reduce") -> None:
        if self.accounting is not None:
            self.accounting.collective(payload_bytes(tensors), kind=kind, parties=self.num_parts)

    def __repr__(self) -> str:
        return f"LocalComm(num_parts={self.num_parts})"
