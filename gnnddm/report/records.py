"""What the report knows about one training run, and how runs are named, selected and grouped.

A :class:`RunRecord` is a plain snapshot of an MLflow run (tags, params, latest metrics, the metric
histories the report needs), so that tables, plots and the time-to-target arithmetic never talk to
MLflow. Run properties such as the algorithm or the seed are read from the ``gnnddm.*`` tags that
``gnnddm train`` sets, falling back to the resolved config in the params for runs that lack a tag.

Metric names are the ones :func:`gnnddm.training.tracking.metric_name` gives the training loop's keys
(``val/loss``, ``cost/rounds``, ...); runs logged under the names used before it are not read.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gnnddm.errors import GnnddmError
from gnnddm.training.tracking import metric_name

VAL_LOSS = metric_name("val_loss")
#: the cumulative cost counters the report reads, short name -> MLflow name
COSTS = {key: metric_name(key) for key in ("rounds", "grad_evals", "wall_time", "model_time", "comm_bytes")}
#: outer iterations done, logged once at the end
ITERATIONS = metric_name("iterations")
#: Histories fetched for every run: the evaluation loss and the cumulative cost counters.
HISTORIES = (VAL_LOSS, *COSTS.values())
SPLITS = ("val", "test")


def split_metric(kind: str, split: str, var: str = "") -> str:
    """``split_metric("rmse", "val", "t2m")`` -> ``"val/rmse/t2m"``; kind is rmse, skill or baseline_rmse."""
    return metric_name(f"{split}_{kind}/{var}")


#: Short field names -> where to read them, first hit wins ("tag:" or "param:" prefix).
FIELDS: dict[str, tuple[str, ...]] = {
    "algorithm": ("tag:gnnddm.algorithm", "param:ddm.name"),
    "num_parts": ("tag:gnnddm.num_parts", "param:partition.num_parts"),
    "overlap": ("tag:gnnddm.overlap", "param:partition.overlap"),
    "partitioner": ("tag:gnnddm.partitioner", "param:partition.name"),
    "model": ("tag:gnnddm.model", "param:model.name"),
    "data": ("tag:gnnddm.data",),
    "edge_weights": ("tag:gnnddm.edge_weights", "param:graph.weights"),
    "backend": ("tag:gnnddm.backend", "param:distributed.backend"),
    "ranks": ("tag:gnnddm.ranks",),  # the fallback depends on the backend: see get_field
    "seed": ("tag:gnnddm.seed", "param:seed"),
    "experiment": ("tag:gnnddm.experiment",),
}
#: The labels that tell runs apart in a comparison, in the order of the groups table; never the seed.
IDENTITY = ("algorithm", "num_parts", "overlap", "partitioner", "model", "data", "edge_weights", "backend",
            "ranks", "experiment")
ALIASES = {"p": "num_parts", "partition": "partitioner"}
DIRECT = ("name", "run_id", "status")
OVERRIDES_TAG = "gnnddm.overrides"


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
        The latest value of every metric (the value at the run's last step).
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


def _present(value: str | None) -> bool:
    return value is not None and value not in ("None", "null", "")


def get_field(record: RunRecord, key: str) -> str | None:
    """A run property by short name (``algorithm``, ``p``, ``seed``, ...), tag or param key; None if absent.

    ``ranks`` without its tag is 1 for ``backend=none`` and ``distributed.nproc_per_node`` otherwise.
    """
    key = ALIASES.get(key, key)
    if key in DIRECT:
        return getattr(record, key)
    sources = FIELDS.get(key, (f"tag:{key}", f"tag:gnnddm.{key}", f"param:{key}"))
    for source in sources:
        kind, name = source.split(":", 1)
        value = (record.tags if kind == "tag" else record.params).get(name)
        if _present(value):
            return value
    if key == "ranks":
        backend = get_field(record, "backend")
        if backend == "none":
            return "1"
        nproc = record.params.get("distributed.nproc_per_node")
        return nproc if backend is not None and _present(nproc) else None
    return None


def num_parts(record: RunRecord) -> int | None:
    """The number of subdomains p as an int (None if the run does not say)."""
    value = get_field(record, "num_parts")
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def seed(record: RunRecord) -> str | None:
    """The run's seed as written (``"0"``), or None; ``1.0``-style values are read as ``"1"``."""
    value = get_field(record, "seed")
    try:
        f = float(value) if value is not None else None
    except ValueError:
        return value
    return str(int(f)) if f is not None and f.is_integer() else value


def override_keys(record: RunRecord) -> list[str]:
    """The config keys set by the run's Hydra overrides (tag ``gnnddm.overrides``), ``+``/``~`` stripped.

    The tag holds the overrides separated by spaces (``ddm=sync seed=1``, ``(none)`` without any);
    a JSON list is read too.
    """
    text = record.tags.get(OVERRIDES_TAG, "")
    try:
        items = json.loads(text) if text.startswith("[") else shlex.split(text)
    except (ValueError, json.JSONDecodeError):
        items = text.split()
    return [str(item).split("=", 1)[0].lstrip("+~") for item in items if "=" in str(item)]


def default_group_keys(records: Sequence[RunRecord]) -> list[str]:
    """The keys that tell these runs apart: every identity label that differs among them, then every
    overridden config key (a param) that differs and no label covers; never the seed.

    >>> a = RunRecord("a", "a", "finished", tags={"gnnddm.algorithm": "sync", "gnnddm.seed": "0"})
    >>> b = RunRecord("b", "b", "finished", tags={"gnnddm.algorithm": "asm", "gnnddm.seed": "1"})
    >>> default_group_keys([a, b])
    ['algorithm']
    """

    def differs(key: str) -> bool:
        return len({get_field(r, key) for r in records}) > 1

    keys = [k for k in IDENTITY if differs(k)]
    covered = {source.split(":", 1)[1] for sources in FIELDS.values() for source in sources}
    covered |= {"seed", "distributed.nproc_per_node"}
    extra = dict.fromkeys(k for r in records for k in override_keys(r))
    keys += [k for k in extra if k not in covered and any(k in r.params for r in records) and differs(k)]
    return keys


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


@dataclass(frozen=True)
class Baselines:
    """The baseline run of each seed, and the overall baseline for runs whose seed has none.

    Attributes
    ----------
    overall : RunRecord or None
        The baseline named by the spec (first matching run); also the source of the default target.
    by_seed : mapping
        Seed (as :func:`seed` reads it, None for runs without one) -> that seed's baseline run.
    """

    overall: RunRecord | None
    by_seed: Mapping[str | None, RunRecord] = field(default_factory=dict)

    def of(self, record: RunRecord) -> RunRecord | None:
        """The run ``record`` is compared with: its seed's baseline, else the overall one."""
        return self.by_seed.get(seed(record), self.overall)


def pair_by_seed(records: Sequence[RunRecord], overall: RunRecord | None,
                 conditions: Mapping[str, str] | None) -> Baselines:
    """Per seed, the oldest run of that seed that matches ``conditions`` and logged ``val/loss``.

    ``conditions`` None (the baseline was named by run id) pairs that run with its own seed only.
    """
    if overall is None:
        return Baselines(None)
    if conditions is None:
        return Baselines(overall, {seed(overall): overall})
    by_seed: dict[str | None, RunRecord] = {seed(overall): overall}
    for r in sorted(records, key=lambda r: r.start_time):
        if seed(r) not in by_seed and VAL_LOSS in r.histories and matches(r, conditions):
            by_seed[seed(r)] = r
    return Baselines(overall, by_seed)
