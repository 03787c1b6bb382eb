"""What the report knows about one training run, and how runs are named and selected.

A :class:`RunRecord` is a plain snapshot of an MLflow run (tags, params, latest metrics, the metric
histories the report needs), so that tables, plots and the time-to-target arithmetic never talk to
MLflow. Run properties such as the algorithm are read from the ``gnnddm.*`` tags that ``gnnddm train``
sets, falling back to the resolved config in the params for runs that lack a tag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gnnddm.errors import GnnddmError

#: Histories fetched for every run: the evaluation loss and the cumulative accounting counters.
HISTORIES = ("val_loss", "rounds", "grad_evals", "wall_time", "model_time")

#: Short field names -> where to read them, first hit wins ("tag:" or "param:" prefix).
FIELDS: dict[str, tuple[str, ...]] = {
    "algorithm": ("tag:gnnddm.algorithm", "param:ddm.name"),
    "num_parts": ("tag:gnnddm.num_parts", "param:partition.num_parts"),
    "overlap": ("tag:gnnddm.overlap", "param:partition.overlap"),
    "partitioner": ("tag:gnnddm.partitioner", "param:partition.method"),
    "model": ("tag:gnnddm.model", "param:model.name", "param:model._target_"),
    "edge_weights": ("tag:gnnddm.edge_weights", "param:graph.weights"),
    "experiment": ("tag:gnnddm.experiment",),
}
ALIASES = {"p": "num_parts", "partition": "partitioner"}
DIRECT = ("name", "run_id", "status")


@dataclass(frozen=True)
class RunRecord:
    """A snapshot of one MLflow run.

    Attributes
    ----------
    run_id, name : str
    status : str
        Lower-case MLflow status: ``finished``, ``failed``, ``killed``, ``running``, ``scheduled``.
    start_time : int
        Milliseconds since the epoch (orders runs).
    tags, params : mapping of str to str
    metrics : mapping of str to float
        The latest value of every metric.
    histories : mapping
        Metric name -> ``(steps, values)`` for the names in :data:`HISTORIES` the run logged.
    parent_id : str or None
        The sweep's parent run.
    artifacts : tuple of str
        Paths of the run's top-level artifacts.
    """

    run_id: str
    name: str
    status: str
    start_time: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    histories: Mapping[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    parent_id: str | None = None
    artifacts: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def error(self) -> str | None:
        return self.tags.get("gnnddm.error")


def get_field(record: RunRecord, key: str) -> str | None:
    """A run property by short name (``algorithm``, ``p``, ...), tag or param key; None if absent.

    ``gnnddm.model``-style values that are Python paths (``pkg.module.make_sage``) are shortened to
    their last component; ``1.0``-style numbers from params are kept as written.
    """
    key = ALIASES.get(key, key)
    if key in DIRECT:
        return getattr(record, key)
    sources = FIELDS.get(key, (f"tag:{key}", f"tag:gnnddm.{key}", f"param:{key}"))
    for source in sources:
        kind, name = source.split(":", 1)
        value = (record.tags if kind == "tag" else record.params).get(name)
        if value is not None and value not in ("None", "null", ""):
            return value.rsplit(".", 1)[-1] if name.endswith("_target_") else value
    return None


def num_parts(record: RunRecord) -> int | None:
    """The number of subdomains p as an int (None if the run does not say)."""
    value = get_field(record, "num_parts")
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def valid_group_keys(records: Sequence[RunRecord]) -> list[str]:
    """Keys accepted by ``--group-by`` and ``--baseline key=value`` for these runs."""
    params = sorted({k for r in records for k in r.params})
    return [*FIELDS, *ALIASES, *DIRECT, *params]


def check_keys(keys: Sequence[str], records: Sequence[RunRecord], option: str) -> None:
    """Raise GnnddmError naming ``option`` if a key is neither a field, a tag nor a param of any run."""
    known = set(valid_group_keys(records)) | {k for r in records for k in r.tags}
    for key in keys:
        if key not in known and f"gnnddm.{key}" not in known:
            raise GnnddmError(
                f"{option}: unknown key {key!r}; valid: {', '.join([*FIELDS, *ALIASES, *DIRECT])} "
                "or any param of the runs (e.g. ddm.local_steps)"
            )


def parse_spec(spec: str) -> dict[str, str] | str:
    """``"algorithm=global,p=1"`` -> ``{"algorithm": "global", "p": "1"}``; anything else is a run id."""
    if "=" not in spec:
        return spec.strip()
    conditions = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise GnnddmError(f"run spec {spec!r}: expected a run id or key=value[,key=value]")
        conditions[key.strip()] = value.strip()
    return conditions


def _same(a: str | None, b: str) -> bool:
    if a is None:
        return False
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def matches(record: RunRecord, conditions: Mapping[str, str]) -> bool:
    """True if every ``key=value`` condition holds for the run (numbers compare as numbers)."""
    return all(_same(get_field(record, k), v) for k, v in conditions.items())
