"""The ``task`` group: forecasting and interpolation (:mod:`gnnddm.tasks`).

The tasks check their arguments against the same schemas; what depends on the data (variable names in
``var_weights``, enough nodes for ``node_split``) stays in the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, Invalid, at_least, between, one_of

SPLIT_BY = ("auto", "time", "nodes")


@dataclass
class TaskConfig(Component):
    var_weights: dict[str, float] | None = None  # per-variable loss weights (null: all 1)


@dataclass
class ForecastTaskConfig(TaskConfig):
    _target_: str = "gnnddm.tasks.ForecastTask"
    history: int = field(default=1, metadata=one_of(1, 2, noun="history"))
    lead: int = field(default=1, metadata=at_least(1))
    rollout: int = field(default=1, metadata=at_least(1))  # autoregressive steps per training sample
    rollout_schedule: list[list[int]] | None = None  # [[first iteration, steps], ...]; null: task.rollout


@dataclass
class NodeSplitConfig:
    """Fractions of the nodes held out for validation and test (``task.split_by=nodes``)."""

    val: float = field(default=0.15, metadata=between(0.0, 1.0, low_open=True, high_open=True))
    test: float = field(default=0.15, metadata=between(0.0, 1.0, high_open=True))

    def __post_init__(self):
        if self.val + self.test >= 1.0:
            raise Invalid("", f"val + test must be < 1 to leave training nodes; got val={self.val}, test={self.test}")


@dataclass
class InterpolateTaskConfig(TaskConfig):
    _target_: str = "gnnddm.tasks.InterpolateTask"
    hide_fraction: float = field(default=0.3, metadata=between(0.0, 1.0, low_open=True, high_open=True))
    split_by: str = field(default="auto", metadata=one_of(*SPLIT_BY, noun="split"))
    node_split: NodeSplitConfig = field(default_factory=NodeSplitConfig)
    node_seed: int = field(default=0, metadata=at_least(0))


TASKS = (ForecastTaskConfig, InterpolateTaskConfig)
