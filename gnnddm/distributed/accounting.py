"""Communication and work accounting of a training run (docs/algorithms.md, *Accounting*).

Counters, per outer iteration and cumulative:

- ``rounds``: collectives (all-reduce, broadcast);
- ``comm_bytes``: payload bytes per rank (a collective on ``n`` bytes counts ``n``);
- ``grad_evals``: forward+backward node computations, overlap nodes included, divided by N (epoch
  equivalents: one full-graph gradient is 1, a subdomain gradient is ``n_local / N``);
- ``loss_evals``: forward-only node computations / N (the loss values a trust-region test needs);
- ``model_time``: the modelled time of the p-way parallel run under the default network model;
- ``model_time_multinode``: the same run under the multi-node network model (:data:`MULTINODE`);
- ``compute_time``: the compute part of both (Σ over phases of the slowest rank's compute).

Modelled time. Collectives synchronise the ranks, so an outer iteration is a sequence of *phases*, each
ended by one collective. A phase costs the slowest rank's compute plus the collective::

    phase_time = max_k local_time_k + common_time + alpha + beta * bytes

where ``local_time_k`` is the measured (``time.perf_counter``) compute of subdomain k in that phase (each
subdomain stands for one rank of the modelled run) and ``common_time`` is work every rank does alike
(a coarse solve, an optimizer step). ``model_time = Σ_t Σ_phases phase_time``; with one phase per
iteration this is Σ_t (max_k local_time_k + Σ_collectives (α + β·bytes)).

Network models. A collective is recorded with its kind and payload, and its time is modelled twice:

- *default* (``alpha``, ``beta`` from ``accounting.alpha`` / ``accounting.beta``): α + β·bytes for every
  kind;
- *multi-node* (:data:`MULTINODE`: α = 25 µs, links of 12.5 GB/s): a ring all-reduce of ``b`` bytes over
  p ranks costs α + 2(p−1)/p · b / 12.5e9, an all-gather of ``b`` gathered bytes α + (p−1)/p · b / 12.5e9,
  a broadcast α + b / 12.5e9, and a halo exchange (point-to-point messages, ``b`` = the largest number of
  bytes one rank sends) α + b / 12.5e9.

``p`` is the number of ranks of the modelled run (``parties``): the number of subdomains, each standing for
one rank, in one process and on real ranks alike.

World-consistent on real ranks. A real run on R ranks (each computing several subdomains) accounts the
same modelled p-way run as one process: each rank records its own subdomains' work and compute, and at the
end of every outer iteration one control all-gather over the ranks (:attr:`Accounting.world`, set by the
communicator; not itself accounted) sums the work and takes, phase by phase, the slowest subdomain of any
rank. So one process and R ranks log the same ``rounds``, ``comm_bytes``, ``grad_evals`` and
``loss_evals`` for the same problem (tested); the seconds each real rank spent are reported apart, under
their own names (``cost/rank<r>/...``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gnnddm.schema.root import AccountingConfig

COUNTERS = ("rounds", "comm_bytes", "grad_evals", "loss_evals", "model_time", "model_time_multinode",
            "compute_time")
#: what a collective is; the network models price them differently
KINDS = ("all_reduce", "all_gather", "broadcast", "halo")


@dataclass(frozen=True)
class NetworkModel:
    """Time of one collective: ``alpha`` + bytes · ``beta`` · factor(kind, p).

    ``ring`` prices all-reduce and all-gather as ring algorithms (factors 2(p−1)/p and (p−1)/p); without
    it every kind costs α + β·bytes.
    """

    name: str
    alpha: float
    beta: float
    ring: bool = False

    def seconds(self, kind: str, nbytes: int, parties: int) -> float:
        if kind not in KINDS:
            raise ValueError(f"unknown collective kind {kind!r}; expected one of {list(KINDS)}")
        factor = 1.0
        if self.ring and parties > 1:
            if kind == "all_reduce":
                factor = 2.0 * (parties - 1) / parties
            elif kind == "all_gather":
                factor = (parties - 1) / parties
        return self.alpha + self.beta * factor * nbytes


#: the multi-node network model reported beside the configured one: 25 µs per collective, 12.5 GB/s links
MULTINODE = NetworkModel("multinode", alpha=25e-6, beta=1.0 / 12.5e9, ring=True)


class Accounting:
    """Accumulates rounds, bytes, work and modelled time (see module docstring).

    Parameters
    ----------
    alpha : float
        Latency of one collective, seconds (default: ``accounting.alpha``'s).
    beta : float
        Inverse bandwidth, seconds per byte (default: ``accounting.beta``'s).
    parties : int
        Ranks of the modelled run (the communicator sets it to p, the number of subdomains).
    """

    def __init__(self, alpha: float = AccountingConfig.alpha, beta: float = AccountingConfig.beta, parties: int = 1):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.network = NetworkModel("default", self.alpha, self.beta)
        self.parties = int(parties)
        self.total = dict.fromkeys(COUNTERS, 0.0)
        self.current = dict.fromkeys(COUNTERS, 0.0)
        self.last: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.iterations = 0
        #: reduces one iteration's work and phase times over real ranks (None: one process); see the module
        self.world = None
        self._phase: dict[int, float] = {}
        self._common = 0.0
        self._phases: list[tuple[float, float, float]] = []  # (compute, comm default, comm multinode)

    # ------------------------------------------------------------------ recording
    def add_compute(self, part: int, seconds: float) -> None:
        """Measured compute time of subdomain ``part`` in the current phase."""
        self._phase[part] = self._phase.get(part, 0.0) + float(seconds)

    def add_common(self, seconds: float) -> None:
        """Compute time that every rank spends alike in the current phase."""
        self._common += float(seconds)

    def add_work(self, grad_evals: float = 0.0, loss_evals: float = 0.0) -> None:
        """Node computations / N: forward+backward (``grad_evals``) and forward-only (``loss_evals``)."""
        self.current["grad_evals"] += float(grad_evals)
        self.current["loss_evals"] += float(loss_evals)

    def collective(self, nbytes: int, kind: str = "all_reduce", parties: int | None = None) -> None:
        """One collective of ``nbytes`` payload bytes per rank among ``parties`` ranks (default
        :attr:`parties`); it ends the current phase."""
        parties = self.parties if parties is None else int(parties)
        self.current["rounds"] += 1
        self.current["comm_bytes"] += int(nbytes)
        self._close_phase(self.network.seconds(kind, nbytes, parties), MULTINODE.seconds(kind, nbytes, parties))

    def end_iteration(self) -> dict[str, float]:
        """Close the outer iteration; returns its own counters (also kept in :attr:`last`)."""
        self._close_phase(0.0, 0.0)
        compute = [c for c, _, _ in self._phases]
        if self.world is not None:
            work, compute = self.world([self.current["grad_evals"], self.current["loss_evals"]], compute)
            self.current["grad_evals"], self.current["loss_evals"] = work
        for c, (_, comm, comm_multinode) in zip(compute, self._phases, strict=True):
            self.current["compute_time"] += c
            self.current["model_time"] += c + comm
            self.current["model_time_multinode"] += c + comm_multinode
        self._phases = []
        self.last = self.current
        for key in COUNTERS:
            self.total[key] += self.current[key]
        self.current = dict.fromkeys(COUNTERS, 0.0)
        self.iterations += 1
        return dict(self.last)

    def _close_phase(self, comm_time: float, comm_time_multinode: float) -> None:
        compute = max(self._phase.values(), default=0.0) + self._common
        self._phases.append((compute, comm_time, comm_time_multinode))
        self._phase, self._common = {}, 0.0

    # ------------------------------------------------------------------ reading
    def as_dict(self) -> dict[str, float]:
        """Cumulative counters (:data:`COUNTERS`)."""
        out = {key: self.total[key] for key in COUNTERS}
        out["rounds"] = int(out["rounds"])
        out["comm_bytes"] = int(out["comm_bytes"])
        return out

    def state_dict(self) -> dict:
        return {"total": dict(self.total), "last": dict(self.last), "iterations": self.iterations}

    def load_state_dict(self, state: dict) -> None:
        self.total = {**dict.fromkeys(COUNTERS, 0.0), **state["total"]}
        self.last = {**dict.fromkeys(COUNTERS, 0.0), **state["last"]}
        self.iterations = int(state["iterations"])

    def __repr__(self) -> str:
        d = self.as_dict()
        return (
            f"Accounting(iterations={self.iterations}, rounds={d['rounds']}, comm_bytes={d['comm_bytes']}, "
            f"grad_evals={d['grad_evals']:.3f}, model_time={d['model_time']:.4g}s)"
        )
