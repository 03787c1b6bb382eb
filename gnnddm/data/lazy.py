"""Fields that stay in their file: a gridded data set read one batch of time steps (and nodes) at a time.

A year of 6-hourly ERA5 at 0.25 deg with 4 variables is 1,460 x 1,038,240 x 4 floats = 24 GB; no laptop
holds it in memory, and a rank of a decomposed run reads only the rows of its subdomains. With
``data.lazy`` (``auto``: when the eager arrays would pass ``data.eager_max_gb``) the grid loader returns a
:class:`~gnnddm.data.weather_graph.WeatherGraphData` whose ``X`` and ``mask`` are :class:`LazyField`
views of one :class:`GridReader`:

* ``data.X[t]`` / ``data.mask[t]`` (an integer, slice or index array of time steps, then any numpy index)
  read those time steps only, as numpy arrays, exactly the values the eager loader gives;
* :meth:`GridReader.fields` ``(t, nodes)`` reads only the latitude rows that hold ``nodes``, what a rank's
  batch assembly uses (:meth:`gnnddm.tasks.Task.read`); :attr:`GridReader.points_read` counts the grid
  points read;
* anything that would need the whole series at once (``np.asarray(data.X)``) is refused with a
  :class:`~gnnddm.errors.DataError` instead of filling the memory.

Normalisation statistics and per-step valid counts come from one streaming pass
(:mod:`gnnddm.data.normalise`); a lazy reader applies ``(x - mean) / std`` to what it reads, with the
arithmetic of the eager path, so both give identical batches.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, replace

import numpy as np

from gnnddm.data.coarsen import coarsen_grid
from gnnddm.errors import DataError

#: what ``data.lazy: auto`` compares the eager arrays (fields float32 + mask + normalised copy) against
DEFAULT_EAGER_MAX_GB = 2.0
#: bytes per entry an eager load holds at its peak: the fields read (4), their mask (1), the normalised
#: copy made from them (4)
EAGER_BYTES_PER_ENTRY = 9


def eager_bytes(steps: int, nodes: int, variables: int) -> int:
    """Peak bytes of loading ``steps x nodes x variables`` entries eagerly (see :data:`EAGER_BYTES_PER_ENTRY`)."""
    return int(steps) * int(nodes) * int(variables) * EAGER_BYTES_PER_ENTRY


def available_memory() -> int | None:
    """Bytes the kernel can still give this process (``MemAvailable``; None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def choose_lazy(lazy, source: str, steps: int, nodes: int, variables: int, eager_max_gb: float) -> tuple[bool, str]:
    """Whether to read ``source`` lazily, and why (reported in the run's summary).

    ``lazy`` is ``"auto"``, True or False. An eager load that would not fit in the memory available is one
    :class:`DataError` naming the file, its size and the lazy option, never the out-of-memory killer.
    """
    need = eager_bytes(steps, nodes, variables)
    gb = need / 1e9
    if lazy == "auto":
        if gb > float(eager_max_gb):
            return True, f"lazy: {gb:.2f} GB eager > data.eager_max_gb={float(eager_max_gb):g}"
        return False, f"eager: {gb:.2f} GB <= data.eager_max_gb={float(eager_max_gb):g}"
    if lazy:
        return True, "lazy: data.lazy=true"
    free = available_memory()
    if free is not None and need > 0.9 * free:
        raise DataError(
            f"{source}: loading {steps} steps x {nodes} nodes x {variables} variables into memory needs about "
            f"{gb:.1f} GB, more than the {free / 1e9:.1f} GB available; read it lazily with data.lazy=true "
            "(or data.lazy=auto), or select fewer steps with data.time")
    return False, f"eager: data.lazy=false ({gb:.2f} GB)"


@dataclass(frozen=True, eq=False)
class GridReader:
    """The dynamic fields of one gridded file, read on demand.

    Attributes
    ----------
    source : str
        The file (named in every error).
    arrays : tuple of xarray.DataArray
        One per variable, dims ``(time, latitude, longitude)`` in the file's order, lazily indexed.
    names : tuple of str
        The variables (gnnddm names, as ``WeatherGraphData.variables``).
    steps : int64 [T]
        Position in the file's time axis of each time step of the data.
    flip : bool
        The file stores latitude ascending (the data holds it north first).
    coarsen : int
        Block-average factor (:func:`gnnddm.data.coarsen.coarsen_grid`); a coarsened read takes whole steps.
    lat_file, lon_file : float64
        The file's coordinates (for coarsening).
    grid_shape : (nlat, nlon)
        Of the data (after coarsening).
    mean, std : float64 [V] or None
        Applied to what is read once normalised (:meth:`normalised`).
    step_counts : int64 [T, V] or None
        Valid entries of each time step and variable (from the streaming pass), once known.
    """

    source: str
    arrays: tuple
    names: tuple[str, ...]
    steps: np.ndarray
    flip: bool
    coarsen: int
    lat_file: np.ndarray
    lon_file: np.ndarray
    grid_shape: tuple[int, int]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    step_counts: np.ndarray | None = None
    times: np.ndarray | None = None  # datetime64 [T], for messages
    counter: dict | None = None  # shared by the copies: points_read, reads (guarded by _lock)

    def __post_init__(self):
        if self.counter is None:
            object.__setattr__(self, "counter", {"points_read": 0, "reads": 0, "lock": threading.Lock()})

    # ------------------------------------------------------------------ sizes and copies
    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.steps), self.grid_shape[0] * self.grid_shape[1], len(self.names)

    @property
    def points_read(self) -> int:
        """Grid points (time step x latitude x longitude, per variable) read from the file so far."""
        return self.counter["points_read"]

    def points_per_step(self, nodes=None) -> int:
        """Grid points of one variable and time step that a read of ``nodes`` (all when None) takes from the
        file: the latitude rows holding them, whole (all of the grid for a coarsened read)."""
        nlat, nlon = self.grid_shape
        if nodes is None or self.coarsen > 1:
            return self.lat_file.size * self.lon_file.size
        return int(np.unique(np.asarray(nodes) // nlon).size) * nlon

    def select_times(self, index) -> GridReader:
        """The reader of some of the time steps (any numpy index of the time axis)."""
        counts = None if self.step_counts is None else self.step_counts[index]
        times = None if self.times is None else self.times[index]
        return replace(self, steps=np.atleast_1d(self.steps[index]), step_counts=counts, times=times)

    def normalised(self, mean: np.ndarray, std: np.ndarray) -> GridReader:
        return replace(self, mean=np.asarray(mean, np.float64), std=np.asarray(std, np.float64))

    def with_counts(self, counts: np.ndarray) -> GridReader:
        return replace(self, step_counts=np.asarray(counts, np.int64))

    # ------------------------------------------------------------------ reading
    def raw(self, t, nodes=None) -> np.ndarray:
        """float32 [B, n, V] in physical units, NaN where missing: steps ``t`` (int array), ``nodes`` rows."""
        t = np.asarray(t, dtype=np.int64).reshape(-1)
        file_t = self.steps[t]
        uniq, back = np.unique(file_t, return_inverse=True)
        nlat, nlon = self.grid_shape
        partial = nodes is not None and self.coarsen == 1
        if partial:
            nodes = np.asarray(nodes, dtype=np.int64)
            rows = nodes // nlon
            file_rows = (nlat - 1 - rows) if self.flip else rows
            need = np.unique(file_rows)
        else:
            need = np.arange(self.lat_file.size)
        runs = np.split(need, np.nonzero(np.diff(need) != 1)[0] + 1)
        size = uniq.size * need.size * self.lon_file.size * len(self.names) * 4
        free = available_memory()
        if free is not None and size > 0.5 * free:
            raise DataError(
                f"{self.source}: reading {uniq.size} time steps at once needs {size / 1e9:.1f} GB, more than half "
                f"of the {free / 1e9:.1f} GB available; this step cannot work on lazily read data this large "
                "(select fewer steps with data.time)")
        block = np.empty((uniq.size, need.size, self.lon_file.size, len(self.names)), np.float32)
        for j, da in enumerate(self.arrays):
            pos = 0
            for run in runs:
                rows_sel = slice(int(run[0]), int(run[-1]) + 1)
                try:
                    if "time" in da.dims:
                        values = da.isel(time=uniq, latitude=rows_sel).values
                    else:  # a constant field, the same at every step
                        values = da.isel(latitude=rows_sel).values[None]
                except Exception as exc:  # zarr, netCDF4 and the codecs raise many types for a bad chunk
                    raise self._damaged(da, j, uniq, rows_sel, exc) from exc
                block[:, pos:pos + run.size, :, j] = values
                pos += run.size
        with self.counter["lock"]:
            self.counter["points_read"] += block.shape[0] * block.shape[1] * block.shape[2] * block.shape[3]
            self.counter["reads"] += 1
        if partial:
            row_pos = np.searchsorted(need, file_rows)
            out = block[:, row_pos, nodes % nlon]
        else:
            if self.flip:
                block = block[:, ::-1]
            if self.coarsen > 1:
                lat = self.lat_file[::-1] if self.flip else self.lat_file
                block = coarsen_grid(lat, self.lon_file, block, self.coarsen, self.source)[2]
            out = block.reshape(uniq.size, nlat * nlon, len(self.names))
            if nodes is not None:
                out = out[:, np.asarray(nodes, dtype=np.int64)]
        return out if np.array_equal(back, np.arange(back.size)) else out[back]

    def fields(self, t, nodes=None) -> tuple[np.ndarray, np.ndarray]:
        """``(x float32 [B, n, V], mask bool [B, n, V])`` as the eager data holds them: missing entries 0,
        normalised with :attr:`mean` / :attr:`std` once set (the arithmetic of
        :func:`gnnddm.data.normalise.normalise`)."""
        x = self.raw(t, nodes)
        mask = ~np.isnan(x)
        np.nan_to_num(x, copy=False, nan=0.0)
        if self.mean is not None:
            x = np.where(mask, ((x - self.mean) / self.std).astype(np.float32), np.float32(0.0))
        return x, mask

    def _damaged(self, da, j: int, file_steps: np.ndarray, rows: slice, exc: Exception) -> DataError:
        """The error for a read that failed: the first time step that cannot be read alone is named."""
        bad = file_steps[0]
        for step in file_steps:
            try:
                np.asarray(da.isel(time=[step], latitude=rows).values)
            except Exception:
                bad = step
                break
        position = np.nonzero(self.steps == bad)[0]
        when = (str(self.times[position[0]])[:16] if self.times is not None and position.size
                else f"step {int(bad)} of the file")
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return damaged(self.source, self.names[j], when, f"{type(exc).__name__}: {reason}")


def damaged(source: str, variable: str, when: str | None, reason: str, advice: str = "") -> DataError:
    """The error for a chunk of ``variable`` that cannot be read (corrupt, or missing from a zarr store),
    naming the file, the variable and the first time step it holds (``when``; None for a constant field)."""
    at = f" at time {when}" if when is not None else ""
    return DataError(f"{source}: variable {variable!r}{at} cannot be read ({reason}); the file is damaged: "
                     f"copy or write it again{advice}")


def check_chunks(arrays, names, source: str) -> None:
    """One warning with the rechunk advice when variables are stored in chunks of their whole time axis:
    every sample read lazily would decode the whole variable."""
    whole = []
    for da, name in zip(arrays, names, strict=True):
        chunks = da.encoding.get("chunks") or da.encoding.get("chunksizes") or da.encoding.get("preferred_chunks")
        if isinstance(chunks, dict):
            chunks = tuple(chunks.get(d) for d in da.dims)
        if "time" not in da.dims or da.sizes["time"] < 2 or not chunks:
            continue
        along_time = chunks[list(da.dims).index("time")]
        if along_time is not None and along_time >= da.sizes["time"]:
            whole.append(name)
    if whole:
        warnings.warn(
            f"{source}: {', '.join(whole)} stored in chunks of the whole time axis, so each sample read lazily "
            "decodes the whole variable; rechunk to one time step per chunk (xarray: "
            "ds.chunk(time=1).to_zarr(...)) or read it with data.lazy=false", UserWarning, stacklevel=3)


class LazyField:
    """``X`` or ``mask`` of a lazily read data set: shape ``[T, N, V]``; indexing reads the time steps asked for.

    ``field[t]`` and ``field[t, ...]`` (``t`` an integer, slice, index array or boolean mask of time
    steps) return numpy arrays; making the whole array (``np.asarray``) raises a :class:`DataError`.
    """

    def __init__(self, reader: GridReader, which: str):
        self.reader, self.which = reader, which
        self.dtype = np.dtype(np.float32 if which == "X" else bool)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.reader.shape

    ndim = 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        steps = np.arange(self.shape[0])[first]
        x, mask = self.reader.fields(np.atleast_1d(steps))
        out = x if self.which == "X" else mask
        if first is Ellipsis:
            return out[key]
        if np.ndim(steps) == 0:
            out = out[0]
            return out[rest] if rest else out
        return out[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        t, n, v = self.shape
        raise DataError(
            f"{self.reader.source}: the fields are read lazily ({t} steps x {n} nodes x {v} variables, "
            f"{eager_bytes(t, n, v) / 1e9:.1f} GB eager) and this step needs them all in memory; load them "
            "eagerly with data.lazy=false if they fit, or select fewer steps with data.time")

    def __repr__(self) -> str:
        return f"LazyField({self.which}, shape={self.shape}, source={self.reader.source!r})"
