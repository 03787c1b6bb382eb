"""The sanity checks of a run's set-up and of its losses: each problem one error with advice that can be
followed (a split without a sample, a variable without a valid target, lead times the test split cannot
hold, a diverging loss)."""

from __future__ import annotations

import numpy as np

from gnnddm.errors import ConfigError, DataError, TrainingDivergedError


def check_samples(anchors: dict, data, task) -> None:
    """A :class:`ConfigError` with advice that can be followed when a split has no sample."""
    for name in ("train", "val"):
        if len(anchors[name]):
            continue
        if data.num_times == 1:
            advice = ("the data holds a single time step; train on it with task=interpolate, which holds out "
                      "nodes instead of time steps (task.split_by=nodes)")
        elif task.name == "forecast":
            ahead = task.rollout if name == "train" else 1
            advice = (f"a forecast sample needs {task.lead * (task.history - 1 + ahead) + 1} consecutive time steps "
                      f"in the split ({data.num_times} in the data); enlarge data.split.{name} or lower task.lead"
                      + (f" or task.rollout ({ahead})" if ahead > 1 else ""))
        else:
            advice = f"give data.split.{name} a larger fraction or a longer date range"
        raise ConfigError(f"data.split.{name}: no {'training' if name == 'train' else 'validation'} sample; "
                          f"{advice}")


def check_valid_targets(task, anchors: dict, data) -> dict[str, dict[str, int]]:
    """Valid target entries per split and variable; a :class:`DataError` where training or validation has
    none for a variable (its loss and RMSE would be 0 over nothing)."""
    counts = {name: dict(zip(data.variables, (int(n) for n in task.valid_counts(a, name)), strict=True))
              for name, a in anchors.items()}
    for name in ("train", "val"):
        empty = [v for v, n in counts[name].items() if n == 0]
        if empty:
            raise DataError(
                f"{data.source}: no valid value of {', '.join(empty)} in the {name} split (all missing, "
                f"non-numeric or masked as implausible); drop {'it' if len(empty) == 1 else 'them'} with "
                f"data.variables or choose a data.split / data.time range that holds values"
            )
    return counts


def check_eval_leads(leads: int | str, task, split) -> None:
    """``trainer.eval_leads`` asks for a forecast task and at most the leads the test split allows."""
    if not leads:
        return
    if task.name != "forecast":
        raise ConfigError(f"trainer.eval_leads={leads}: lead-time scores need task=forecast (this run's task is "
                          f"{task.name}); set trainer.eval_leads=0")
    from gnnddm.tasks.rollout import reach

    steps = set(np.asarray(split.test).tolist())
    longest = max((reach(task, int(t), steps) for t in steps), default=0)
    if longest < 1 or (leads != "max" and int(leads) > longest):
        raise ConfigError(f"trainer.eval_leads={leads}: the test split ({len(steps)} steps) allows 1 to {longest} "
                          f"leads of {task.lead} step(s); choose at most {longest}, or max")


def check_finite(value, it: int, limit: float, name: str) -> None:
    """A :class:`TrainingDivergedError` when ``value`` is not finite or exceeds ``trainer.max_loss``."""
    if value is not None and (not np.isfinite(value) or value > limit):
        raise TrainingDivergedError(
            f"training diverged at iteration {it}: {name} = {value:.4g} (limit trainer.max_loss={limit:g}); "
            "lower the learning rate (optimizer.lr or ddm.local_solver.lr)"
        )
