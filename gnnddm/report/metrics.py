"""Time-to-target arithmetic: pure functions on metric histories.

A metric history is a pair of sequences ``(steps, values)`` as MLflow stores them (step = outer
iteration). Convention used throughout the report:

    A run reaches the target at the **first evaluation whose** ``val_loss <= target`` (the same rule
    ``gnnddm train`` uses to stop early at ``trainer.target_val_loss``). Its rounds-, epochs-, wall- and
    model-time-to-target are the cumulative accounting metrics (``rounds``, ``grad_evals``,
    ``wall_time``, ``model_time``) **at that same step**.

Accounting metrics are logged every outer iteration, so the value at the step is normally read
directly; should a step be missing it is interpolated linearly between the neighbouring logged steps
(the counters grow roughly linearly in the iteration), and it is never extrapolated.

Speedup and parallel efficiency compare a run's time-to-target with the baseline's::

    speedup    S = T_baseline / T_run
    efficiency E = S / p

with p the run's number of subdomains, i.e. efficiency against a one-process baseline: E = 1 is ideal
strong scaling, E > 1 a run that needs less total work than the baseline to reach the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ACCOUNTING = ("rounds", "grad_evals", "wall_time", "model_time")


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
        A metric history (e.g. the evaluations of ``val_loss``), in any order. NaN values never count.
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

    @property
    def reached(self) -> bool:
        return self.step is not None


def to_target(histories: dict[str, tuple[Sequence[float], Sequence[float]]], target: float) -> ToTarget:
    """Apply the module's convention to one run's histories.

    Parameters
    ----------
    histories : dict
        Metric name -> ``(steps, values)``; needs ``val_loss``, uses whichever of
        ``rounds``, ``grad_evals``, ``wall_time``, ``model_time`` are present.
    target : float
        The val_loss to reach.

    Examples
    --------
    >>> h = {"val_loss": ([2, 4], [0.8, 0.3]), "rounds": ([1, 2, 3, 4], [2, 4, 6, 8])}
    >>> to_target(h, 0.5)
    ToTarget(step=4, rounds=8.0, grad_evals=None, wall_time=None, model_time=None)
    """
    step = first_crossing(*histories["val_loss"], target)
    if step is None:
        return ToTarget(None)
    at = {name: value_at_step(*histories[name], step) if name in histories else None for name in ACCOUNTING}
    return ToTarget(step, **at)


def speedup(baseline_time: float | None, run_time: float | None) -> float | None:
    """``baseline_time / run_time``; None if either is unknown or not positive.

    >>> speedup(6.0, 2.0)
    3.0
    """
    if baseline_time is None or run_time is None or not (baseline_time > 0 and run_time > 0):
        return None
    return baseline_time / run_time


def efficiency(speedup_value: float | None, num_parts: int | None) -> float | None:
    """Parallel efficiency ``speedup / p``; None if either is unknown or p < 1.

    >>> efficiency(3.0, 4)
    0.75
    """
    if speedup_value is None or num_parts is None or num_parts < 1:
        return None
    return speedup_value / num_parts
