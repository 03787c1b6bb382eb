"""The ``data`` group: one schema per loader (``conf/data/*.yaml``), all sharing ``split``.

``split`` is read by :mod:`gnnddm.data.pipeline`, not by the loader; the loaders check their own arguments
with :func:`~gnnddm.schema.fields.check_args` against the same schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import REQUIRED, Component, Invalid, above, at_least, one_of

#: what ``time`` (of a loader, or a split given as dates) may be: null, one period, or [start, end]
TimeSelection = str | int | list[str | int | None] | None
SHARE = ("edge", "vertex")  # the neighbour rules of a mesh's native edges
CONFLICT_CHOICES = ("error", "first")  # a station with several positions: an error, or the first position
MISSING_CHUNK_CHOICES = ("error", "gap")  # a chunk a zarr store lacks (gnnddm.data.chunks)
SYNTHETIC_VARIABLES = ("t2m", "msl", "u10", "v10")  # as gnnddm.data.synthetic.VARIABLES


def check_time(key: str, selection) -> None:
    """A date range is a pair ``[start, end]``; one date or period is given alone."""
    if isinstance(selection, list | tuple) and len(selection) != 2:
        raise Invalid(key, f"expected null, one date such as '1961-01' or a pair [start, end], got {selection!r}")


def _is_fraction(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class SplitConfig:
    """``train``, ``val``, ``test``: all fractions of the time steps (train first, ``test: null`` the rest),
    or all date selections (``null``: an empty split)."""

    train: float | TimeSelection = 0.7
    val: float | TimeSelection = 0.15
    test: float | TimeSelection = 0.15

    def __post_init__(self):
        values = {"train": self.train, "val": self.val, "test": self.test}
        if all(_is_fraction(v) or v is None for v in values.values()):
            if self.train is None:
                raise Invalid("train", "expected a fraction in (0, 1] or a date range, got None")
            ftr, fva = float(self.train), float(self.val or 0.0)
            fte = 1.0 - ftr - fva if self.test is None else float(self.test)
            if min(ftr, fva, fte) < 0 or ftr + fva + fte > 1.0 + 1e-9 or ftr <= 0:
                raise Invalid("", f"fractions train={self.train}, val={self.val}, test={self.test} must be >= 0, "
                                  "train > 0, and sum to at most 1")
            return
        if any(_is_fraction(v) for v in values.values()):
            raise Invalid("", "give all splits as fractions or all as [start, end] date pairs")
        for name, value in values.items():
            check_time(name, value)


@dataclass
class DataConfig(Component):
    """Keys shared by every loader."""

    variables: str | list[str] | None = None
    time: TimeSelection = None
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self):
        check_time("time", self.time)


@dataclass
class LazyReading:
    """How gridded fields are held (:mod:`gnnddm.data.lazy`): ``lazy`` true, false or ``auto`` (lazy when
    the eager arrays would pass ``eager_max_gb`` GB)."""

    lazy: bool | str = "auto"
    eager_max_gb: float = field(default=2.0, metadata=above(0.0))

    def check_lazy(self):
        if isinstance(self.lazy, str) and self.lazy != "auto":
            raise Invalid("lazy", f"expected true, false or auto, got {self.lazy!r}")


@dataclass
class GridDataConfig(LazyReading, DataConfig):
    _target_: str = "gnnddm.data.grid.load_grid"
    _partial_: bool = False
    path: str = REQUIRED
    levels: list[float] | None = None
    member: int | None = None
    coarsen: int = field(default=1, metadata=at_least(1))
    engine: str | None = None
    on_missing_chunk: str = field(default="error", metadata=one_of(*MISSING_CHUNK_CHOICES, noun="choice"))

    def __post_init__(self):
        super().__post_init__()
        self.check_lazy()


@dataclass
class MeshDataConfig(DataConfig):
    _target_: str = "gnnddm.data.mesh.load_mesh"
    _partial_: bool = False
    path: str = REQUIRED
    levels: list[float] | None = None
    wet_only: bool = False
    share: str = field(default="edge", metadata=one_of(*SHARE, noun="adjacency"))


@dataclass
class StationsDataConfig(DataConfig):
    _target_: str = "gnnddm.data.stations.load_stations"
    _partial_: bool = False
    path: str = REQUIRED
    stations_path: str | None = None
    station_col: str | None = None
    time_col: str | None = None
    units: str | list[str] | dict[str, str] | None = None
    sep: str | None = None
    decimal: str | None = None
    position_conflicts: str = field(default="error", metadata=one_of(*CONFLICT_CHOICES, noun="choice"))


@dataclass
class SyntheticDataConfig(LazyReading, DataConfig):
    _target_: str = "gnnddm.data.synthetic.load_synthetic"
    _partial_: bool = False
    resolution: float = field(default=2.8125, metadata=above(0.0))
    steps: int = field(default=200, metadata=at_least(1))
    seed: int = field(default=0, metadata=at_least(0))
    dt_hours: float = field(default=6, metadata=above(0.0))
    start: str = "2000-01-01"
    coarsen: int = field(default=1, metadata=at_least(1))
    cache_dir: str | None = None
    poles: bool | None = None  # rows at +-90 deg; null: as ERA5 when 360 / resolution is not a power of two
    chunk_time: int = field(default=8, metadata=at_least(1))

    def __post_init__(self):
        super().__post_init__()
        self.check_lazy()
        n = 180.0 / self.resolution
        if abs(n - round(n)) > 1e-9:
            raise Invalid("resolution", f"{self.resolution!r} must divide 180 degrees (e.g. 5.625, 2.8125, 1, 0.25)")
        chosen = [self.variables] if isinstance(self.variables, str) else self.variables
        if chosen is not None:
            bad = [v for v in chosen if v not in SYNTHETIC_VARIABLES]
            if bad or not chosen:
                raise Invalid("variables", f"{bad or chosen} not generated; choose from {list(SYNTHETIC_VARIABLES)}")
