"""Regular latitude-longitude grids (ERA5, WeatherBench2, synthetic) -> :class:`WeatherGraphData`.

One loader reads every common spelling of a gridded reanalysis file:

========================  =====================================================================
layout                    recognised by
========================  =====================================================================
``cds``                   the CDS netCDF since 2024: ``valid_time``, ``pressure_level``, ``number``,
                          ``expver``; CDS short names (``t2m``, ``t``)
``cds-legacy``            older CDS files: ``time``, ``level``, short names
``synthetic``             files of :mod:`gnnddm.data.synthetic` (CDS legacy spelling, ``generator`` attribute)
``weatherbench2``         WeatherBench2 / ARCO-ERA5 zarr or netCDF: long names (``2m_temperature``)
``grib``                  GRIB read through cfgrib (``isobaricInhPa``, ``step``)
``cf``                    anything else with latitude/longitude (``lat``/``lon``) coordinates
========================  =====================================================================

Conventions of the result (shared with every other grid consumer): latitude is stored north first
(descending), longitude in the file's order with ``lon`` wrapped to [-180, 180); node id =
``i_lat * nlon + i_lon``; ``grid_shape = (nlat, nlon)``; pressure levels in hPa; a pressure-level
variable becomes one variable per level (``t_850``). Dynamic fields stay in physical units; NaN
entries become 0 with ``mask`` False.

What would otherwise pass silently is an error naming the file and the variable: time stamps repeated
or out of order (:func:`gnnddm.data.times.check_increasing`), a latitude outside [-90, 90] or a longitude
outside [-180, 360], and a chunk that a zarr store lacks (:mod:`gnnddm.data.chunks`; with
``on_missing_chunk="gap"`` missing values and one warning instead).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from gnnddm.data import names
from gnnddm.data.chunks import ChunkRead, check_missing_chunks
from gnnddm.data.coarsen import cell_areas, coarsen_grid
from gnnddm.data.lazy import DEFAULT_EAGER_MAX_GB, GridReader, LazyField, check_chunks, choose_lazy
from gnnddm.data.plausibility import require_on_sphere
from gnnddm.data.samples import resolve_path
from gnnddm.data.times import check_increasing, time_index
from gnnddm.data.weather_graph import WeatherGraphData, static_position_features, wrap_lon
from gnnddm.errors import DataError
from gnnddm.schema.data import GridDataConfig
from gnnddm.schema.fields import check_args

GRIB_SUFFIXES = (".grib", ".grb", ".grib2", ".grb2")
EXPECTED = "a netCDF, zarr or GRIB file with latitude/longitude coordinates (latitude/lat, longitude/lon)"

# Accepted spellings of each dimension, in order of preference.
_TIME = ("valid_time", "time")
_LEVEL = ("pressure_level", "level", "isobaricInhPa", "plev")
_LAT = ("latitude", "lat")
_LON = ("longitude", "lon")
_GRAVITY = 9.80665


def load_grid(path, variables=None, levels=None, time=None, member=None, coarsen=1, engine=None, lazy="auto",
              eager_max_gb=DEFAULT_EAGER_MAX_GB, on_missing_chunk="error"):
    """Read a gridded file into a ``WeatherGraphData`` of kind ``"grid"``.

    Parameters
    ----------
    path : str or Path
        netCDF file, zarr store (v2 or v3, a directory), GRIB file (needs ``pip install gnnddm[grib]``),
        or ``"sample:NAME"`` for a file shipped in the repository's ``data/`` folder.
    variables : list of str, optional
        Short (``t2m``, ``t_850``) or long (``2m_temperature``, ``temperature_850``) names; a pressure-level
        name without a level (``t``) takes every selected level. Default: every dynamic variable.
    levels : list of float, optional
        Pressure levels in hPa (whatever the file stores, Pa or hPa). Default: all.
    time : None, [start, end] or a date string, optional
        Inclusive date range (either end may be null; an end given as a day includes that whole day), or
        one period such as ``"2020-01"`` (:mod:`gnnddm.data.times`).
    member : int, optional
        Ensemble member (the ``number`` coordinate); default the first one, with a note.
    coarsen : int
        Block-average factor in both directions (area weighted; see :func:`gnnddm.data.coarsen.coarsen_grid`).
    engine : str, optional
        xarray engine; guessed from the path by default (``zarr`` for directories, ``cfgrib`` for GRIB).
    lazy : "auto", bool
        Keep the fields in the file and read them a batch at a time (:mod:`gnnddm.data.lazy`); ``auto``
        when the eager arrays would need more than ``eager_max_gb`` GB. An eager load that cannot fit in
        the memory available is an error naming this option.
    eager_max_gb : float
        The threshold of ``lazy="auto"``.
    on_missing_chunk : {"error", "gap"}
        A chunk of a zarr store that the read needs and the store lacks: an error naming the variable and
        time step, or missing values with one warning counting them (:mod:`gnnddm.data.chunks`).

    Raises
    ------
    DataError
        Besides an unreadable file or unknown names: time stamps repeated or out of order, a latitude
        outside [-90, 90] or a longitude outside [-180, 360], a missing chunk (see ``on_missing_chunk``).

    Returns
    -------
    WeatherGraphData
        ``X [T, nlat*nlon, V]`` float32 in physical units (a :class:`~gnnddm.data.lazy.LazyField` when
        lazy), cos-latitude area weights with mean 1, static features sin/cos lat/lon plus
        ``orography_km`` and ``lsm`` when the file holds them.
    """
    check_args(GridDataConfig, "data", coarsen=coarsen, lazy=lazy, eager_max_gb=eager_max_gb,
               on_missing_chunk=on_missing_chunk)
    p = resolve_path(path)
    ds, engine = open_dataset(p, engine)
    try:
        data = _read(ds, str(p), engine, variables, levels, time, member, coarsen, lazy, eager_max_gb,
                     on_missing_chunk)
    except BaseException:
        ds.close()
        raise
    if not data.lazy:
        ds.close()  # a lazy reader keeps the file open
    return data


def open_dataset(path: Path, engine: str | None = None) -> tuple[xr.Dataset, str]:
    """Open ``path`` lazily with the right xarray engine; one :class:`DataError` if it cannot be read."""
    path = Path(path)
    if engine is None:
        if path.is_dir() or path.suffix == ".zarr":
            engine = "zarr"
        elif path.suffix.lower() in GRIB_SUFFIXES:
            engine = "cfgrib"
    if engine == "cfgrib" and importlib.util.find_spec("cfgrib") is None:
        raise DataError(f"{path}: reading GRIB needs cfgrib and eccodes; install them with "
                        "`pip install gnnddm[grib]` (or convert the file to netCDF)")
    check_file(path, EXPECTED)
    try:
        if engine == "zarr":
            with warnings.catch_warnings():  # stores without consolidated metadata are fine
                warnings.filterwarnings("ignore", message=".*consolidated metadata", category=RuntimeWarning)
                ds = xr.open_zarr(path, chunks=None)
        elif engine == "cfgrib":
            # indexpath="": cfgrib keeps its message index in memory instead of writing a .idx file beside
            # the data (which fails in a read-only folder and litters shared ones)
            ds = xr.open_dataset(path, engine="cfgrib", chunks=None, backend_kwargs={"indexpath": ""})
        else:
            ds = xr.open_dataset(path, engine=engine, chunks=None)
    except Exception as exc:  # netCDF4, zarr and cfgrib raise many unrelated types for bad files
        raise DataError(f"{path}: cannot be read ({_first_line(exc)}); expected {EXPECTED}") from exc
    return ds, engine or "netcdf"


def check_file(path: Path, expected: str) -> None:
    """One :class:`DataError` for an empty file or a truncated netCDF-3 file.

    Both would otherwise surface later as misleading errors: a backend list for the empty file, and for
    the truncated one zeros read past its end ("latitude is not monotonic").
    """
    path = Path(path)
    if not path.is_file():
        return
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); expected {expected}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:3] == b"CDF" and magic[3:] in (b"\x01", b"\x02", b"\x05"):
        from scipy.io import netcdf_file

        try:  # mapping every variable fails when the file ends before the data its header declares
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nc = netcdf_file(path, mode="r", mmap=True)
                shapes = [v.data.shape for v in nc.variables.values()]
                del shapes
                nc.close()
        except Exception as exc:  # scipy raises ValueError / TypeError / OSError for broken files
            raise DataError(f"{path}: truncated or corrupt netCDF-3 file ({_first_line(exc)}); its header "
                            f"declares more data than the file holds: copy or download it again") from exc


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (xarray's "no backend" message lists every backend)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def detect_layout(ds: xr.Dataset, engine: str = "") -> str:
    """Name the file layout (see the module table) from its coordinate and variable names."""
    if engine == "cfgrib":
        return "grib"
    if str(ds.attrs.get("generator", "")).startswith("gnnddm.data.synthetic"):
        return "synthetic"
    if "valid_time" in ds.variables or "pressure_level" in ds.variables:
        return "cds"
    data_names = [str(v) for v in ds.data_vars]
    known = [names.lookup(v) for v in data_names]
    if any(e is not None and e.long == v for e, v in zip(known, data_names, strict=True)):
        return "weatherbench2"
    if "latitude" in ds.variables and any(e is not None and e.short == v
                                          for e, v in zip(known, data_names, strict=True)):
        return "cds-legacy"
    return "cf"


def standardise(ds: xr.Dataset, source: str, member=None, notes: list | None = None) -> xr.Dataset:
    """Rename coordinates to ``time, level, latitude, longitude``; select the ensemble member; merge expver.

    ``expver`` (ERA5 vs ERA5T) is combined by taking, for each entry, the first non-NaN value along it.
    """
    notes = notes if notes is not None else []
    if "valid_time" in ds.coords and ds["valid_time"].ndim >= 1:
        ds = _valid_time_axis(ds, source, notes)
    if "step" in ds.dims and ds.sizes["step"] == 1:
        ds = ds.squeeze("step")
    ds = _rename_first(ds, _TIME, "time")
    ds = _rename_first(ds, _LEVEL, "level")
    ds = _rename_first(ds, _LAT, "latitude")
    ds = _rename_first(ds, _LON, "longitude")
    if "time" in ds.coords and "time" not in ds.dims:
        ds = ds.expand_dims("time")

    if "number" in ds.dims:
        values = [int(v) for v in ds["number"].values]
        if member is None:
            if len(values) > 1:
                notes.append(f"{source}: {len(values)} ensemble members (number = {values}); using "
                             f"member {values[0]} (set data.member to choose)")
            ds = ds.isel(number=0)
        elif int(member) in values:
            ds = ds.sel(number=int(member))
        else:
            raise DataError(f"{source}: ensemble member {member} not in the file; members: {values}")
    elif member is not None and "number" in ds.coords and int(ds["number"]) != int(member):
        raise DataError(f"{source}: ensemble member {member} not in the file; members: [{int(ds['number'])}]")
    if "expver" in ds.dims:
        merged = ds.isel(expver=0, drop=True)
        for i in range(1, ds.sizes["expver"]):
            merged = merged.fillna(ds.isel(expver=i, drop=True))
        ds = merged
    return ds.drop_vars([c for c in ("number", "expver", "step") if c in ds.coords])


def _valid_time_axis(ds: xr.Dataset, source: str, notes: list) -> xr.Dataset:
    """Index the data by ``valid_time`` alone, whatever forecast dimensions it spans (``time`` / ``step``, or
    ``init_time`` / ``lead_time`` as ``gnnddm predict`` writes them).

    cfgrib opens a forecast file with dimensions ``time`` (reference time) and ``step`` (lead) and a
    ``valid_time`` coordinate on both; the CDS netCDF has ``valid_time`` as its own dimension. The
    reference-time × step pairs become one axis of valid times, sorted; where several forecasts reach
    the same valid time, the one with the shortest step is kept (with a note).
    """
    vt = ds["valid_time"]
    if vt.dims == ("valid_time",):
        return ds
    # gnnddm's own forecast files (gnnddm.data.forecast_file) name them init_time and lead_time
    ds = ds.rename({old: new for old, new in (("init_time", "time"), ("lead_time", "step")) if old in ds.dims})
    vt = ds["valid_time"]
    spans = [d for d in vt.dims if d in ("time", "step")]
    if len(spans) != vt.ndim:
        raise DataError(f"{source}: valid_time spans dimensions {vt.dims}; expected time and/or step")
    stale = [c for c in ("time", "step") if c in ds.coords and c not in spans]
    ds = ds.drop_vars(stale)
    if len(spans) == 1:
        return ds.swap_dims({spans[0]: "valid_time"}).drop_vars(spans[0])
    flat = ds.stack(_forecast=spans)
    steps = flat["step"].values if "step" in flat.coords else np.zeros(flat.sizes["_forecast"])
    valid = flat["valid_time"].values
    order = np.lexsort((steps, valid))  # by valid time, the shortest step first
    keep = order[np.concatenate([[True], valid[order][1:] != valid[order][:-1]])]
    if len(keep) < len(valid):
        notes.append(f"{source}: {len(valid) - len(keep)} forecast fields repeat a valid time of another; "
                     "kept the one with the shortest step")
    flat = flat.isel(_forecast=keep).drop_vars(["_forecast", *spans])
    return flat.swap_dims(_forecast="valid_time")


def _rename_first(ds: xr.Dataset, spellings, target: str) -> xr.Dataset:
    for name in spellings:
        if name in ds.variables or name in ds.dims:
            if name == target:
                return ds
            drop = [target] if target in ds.variables and target not in ds.dims else []
            return ds.drop_vars(drop).rename({name: target})
    return ds


def _read(ds, source, engine, variables, levels, time, member, coarsen, lazy="auto",
          eager_max_gb=DEFAULT_EAGER_MAX_GB, on_missing_chunk="error") -> WeatherGraphData:
    coarsen = int(coarsen)
    layout = detect_layout(ds, engine)
    notes: list[str] = []
    stored = ds  # as the file names and orders it, for the chunks of a zarr store
    spelled = {c: next((n for n in spellings if n in ds.variables or n in ds.dims), c)
               for c, spellings in (("time", _TIME), ("latitude", _LAT), ("longitude", _LON))}
    ds = standardise(ds, source, member, notes)
    for c in ("latitude", "longitude"):
        if c not in ds.coords or ds[c].ndim != 1:
            raise DataError(f"{source}: no 1-D {c} coordinate (found dims {dict(ds.sizes)}, coords "
                            f"{sorted(map(str, ds.coords))}); expected {EXPECTED}")
    if "time" not in ds.dims:
        raise DataError(f"{source}: no time coordinate (valid_time or time); dims are {dict(ds.sizes)}")
    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    lon = np.asarray(ds["longitude"].values, dtype=np.float64)
    require_on_sphere(lat, lon, source, (spelled["latitude"], spelled["longitude"]))
    if lat.size > 1 and not (np.all(np.diff(lat) < 0) or np.all(np.diff(lat) > 0)):
        raise DataError(f"{source}: latitude is not monotonic; expected a regular latitude/longitude grid")
    times = _times(ds, source)
    check_increasing(times, source, spelled["time"])
    tsel = select_times(times, time, source)

    level_hpa = _levels_hpa(ds)
    dynamic, static = _split_variables(ds)
    wanted = _select_variables(ds, source, dynamic, level_hpa, variables, levels)

    flip = lat.size > 1 and lat[0] < lat[-1]
    arrays, var_names, units = [], [], []
    for fname, lev in wanted:
        da = ds[fname]
        if lev is not None:
            da = da.isel(level=int(np.argmin(np.abs(level_hpa - lev))))
        arrays.append(_grid_array(da, source))
        base = names.canonical(fname)
        var_names.append(base if lev is None else f"{base}_{lev:g}")
        entry = names.lookup(fname)
        units.append(str(da.attrs.get("units", entry.units if entry else "")))
    lat_file, nlat, nlon = lat, lat.size, lon.size

    static_fields, static_names = [], []
    for fname in static:
        field = _field(ds[fname], source, slice(0, 1))[0]
        if names.canonical(fname) in ("z", "z_sfc"):
            static_fields.append(field / _GRAVITY / 1000.0)
            static_names.append("orography_km")
        else:
            static_fields.append(field)
            static_names.append("lsm")
    S = np.stack(static_fields, axis=-1)[None] if static_fields else np.zeros((1, nlat, nlon, 0), np.float32)

    if flip:
        lat, S = lat[::-1], S[:, ::-1]
    lon_file = lon
    if coarsen > 1:
        S = coarsen_grid(lat, lon, S, coarsen, source)[2]
        lat, lon = coarsen_grid(lat, lon, np.zeros((0, lat.size, lon.size, 0), np.float32), coarsen, source)[:2]
    nlat, nlon = lat.size, lon.size

    if engine == "zarr":
        reads = _chunk_reads(stored, wanted, var_names, static, np.arange(times.size)[tsel], spelled["time"],
                             level_hpa)
        notes.extend(check_missing_chunks(Path(source), reads, times, source, on_missing_chunk))
    reader = GridReader(source, tuple(arrays), tuple(var_names), np.arange(times.size)[tsel], flip, coarsen,
                        lat_file, lon_file, (nlat, nlon), times=times[tsel])
    steps = reader.shape[0]
    is_lazy, how = choose_lazy(lazy, source, steps, nlat * nlon, len(var_names), eager_max_gb)
    notes_lazy = [how]
    if is_lazy:
        check_chunks(arrays, var_names, source)
        X, mask = LazyField(reader, "X"), LazyField(reader, "mask")
    else:
        X = reader.raw(np.arange(steps))
        mask = ~np.isnan(X)
        X = np.nan_to_num(X, copy=False, nan=0.0)  # in place: X is our own array
    lat2 = np.repeat(lat, nlon)
    lon2 = np.tile(wrap_lon(lon), nlat)
    area = np.repeat(cell_areas(lat), nlon)
    area = area / area.mean()
    pos, pos_names = static_position_features(lat2, lon2)
    S = np.nan_to_num(S.reshape(nlat * nlon, -1)).astype(np.float32)
    for msg in notes:
        warnings.warn(msg, UserWarning, stacklevel=3)
    return WeatherGraphData(
        kind="grid", lat=lat2, lon=lon2, area=area, X=X, mask=mask, times=times[tsel],
        variables=tuple(var_names), units=tuple(units),
        static=np.concatenate([pos, S], axis=1), static_names=pos_names + tuple(static_names),
        grid_shape=(nlat, nlon), source=source, layout=layout, warnings=tuple(notes), reading=notes_lazy[0],
    )


def _chunk_reads(stored: xr.Dataset, wanted, var_names, static, steps: np.ndarray, time_name: str,
                 level_hpa) -> list[ChunkRead]:
    """What the load reads of each zarr array: the selected time steps and level of each dynamic variable,
    the file's first step of each constant field, every position along the other axes (ensemble members,
    ``expver``: all of them are checked)."""
    arrays = [(f, lev, name, False) for (f, lev), name in zip(wanted, var_names, strict=True)]
    arrays += [(f, None, f, True) for f in static]
    reads = []
    for fname, lev, label, first_only in arrays:
        dims = stored[fname].dims
        positions = []
        for d in dims:
            if d == time_name:
                positions.append(np.array([0]) if first_only else steps)  # as _field reads it
            elif d in _LEVEL and lev is not None:
                positions.append(np.array([int(np.argmin(np.abs(level_hpa - lev)))]))
            else:
                positions.append(None)
        time_axis = dims.index(time_name) if time_name in dims and not first_only else None
        reads.append(ChunkRead(str(fname), label, tuple(positions), time_axis))
    return reads


def _times(ds: xr.Dataset, source: str) -> np.ndarray:
    values = ds["time"].values
    if not np.issubdtype(values.dtype, np.datetime64):
        try:
            values = np.array([np.datetime64(str(v)) for v in values])
        except Exception as exc:
            raise DataError(f"{source}: time values cannot be read as dates ({values[:3]} ...)") from exc
    return values.astype("datetime64[ns]")


def select_times(times: np.ndarray, time, source: str):
    """Indices (a slice when contiguous) of the time steps inside ``time`` (:mod:`gnnddm.data.times`)."""
    if time is None:
        return slice(0, len(times))
    idx = time_index(times, time, source)
    if np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _levels_hpa(ds: xr.Dataset) -> np.ndarray | None:
    if "level" not in ds.coords:
        return None
    lev = np.atleast_1d(np.asarray(ds["level"].values, dtype=np.float64))
    units = str(ds["level"].attrs.get("units", "")).strip().lower()
    if units == "pa" or (units not in ("hpa", "mbar", "millibars", "mb") and lev.max() > 1100.0):
        lev = lev / 100.0
    return lev


def _split_variables(ds: xr.Dataset) -> tuple[list[str], list[str]]:
    """Grid variables of the file: dynamic ones, and static ones (land-sea mask, surface geopotential)."""
    dynamic, static = [], []
    for name, da in ds.data_vars.items():
        if "latitude" not in da.dims or "longitude" not in da.dims:
            continue
        short = names.canonical(str(name))
        if short in names.STATIC_SHORT or (short == "z" and "level" not in da.dims):
            static.append(str(name))
        else:
            dynamic.append(str(name))
    return dynamic, static


def _select_variables(ds, source, dynamic, level_hpa, variables, levels) -> list[tuple[str, float | None]]:
    """(file variable, level in hPa or None) for each requested gnnddm variable, in request order."""
    if levels is not None:
        levels = [float(v) for v in levels]
        if level_hpa is None:
            raise DataError(f"{source}: data.levels = {levels} but the file has no pressure levels")
        missing = [v for v in levels if not np.any(np.isclose(level_hpa, v))]
        if missing:
            raise DataError(f"{source}: pressure levels {missing} hPa not in the file; "
                            f"available: {[float(f'{v:g}') for v in level_hpa]}")
    chosen = levels if levels is not None else (list(level_hpa) if level_hpa is not None else [])
    per_level = {n: chosen for n in dynamic if "level" in ds[n].dims}
    if isinstance(variables, str):
        variables = [variables]
    requests = list(variables) if variables is not None else list(dynamic)
    out: list[tuple[str, float | None]] = []
    for req in requests:
        hit = names.match_variable(str(req), dynamic)
        has_level = hit is not None and "level" in ds[hit[0]].dims
        if hit is None or (hit[1] is not None and not has_level) or (
            hit[1] is not None and not np.any(np.isclose(level_hpa, hit[1]))
        ):
            avail = names.describe(dynamic, {n: list(level_hpa) for n in per_level})
            raise DataError(f"{source}: variable {req!r} not found; available: {avail}")
        if not has_level:
            out.append((hit[0], None))
        else:
            out.extend((hit[0], float(v)) for v in ([hit[1]] if hit[1] is not None else chosen))
    return list(dict.fromkeys(out))


def _grid_array(da: xr.DataArray, source: str) -> xr.DataArray:
    """``da`` with dims ``(time, latitude, longitude)`` (or without time for a constant field), still lazy."""
    for d in [d for d in da.dims if d not in ("time", "latitude", "longitude")]:
        if da.sizes[d] != 1:
            raise DataError(f"{source}: variable {da.name!r} has an extra dimension {d!r} of size {da.sizes[d]}; "
                            "expected (time, [level,] latitude, longitude)")
        da = da.isel({d: 0})
    order = [d for d in ("time", "latitude", "longitude") if d in da.dims]
    return da.transpose(*order)


def _field(da: xr.DataArray, source: str, tsel) -> np.ndarray:
    """float32 [T, nlat, nlon] of one variable (constant fields broadcast over the selected times)."""
    extra = [d for d in da.dims if d not in ("time", "latitude", "longitude")]
    for d in extra:
        if da.sizes[d] != 1:
            raise DataError(f"{source}: variable {da.name!r} has an extra dimension {d!r} of size {da.sizes[d]}; "
                            "expected (time, [level,] latitude, longitude)")
        da = da.isel({d: 0})
    if "time" in da.dims:
        da = da.transpose("time", "latitude", "longitude").isel(time=tsel)
        return np.asarray(da.values, dtype=np.float32)
    values = np.asarray(da.transpose("latitude", "longitude").values, dtype=np.float32)
    return np.broadcast_to(values, (_count(tsel), *values.shape))


def _count(tsel) -> int:
    return tsel.stop - tsel.start if isinstance(tsel, slice) else len(tsel)
