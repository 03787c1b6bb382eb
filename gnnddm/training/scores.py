"""Skill against the task's reference method: the one definition used by the training summary,
``gnnddm evaluate`` and the report (which imports it from here; this module imports neither torch nor the
report package)."""

from __future__ import annotations

import math


def skill(rmse: float | None, baseline_rmse: float | None) -> float | None:
    """Skill in percent against the task's reference method: ``100 * (1 - rmse / baseline_rmse)``; None
    where either is missing or the reference RMSE is not a positive finite number.

    >>> skill(0.5, 2.0)
    75.0
    """
    if rmse is None or baseline_rmse is None or not 0 < baseline_rmse < math.inf:
        return None
    return 100.0 * (1.0 - rmse / baseline_rmse)


def skills(rmse: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """:func:`skill` per variable; variables without a usable baseline RMSE are left out."""
    scored = {v: skill(r, baseline.get(v)) for v, r in rmse.items()}
    return {v: s for v, s in scored.items() if s is not None}


def split_rmse(scores: dict, split: str) -> dict[str, float]:
    """``{variable: rmse}`` from the ``{split}_rmse/<variable>`` entries of ``scores``."""
    return {k.split("/", 1)[1]: v for k, v in scores.items() if k.startswith(f"{split}_rmse/")}


def skill_metrics(scores: dict, baseline: dict, split: str) -> dict[str, float]:
    """``{split}_skill/<variable>`` from ``scores``' RMSEs and ``baseline[f"{split}_rmse"]``."""
    return {f"{split}_skill/{v}": x for v, x in skills(split_rmse(scores, split),
                                                       baseline.get(f"{split}_rmse", {})).items()}
