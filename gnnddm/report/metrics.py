"""Time-to-target, scaling and spread arithmetic: pure functions on metric histories and numbers.

A metric history is a pair of sequences ``(steps, values)`` as MLflow stores them (step = outer
iteration). Convention used throughout the report:

    A run reaches the target at the **first evaluation whose** ``val/loss <= target`` (the same rule
    ``gnnddm train`` uses to stop early at ``trainer.target_val_loss``). Its rounds-, epochs-, wall-,
    model-time- and bytes-to-target are the cumulative cost counters (``cost/rounds``,
    ``cost/grad_evals``, ``cost/wall_time``, ``cost/model_time``, ``cost/comm_bytes``) **at that same step**.

Cost counters are logged every outer iteration, so the value at the step is normally read directly;
should a step be missing it is interpolated linearly between the neighbouring logged steps (the
counters grow roughly linearly in the iteration), and it is never extrapolated.

Speedup and parallel efficiency compare a run's time-to-target with that of its baseline (the
baseline run of the same seed, see :mod:`gnnddm.report.tables`)::

    speedup    S = T_baseline / T_run
    efficiency E = S * p_baseline / p

with p the number of subdomains: against a one-process baseline E = S / p, where E = 1 is ideal strong
scaling and E > 1 a run that needs less total work than the baseline to reach the target.

Groups of runs (the seeds of one configuration) are summarised by :class:`Spread`: the mean, the
smallest and largest value, and n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ACCOUNTING = ("rounds", "grad_evals", "wall_time", "model_time", "comm_bytes")
History = tuple[Sequence[float], Sequence[float]]


def _sorted_pairs(steps: Sequence[float], values: Sequence[float]) -> list[tuple[float, float]]:
    if len(steps) != len(values):
        raise ValueError(f"steps and values differ in length ({len(steps)} != {len(values)})")
    # A stable sort keeps the order of values logged twice at one step, so the later one wins below.
    return sorted(((float(s), float(v)) for s, v in zip(steps, values, strict=True)), key=lambda sv: sv[0])


def first_crossing(steps: Sequence[float], values: Sequence[float], target: float) -> int | None:
    """The first step at which ``value <= target``, or None if the history never gets there.

    Parameters
    ----------
    steps, values : sequences of equal length
        A metric history (e.g. the evaluations of ``val/loss``), in any order. NaN values never count.
    target : float

    Examples
    --------
    >>> first_crossing([10, 20, 30], [0.9, 0.4, 0.2], 0.5)
    20
    >>> first_crossing([10, 20], [0.9, 0.8], 0.5) is None
    True
    """
    for step, value in _sorted_pairs(steps, values):
        if not math.isnan(value) and value <= target:
            return int(step)
    return None


def value_at_step(steps: Sequence[float], values: Sequence[float], step: float) -> float | None:
    """The value of a history at ``step``: exact if logged there, else linearly interpolated.

    Returns None if ``step`` lies outside the logged range (no extrapolation) or the history is empty.
    If a step was logged several times, the last value logged at it is used.

    Examples
    --------
    >>> value_at_step([1, 2, 4], [10.0, 20.0, 40.0], 2)
    20.0
    >>> value_at_step([1, 2, 4], [10.0, 20.0, 40.0], 3)
    30.0
    >>> value_at_step([1, 2], [10.0, 20.0], 5) is None
    True
    """
    pairs = _sorted_pairs(steps, values)
    exact = [v for s, v in pairs if s == step]
    if exact:
        return exact[-1]
    below = [(s, v) for s, v in pairs if s < step]
    above = [(s, v) for s, v in pairs if s > step]
    if not below or not above:
        return None
    (s0, v0), (s1, v1) = below[-1], above[0]
    return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


@dataclass(frozen=True)
class ToTarget:
    """Where a run first reached the target, and the accounting metrics at that step.

    ``step`` is None when the target was not reached; a metric is None when it was not logged there.
    """

    step: int | None
    rounds: float | None = None
    grad_evals: float | None = None
    wall_time: float | None = None
    model_time: float | None = None
    comm_bytes: float | None = None

    @property
    def reached(self) -> bool:
        return self.step is not None


def to_target(loss: History, costs: Mapping[str, History], target: float) -> ToTarget:
    """Apply the module's convention to one run's histories.

    Parameters
    ----------
    loss : (steps, values)
        The evaluation loss (``val/loss``).
    costs : dict
        Short counter name (one of :data:`ACCOUNTING`) -> ``(steps, values)``; absent ones read None.
    target : float
        The validation loss to reach.

    Examples
    --------
    >>> to_target(([2, 4], [0.8, 0.3]), {"rounds": ([1, 2, 3, 4], [2, 4, 6, 8])}, 0.5)
    ToTarget(step=4, rounds=8.0, grad_evals=None, wall_time=None, model_time=None, comm_bytes=None)
    """
    step = first_crossing(*loss, target)
    if step is None:
        return ToTarget(None)
    at = {name: value_at_step(*costs[name], step) if name in costs else None for name in ACCOUNTING}
    return ToTarget(step, **at)


def speedup(baseline_time: float | None, run_time: float | None) -> float | None:
    """``baseline_time / run_time``; None if either is unknown or not positive.

    >>> speedup(6.0, 2.0)
    3.0
    """
    if baseline_time is None or run_time is None or not (baseline_time > 0 and run_time > 0):
        return None
    return baseline_time / run_time


def efficiency(speedup_value: float | None, num_parts: int | None, baseline_parts: int = 1) -> float | None:
    """Parallel efficiency ``speedup * baseline_parts / p``; None if either is unknown or p < 1.

    >>> efficiency(3.0, 4)
    0.75
    >>> efficiency(1.5, 4, baseline_parts=2)
    0.75
    """
    if speedup_value is None or num_parts is None or num_parts < 1 or baseline_parts < 1:
        return None
    return speedup_value * baseline_parts / num_parts


@dataclass(frozen=True)
class Spread:
    """Mean, smallest and largest of the ``n`` values of a group.

    The report's spread is the range (min to max), not a confidence interval: sweeps have two to five
    seeds, for which a 95 % t-interval (12.7 s / sqrt(2) half-width at n = 2) says more about n than
    about the runs, while the range shows every seed.
    """

    mean: float
    low: float
    high: float
    n: int


def spread(values: Sequence[float | None]) -> Spread | None:
    """The :class:`Spread` of the numbers among ``values`` (None and NaN left out); None if there are none.

    >>> spread([1.0, 3.0, None, 2.0])
    Spread(mean=2.0, low=1.0, high=3.0, n=3)
    """
    nums = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not nums:
        return None
    return Spread(math.fsum(nums) / len(nums), min(nums), max(nums), len(nums))
