"""The data model shared by every loader, graph builder, task and training algorithm.

A :class:`WeatherGraphData` holds one set of locations (nodes) and many time samples of the dynamic
fields at those locations. Loaders return it in physical units (``normalised=False``);
:func:`gnnddm.data.normalise.normalise` maps it to zero mean / unit variance with statistics from the
training split only. Graph builders add ``edge_index``, ``edge_weight`` and ``edge_attr`` with
:meth:`WeatherGraphData.with_graph`.

Shapes: ``N`` nodes, ``T`` time steps, ``V`` dynamic variables, ``S`` static features, ``E`` directed
edges (a symmetric graph holds both directions). Edge convention as in PyTorch Geometric:
``edge_index[0]`` is the source j, ``edge_index[1]`` the target i of the message j -> i.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

KINDS = ("grid", "mesh", "stations")


@dataclass(frozen=True, eq=False)
class WeatherGraphData:
    """Locations, fields and (optionally) the graph over them.

    Attributes
    ----------
    kind : {"grid", "mesh", "stations"}
    lat, lon : float64 [N]
        Node positions in degrees; ``lon`` in [-180, 180).
    area : float64 [N]
        Area weights with mean 1 (cos-latitude cell areas for grids, 1 for stations).
    X : float32 [T, N, V]
        Dynamic fields; NaN nowhere (missing entries are 0 and flagged in ``mask``).
    mask : bool [T, N, V]
        True where ``X`` holds a valid observation.
    times : datetime64[ns] [T]
    variables, units : tuple[str, ...] of length V
    static : float32 [N, S], static_names : tuple[str, ...] of length S
        Static node features (sin/cos of lat and lon, orography, land-sea mask, ...).
    mean, std : float64 [V]
        Normalisation statistics; ``X_physical = X * std + mean``. Zeros / ones while not normalised.
    normalised : bool
    grid_shape : (nlat, nlon) or None
        For regular grids, node id = i_lat * nlon + i_lon with latitude descending (north first).
    native_edges : int64 [2, E0] or None
        Adjacency the file itself defines (mesh cells sharing a vertex), symmetric, no self loops.
    edge_index : int64 [2, E] or None; edge_weight : float32 [E]; edge_attr : float32 [E, F]
    source : str
        Path or description of where the data came from (used in messages and summaries).
    layout : str
        Detected file layout (e.g. "cds", "weatherbench2", "cf-timeseries", "icon").
    node_ids : tuple[str, ...]
        The file's names of the nodes (station codes), or empty; emptied when a graph builder changes the
        nodes (a joint graph's mesh nodes have none).
    warnings : tuple[str, ...]
        Messages the loader emitted (also sent through :mod:`warnings`), kept for ``gnnddm data info``.
    reading : str
        How the fields are held: eager (in memory) or lazy (read from the file a batch at a time, ``X`` and
        ``mask`` then :class:`~gnnddm.data.lazy.LazyField` views), and why.
    """

    kind: str
    lat: np.ndarray
    lon: np.ndarray
    area: np.ndarray
    X: np.ndarray
    mask: np.ndarray
    times: np.ndarray
    variables: tuple[str, ...]
    units: tuple[str, ...]
    static: np.ndarray
    static_names: tuple[str, ...]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    normalised: bool = False
    grid_shape: tuple[int, int] | None = None
    native_edges: np.ndarray | None = None
    edge_index: np.ndarray | None = None
    edge_weight: np.ndarray | None = None
    edge_attr: np.ndarray | None = None
    edge_attr_names: tuple[str, ...] = ()
    source: str = ""
    layout: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    reading: str = "eager"
    node_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        n = self.lat.shape[0]
        if self.X.ndim != 3 or self.X.shape[1] != n:
            raise ValueError(f"X must have shape [T, N={n}, V], got {self.X.shape}")
        if self.mask.shape != self.X.shape:
            raise ValueError(f"mask shape {self.mask.shape} != X shape {self.X.shape}")
        if len(self.variables) != self.X.shape[2] or len(self.units) != self.X.shape[2]:
            raise ValueError("variables and units must have one entry per variable of X")
        if self.static.shape[0] != n or len(self.static_names) != self.static.shape[1]:
            raise ValueError("static must be [N, S] with one name per column")
        if len(self.node_ids) not in (0, n):  # the nodes changed since the file named them
            object.__setattr__(self, "node_ids", ())
        if self.mean is None:
            object.__setattr__(self, "mean", np.zeros(self.num_vars))
        if self.std is None:
            object.__setattr__(self, "std", np.ones(self.num_vars))

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        return int(self.lat.shape[0])

    @property
    def num_times(self) -> int:
        return int(self.X.shape[0])

    @property
    def num_vars(self) -> int:
        return int(self.X.shape[2])

    @property
    def lazy(self) -> bool:
        """Whether ``X`` and ``mask`` stay in the file (:mod:`gnnddm.data.lazy`)."""
        from gnnddm.data.lazy import LazyField

        return isinstance(self.X, LazyField)

    @property
    def num_edges(self) -> int:
        return 0 if self.edge_index is None else int(self.edge_index.shape[1])

    # ---------------------------------------------------------------- helpers
    def replace(self, **changes) -> WeatherGraphData:
        """A copy with some fields replaced (the instance itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def with_graph(self, edge_index, edge_weight, edge_attr=None, edge_attr_names=()) -> WeatherGraphData:
        """A copy carrying the given graph."""
        edge_index = np.asarray(edge_index, dtype=np.int64)
        edge_weight = np.asarray(edge_weight, dtype=np.float32)
        if edge_index.ndim != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, E], got {edge_index.shape}")
        if edge_weight.shape != (edge_index.shape[1],):
            raise ValueError("edge_weight must have one entry per edge")
        if edge_attr is not None:
            edge_attr = np.asarray(edge_attr, dtype=np.float32)
        return self.replace(
            edge_index=edge_index,
            edge_weight=edge_weight,
            edge_attr=edge_attr,
            edge_attr_names=tuple(edge_attr_names),
        )

    def select_times(self, index) -> WeatherGraphData:
        """A copy restricted to the given time indices (slice, int array or bool mask)."""
        if self.lazy:
            from gnnddm.data.lazy import LazyField

            reader = self.X.reader.select_times(index)
            return self.replace(X=LazyField(reader, "X"), mask=LazyField(reader, "mask"), times=self.times[index])
        return self.replace(X=self.X[index], mask=self.mask[index], times=self.times[index])

    def to_physical(self, values: np.ndarray, var_axis: int = -1) -> np.ndarray:
        """Map normalised values (variables along ``var_axis``) back to physical units."""
        shape = [1] * values.ndim
        shape[var_axis] = self.num_vars
        return values * self.std.reshape(shape) + self.mean.reshape(shape)

    def var_index(self, name: str) -> int:
        return self.variables.index(name)

    def __repr__(self) -> str:
        t0 = str(self.times[0])[:16] if self.num_times else "-"
        t1 = str(self.times[-1])[:16] if self.num_times else "-"
        return (
            f"WeatherGraphData(kind={self.kind}, layout={self.layout or '?'}, nodes={self.num_nodes}, "
            f"times={self.num_times} [{t0} .. {t1}], variables={list(self.variables)}, "
            f"edges={self.num_edges}, normalised={self.normalised})"
        )


def static_position_features(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """sin/cos of latitude and longitude, the static features every data set carries."""
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    feats = np.stack([np.sin(la), np.cos(la), np.sin(lo), np.cos(lo)], axis=1).astype(np.float32)
    return feats, ("sin_lat", "cos_lat", "sin_lon", "cos_lon")


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes mapped to [-180, 180)."""
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0
