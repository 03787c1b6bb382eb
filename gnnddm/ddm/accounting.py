"""Communication and work accounting of a training run (DESIGN.md §5).

Counters, per outer iteration and cumulative:

- ``rounds``: collectives (all-reduce, broadcast);
- ``comm_bytes``: payload bytes per rank (a collective on ``n`` bytes counts ``n``);
- ``grad_evals``: forward+backward node computations, overlap nodes included, divided by N (epoch
  equivalents: one full-graph gradient is 1, a subdomain gradient is ``n_local / N``);
- ``loss_evals``: forward-only node computations / N (the loss values a trust-region test needs);
- ``model_time``: the modelled time of the p-way parallel run.

Modelled time. Collectives synchronise the ranks, so an outer iteration is a sequence of *phases*, each
ended by one collective. A phase costs the slowest rank's compute plus the collective::

    phase_time = max_k local_time_k + common_time + alpha + beta * bytes

where ``local_time_k`` is the measured (``time.perf_counter``) compute of subdomain k in that phase (each
subdomain stands for one rank of the modelled run) and ``common_time`` is work every rank does alike
(a coarse solve, an optimizer step). ``model_time = Σ_t Σ_phases phase_time``; with one phase per
iteration this is DESIGN.md's Σ_t (max_k local_time_k + Σ_collectives (α + β·bytes)).
"""

from __future__ import annotations

import copy

COUNTERS = ("rounds", "comm_bytes", "grad_evals", "loss_evals", "model_time")


class Accounting:
    """Accumulates rounds, bytes, work and modelled time (see module docstring).

    Parameters
    ----------
    alpha : float
        Latency of one collective, seconds.
    beta : float
        Inverse bandwidth, seconds per byte.
    """

    def __init__(self, alpha: float = 0.0, beta: float = 0.0):
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.total = dict.fromkeys(COUNTERS, 0.0)
        self.current = dict.fromkeys(COUNTERS, 0.0)
        self.last: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.iterations = 0
        self._phase: dict[int, float] = {}
        self._common = 0.0

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

    def collective(self, nbytes: int) -> None:
        """One collective of ``nbytes`` payload bytes per rank; it ends the current phase."""
        self.current["rounds"] += 1
        self.current["comm_bytes"] += int(nbytes)
        self._close_phase(self.alpha + self.beta * nbytes)

    def end_iteration(self) -> dict[str, float]:
        """Close the outer iteration; returns its own counters (also kept in :attr:`last`)."""
        self._close_phase(0.0)
        self.last = self.current
        for key in COUNTERS:
            self.total[key] += self.current[key]
        self.current = dict.fromkeys(COUNTERS, 0.0)
        self.iterations += 1
        return dict(self.last)

    def _close_phase(self, comm_time: float) -> None:
        compute = max(self._phase.values(), default=0.0) + self._common
        self.current["model_time"] += compute + comm_time
        self._phase, self._common = {}, 0.0

    # ------------------------------------------------------------------ reading
    def as_dict(self) -> dict[str, float]:
        """Cumulative ``rounds``, ``comm_bytes``, ``grad_evals``, ``loss_evals``, ``model_time``."""
        out = {key: self.total[key] for key in COUNTERS}
        out["rounds"] = int(out["rounds"])
        out["comm_bytes"] = int(out["comm_bytes"])
        return out

    def state_dict(self) -> dict:
        return {"total": dict(self.total), "last": dict(self.last), "iterations": self.iterations}

    def load_state_dict(self, state: dict) -> None:
        self.total = copy.copy(state["total"])
        self.last = copy.copy(state["last"])
        self.iterations = int(state["iterations"])

    def __repr__(self) -> str:
        d = self.as_dict()
        return (
            f"Accounting(iterations={self.iterations}, rounds={d['rounds']}, comm_bytes={d['comm_bytes']}, "
            f"grad_evals={d['grad_evals']:.3f}, model_time={d['model_time']:.4g}s)"
        )
