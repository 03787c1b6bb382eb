"""The ``task`` group: forecasting and interpolation (:mod:`gnnddm.tasks`), assimilation
(:mod:`gnnddm.assimilation.task`).

The tasks check their arguments against the same schemas; what depends on the data (variable names in
``var_weights``, enough nodes for ``node_split``) stays in the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, Invalid, above, at_least, between, one_of

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


BACKGROUNDS = ("persistence", "noise", "model")
CORRELATIONS = ("gaussian", "soar")
#: σ_o and σ_b of the ERA5 surface variables, physical units (a variable the data holds beyond these needs its own)
OBS_ERROR = {"t2m": 1.0, "msl": 100.0, "u10": 1.5, "v10": 1.5, "tp": 0.0005}
BACKGROUND_ERROR = {"t2m": 2.0, "msl": 200.0, "u10": 3.0, "v10": 3.0, "tp": 0.001}


@dataclass
class ObservationConfig:
    """Where the synthetic observations are and how wrong (``task.obs``)."""

    count: int = field(default=1000, metadata=at_least(0))  # sites drawn uniformly on the sphere
    stations: str | None = None  # a station table (latitude, longitude columns) whose positions are sites too
    error: dict[str, float] = field(default_factory=lambda: dict(OBS_ERROR), metadata=above(0.0))  # σ_o per variable
    missing: float = field(default=0.0, metadata=between(0.0, 1.0, high_open=True))  # fraction missing per time
    neighbours: int = field(default=8, metadata=at_least(1))  # sites sending to each grid (mesh) node
    radius_km: float | None = field(default=None, metadata=above(0.0))  # only sites this close (null: any)


@dataclass
class BackgroundConfig:
    """The first guess the analysis corrects (``task.background``)."""

    kind: str = field(default="persistence", metadata=one_of(*BACKGROUNDS, noun="background"))
    lead: int = field(default=1, metadata=at_least(1))  # persistence: the truth `lead` steps earlier
    error: dict[str, float] = field(default_factory=lambda: dict(BACKGROUND_ERROR), metadata=above(0.0))  # noise: σ_b
    length_scale: float = field(default=500.0, metadata=above(0.0))  # noise: correlation length, km
    model: str | None = None  # model: the output folder of a forecast run on the same data (its model.pt)

    def __post_init__(self):
        if self.kind == "model" and not self.model:
            raise Invalid("model", "required with task.background.kind=model: the output folder of a forecast run "
                          "trained on the same data")


@dataclass
class OIConfig:
    """The optimal-interpolation reference (``task.oi``); null statistics are fitted on the training split."""

    correlation: str = field(default="gaussian", metadata=one_of(*CORRELATIONS, noun="correlation"))
    sigma_b: dict[str, float] | None = field(default=None, metadata=above(0.0))  # per variable, physical units
    length_scale: dict[str, float] | None = field(default=None, metadata=above(0.0))  # per variable, km


@dataclass
class AssimilateTaskConfig(TaskConfig):
    _target_: str = "gnnddm.assimilation.task.AssimilateTask"
    seed: int = field(default=0, metadata=at_least(0))  # sites, observation errors, missing draws, noise
    balance_variables: bool = True  # weight each variable's loss by 1 / its background-error variance
    oi_input: bool = False  # give grid nodes OI's increment as an input: the GNN learns a correction of OI
    obs: ObservationConfig = field(default_factory=ObservationConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    oi: OIConfig = field(default_factory=OIConfig)
