"""Station networks: point observations at fixed sites, read from CSV tables or CF netCDF.

Three layouts are read (``layout`` of the result):

``stations-long-csv``
    One row per (station, time): a station column (``station``, ``station_id``, ``code``, ``id``, ...),
    a time column (``time``, ``date``, ``datetime``, ``valid_time``, ... or ``year, month, day[, hour]``),
    optionally ``lat``/``lon``/``elevation`` per row, and one column per variable (a unit may be written
    in the header: ``t2m [K]``). Positions come from the rows or from a station table.
``stations-wide-csv``
    One column per station code plus date columns; the table holds a single variable (default name
    ``wind_speed``). Positions come from a station table (``code, name, latitude, longitude[,
    elevation]``) passed as ``stations_path`` or found as ``stations.csv`` next to the file.
``cf-timeseries``
    CF discrete sampling geometry netCDF with ``featureType = "timeSeries"`` in the orthogonal
    multidimensional representation: dims ``(station, time)`` or ``(time, station)``, ``lat``/``lon``
    per station, station ids in the variable with ``cf_role = "timeseries_id"``.

Missing entries (empty cells, NaN, ``NA``/``n/a``, ``_FillValue``/``missing_value``) get ``mask = False``
and ``X = 0``; cells that are not numbers (``abc``) are missing too, counted per column in the load's
warning with examples. Physically impossible values are masked by :mod:`gnnddm.data.plausibility`
(recognised by name or CF ``standard_name``) and stations without coordinates (a code the station table
lacks) dropped, with one warning per load that counts both. A coordinate off the sphere (latitude 123) is
an error naming its file, column and station; so is a time stamp that comes twice for a station (the
rows of a table may come in any order; a netCDF time axis must increase). Station areas are all 1.

CSV dialect: the separator (``,`` ``;`` tab ``|``) is the one the header line uses most, and the decimal
mark is a comma when the separator is not and the values are written ``12,5``; ``sep`` and ``decimal``
set them. A station whose coordinates differ between rows (or between rows of the station table) is an
error listing the stations, unless ``position_conflicts="first"`` takes the first position of each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from gnnddm.data import plausibility
from gnnddm.data.samples import resolve_path
from gnnddm.data.times import check_increasing, time_index
from gnnddm.data.weather_graph import WeatherGraphData, static_position_features, wrap_lon
from gnnddm.errors import ConfigError, DataError
from gnnddm.schema.data import StationsDataConfig
from gnnddm.schema.fields import check_args

STATION_COLS = ("station", "station_id", "stationid", "station_code", "code", "id", "site", "site_id",
                "stid", "wmo", "wmo_id", "station_name")
TIME_COLS = ("time", "date", "datetime", "valid_time", "timestamp", "date_time", "obs_time", "time_utc")
DATE_PART_COLS = ("year", "month", "day", "hour", "minute")
LAT_COLS = ("lat", "latitude")
LON_COLS = ("lon", "longitude", "long", "lng")
ELEV_COLS = ("elevation", "elev", "altitude", "alt", "height", "station_elevation", "hgt")
NAME_COLS = ("name", "station_name", "site_name")
DEFAULT_WIDE_VARIABLE = "wind_speed"
SEPARATORS = (",", ";", "\t", "|")


@dataclass
class _Raw:
    """What a reader found, before selection and checks. ``values`` float64 [T, N, V], NaN = missing."""

    codes: list[str]
    lat: np.ndarray
    lon: np.ndarray
    elevation: np.ndarray | None
    times: np.ndarray
    values: np.ndarray
    variables: list[str]
    units: list[str]
    layout: str
    notes: list[str] = field(default_factory=list)
    standard_names: list[str] | None = None
    positions_from: tuple[str, str, str] = ("", "latitude", "longitude")  # file, latitude and longitude names


def load_stations(
    path,
    stations_path=None,
    variables: Sequence[str] | None = None,
    time=None,
    station_col: str | None = None,
    time_col: str | None = None,
    units=None,
    sep: str | None = None,
    decimal: str | None = None,
    position_conflicts: str = "error",
) -> WeatherGraphData:
    """Read a station network into a :class:`WeatherGraphData` (``kind="stations"``, physical units).

    Parameters
    ----------
    path : str or Path
        CSV (long or wide) or CF ``timeSeries`` netCDF file; ``sample:NAME`` names a shipped file.
    stations_path : str or Path, optional
        Station table (code, latitude, longitude[, elevation]) for wide tables and for long tables
        without positions; default ``stations.csv`` in the same folder.
    variables : list of str, optional
        Variables to keep (default all); for a wide table, the name of its single variable.
    time : None, [start, end] or a date string
        Inclusive date range (either end may be null), or one period such as ``"1961"`` or ``"1961-01"``
        (:mod:`gnnddm.data.times`).
    station_col, time_col : str, optional
        Column names when the automatic detection does not find them (CSV only).
    units : str, list or dict, optional
        Units overriding what the file says (a string for a single variable, a list per variable or a
        mapping name -> unit).
    sep, decimal : str, optional
        CSV field separator and decimal mark (default: detected, see the module docstring).
    position_conflicts : {"error", "first"}
        A station with several different positions (in the rows or the station table): an error listing
        them, or the first position of each (with a warning).

    Raises
    ------
    DataError
        Missing or unreadable file, unknown variables (the message lists the available ones), a time
        selection without any time step, no station with valid coordinates.
    """
    p = resolve_path(path)
    check_args(StationsDataConfig, "data", position_conflicts=position_conflicts)
    dialect = _Dialect(sep, decimal, position_conflicts)
    if p.suffix.lower() in (".nc", ".nc4", ".cdf", ".netcdf", ".h5"):
        raw = _read_cf(p, variables)
    else:
        raw = _read_csv(p, stations_path, variables, station_col, time_col, dialect)
    raw.units = _resolve_units(units, raw.variables, raw.units)

    keep_t = time_index(raw.times, time, p.name)
    times, values = raw.times[keep_t], raw.values[keep_t]

    source, lat_name, lon_name = raw.positions_from
    plausibility.require_on_sphere(raw.lat, raw.lon, source or str(p), (lat_name, lon_name), raw.codes, "station")
    valid_pos = plausibility.check_coordinates(raw.lat, raw.lon)
    dropped = [c for c, ok in zip(raw.codes, valid_pos, strict=True) if not ok]
    if not valid_pos.any():
        raise DataError(f"{p}: no station has valid coordinates (lat in [-90, 90], lon in [-180, 360])")
    sel = np.nonzero(valid_pos)[0]
    values = values[:, sel]
    mask, n_masked = plausibility.check_values(values, np.isfinite(values), raw.variables, raw.units,
                                               raw.standard_names)
    messages = plausibility.report(p.name, raw.variables, n_masked, dropped, "station", raw.notes)

    lat = raw.lat[sel].astype(np.float64)
    lon = wrap_lon(raw.lon[sel])
    X = np.where(mask, values, 0.0).astype(np.float32)
    static, static_names = static_position_features(lat, lon)
    if raw.elevation is not None:
        elev = raw.elevation[sel].astype(np.float64)
        elev = np.where(np.isfinite(elev), elev, np.nanmean(elev) if np.isfinite(elev).any() else 0.0)
        static = np.concatenate([static, (elev / 1000.0)[:, None].astype(np.float32)], axis=1)
        static_names = (*static_names, "elevation_km")
    return WeatherGraphData(
        kind="stations",
        lat=lat,
        lon=lon,
        area=np.ones(len(sel)),
        X=X,
        mask=mask,
        times=times.astype("datetime64[ns]"),
        variables=tuple(raw.variables),
        units=tuple(raw.units),
        static=static,
        static_names=static_names,
        source=str(p),
        layout=raw.layout,
        warnings=messages,
        node_ids=tuple(str(raw.codes[i]) for i in sel),
    )


# ------------------------------------------------------------------------------------------ time
def parse_times(df: pd.DataFrame, time_col: str | None, source: str) -> tuple[np.ndarray, list[str]]:
    """datetime64[ns] per row from a time column or ``year, month, day[, hour, minute]`` columns.

    Returns the times (NaT where unparseable) and the names of the columns used.
    """
    lower = {c.lower(): c for c in df.columns}
    if time_col is not None:
        if time_col not in df.columns:
            raise DataError(f"{source}: data.time_col={time_col!r} is not a column; columns: {list(df.columns)}")
        cols = [time_col]
    elif any(c in lower for c in TIME_COLS):
        cols = [next(lower[c] for c in TIME_COLS if c in lower)]
    elif all(c in lower for c in ("year", "month", "day")):
        cols = [lower[c] for c in DATE_PART_COLS if c in lower]
        parts = df[cols].apply(pd.to_numeric, errors="coerce")
        parts.columns = [c.lower() for c in cols]
        return _naive(pd.to_datetime(parts, errors="coerce")), cols
    else:
        raise DataError(
            f"{source}: no time column found; expected one of {list(TIME_COLS)} or year, month, day "
            f"columns (or set data.time_col); columns: {list(df.columns)}"
        )
    col = df[cols[0]]
    if pd.api.types.is_numeric_dtype(col) and col.notna().any():
        v = col.dropna().astype(np.int64)
        if (v >= 1e7).all() and (v < 1e8).all():
            return _naive(pd.to_datetime(col.astype("Int64").astype(str), format="%Y%m%d", errors="coerce")), cols
        if (v >= 1e9).all() and (v < 1e10).all():
            return _naive(pd.to_datetime(col.astype("Int64").astype(str), format="%Y%m%d%H", errors="coerce")), cols
        raise DataError(f"{source}: column {cols[0]!r} holds numbers that are not dates (YYYYMMDD[HH])")
    try:
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: cannot parse the dates in column {cols[0]!r} ({exc})") from exc
    return _naive(parsed), cols


def _naive(parsed) -> np.ndarray:
    s = pd.Series(parsed)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[ns]")


# ------------------------------------------------------------------------------------------- CSV
@dataclass(frozen=True)
class _Dialect:
    """How CSV files are read: separator and decimal mark (None: detected), position conflicts."""

    sep: str | None = None
    decimal: str | None = None
    conflicts: str = "error"


def _read_table(p: Path, dialect: _Dialect = _Dialect(), **kw) -> pd.DataFrame:
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes); expected a CSV table with a header line")
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            head = [line for _, line in zip(range(200), f, strict=False)]
        sep = dialect.sep or _detect_sep(p, head)
        decimal = dialect.decimal or _detect_decimal(head[1:], sep)
        if sep == decimal:
            raise DataError(f"{p}: separator and decimal mark are both {sep!r}; set data.sep and data.decimal")
        df = pd.read_csv(p, sep=sep, decimal=decimal, skipinitialspace=True, **kw)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"{p}: cannot read as a CSV table ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); set data.sep or check "
                        "the file") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _detect_sep(p: Path, head: list[str]) -> str:
    """The separator the header line uses most (tab for .tsv / .tab files)."""
    if p.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    header = head[0] if head else ""
    counts = {s: header.count(s) for s in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def _detect_decimal(lines: list[str], sep: str) -> str:
    """``,`` when the separator is not a comma and some fields read like ``12,5``; else ``.``."""
    if sep == ",":
        return "."
    fields = (f for line in lines for f in line.rstrip("\r\n").split(sep))
    return "," if any(_DECIMAL_COMMA.match(f) for f in fields) else "."


def _numeric(df: pd.DataFrame, cols, failures: dict) -> dict[str, pd.Series]:
    """Each column as numbers; cells that are text but not a number are counted in ``failures``
    (column -> (count, examples)) and become missing."""
    out = {}
    for c in cols:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & num.isna()
        if bad.any():
            failures[c] = (int(bad.sum()), list(dict.fromkeys(df[c][bad].astype(str)))[:3])
        out[c] = num
    return out


def _failure_note(failures: dict) -> list[str]:
    """One note for the load's warning: the cells that are not numbers, per column, with examples."""
    if not failures:
        return []
    per = "; ".join(f"{c}: {n} ({', '.join(repr(e) for e in ex)})" for c, (n, ex) in failures.items())
    return [f"read as missing {sum(n for n, _ in failures.values())} cells that are not numbers ({per}); "
            "set data.sep / data.decimal if the file uses another CSV dialect"]


def _to_number(column: pd.Series) -> pd.Series:
    """Numbers from a text column, accepting a decimal comma (``53,1``) as well as a point."""
    text = column.astype("string").str.strip()
    return pd.to_numeric(text.where(~text.str.match(_DECIMAL_COMMA), text.str.replace(",", ".")),
                         errors="coerce").astype(np.float64)


def _conflicts(codes: pd.Series, lat: pd.Series, lon: pd.Series, source, policy: str, notes: list) -> None:
    """A :class:`DataError` listing the stations with more than one position (or a note with ``first``)."""
    pos = pd.DataFrame({"code": codes.to_numpy(), "lat": pd.to_numeric(lat, errors="coerce").round(6).to_numpy(),
                        "lon": pd.to_numeric(lon, errors="coerce").round(6).to_numpy()}).dropna()
    distinct = pos.drop_duplicates().groupby("code", sort=False).size()
    clash = list(distinct[distinct > 1].index)
    if not clash:
        return
    shown = ", ".join(map(str, clash[:10])) + (", ..." if len(clash) > 10 else "")
    if policy == "first":
        notes.append(f"{len(clash)} stations have several positions ({shown}); used the first of each")
        return
    first = pos[pos["code"] == clash[0]].drop_duplicates()
    example = ", ".join(f"({a:g}, {o:g})" for a, o in zip(first["lat"], first["lon"], strict=True))
    raise DataError(f"{source}: {len(clash)} station(s) with conflicting coordinates: {shown} (e.g. {clash[0]} "
                    f"at {example}); fix the file, or set data.position_conflicts=first to use the first "
                    "position of each")


def _find(df: pd.DataFrame, candidates, given: str | None = None) -> str | None:
    if given is not None:
        return given if given in df.columns else None
    lower = {c.lower(): c for c in df.columns}
    return next((lower[c] for c in candidates if c in lower), None)


def _split_unit(header: str) -> tuple[str, str]:
    """``"t2m [K]"`` -> ``("t2m", "K")``; a header without a unit keeps ``""``."""
    m = re.match(r"^(.*?)\s*[\[(]([^\])]*)[\])]\s*$", header)
    return (m.group(1).strip(), m.group(2).strip()) if m else (header, "")


def _read_csv(p, stations_path, variables, station_col, time_col, dialect: _Dialect) -> _Raw:
    df = _read_table(p, dialect)
    scol = _find(df, STATION_COLS, station_col)
    if station_col is not None and scol is None:
        raise DataError(f"{p}: data.station_col={station_col!r} is not a column; columns: {list(df.columns)}")
    times, time_cols = parse_times(df, time_col, str(p))
    notes = []
    if np.isnat(times).any():
        notes.append(f"ignored {int(np.isnat(times).sum())} rows with unreadable dates")
    if scol is not None:
        return _long(p, df, scol, times, time_cols, stations_path, variables, notes, dialect)
    return _wide(p, df, times, time_cols, stations_path, variables, notes, dialect)


def _long(p, df, scol, times, time_cols, stations_path, variables, notes, dialect) -> _Raw:
    latc, lonc, elevc = _find(df, LAT_COLS), _find(df, LON_COLS), _find(df, ELEV_COLS)
    roles = {scol, latc, lonc, elevc, *time_cols, *(c for c in df.columns if c.lower() in NAME_COLS)}
    failures: dict = {}
    candidates = [c for c in df.columns if c not in roles and c.lower() not in DATE_PART_COLS]
    numbers = _numeric(df, candidates, {})
    avail = {c: num for c, num in numbers.items() if num.notna().any() or df[c].isna().all()}
    names = {c: _split_unit(c) for c in avail}
    chosen = _pick_variables(variables, [names[c][0] for c in avail], p)
    cols = [next(c for c in avail if names[c][0] == v) for v in chosen]
    _numeric(df, cols, failures)
    notes.extend(_failure_note(failures))

    ok = ~np.isnat(times) & df[scol].notna().to_numpy()
    codes_all = df[scol].astype(str).str.strip().to_numpy()
    codes = list(pd.unique(codes_all[ok]))
    t_unique = np.unique(times[ok])
    si = pd.Index(codes).get_indexer(codes_all[ok])
    ti = np.searchsorted(t_unique, times[ok])
    dup = pd.Series(si * len(t_unique) + ti).duplicated().to_numpy()
    if dup.any():  # rows may come in any order; a station's time stamp may not come twice
        code = codes[si[np.argmax(dup)]]
        rows = np.nonzero(ok)[0][codes_all[ok] == code]
        order = np.argsort(times[rows], kind="stable")
        check_increasing(times[rows][order], str(p), ", ".join(time_cols), lines=rows[order] + 2,
                         where=f"station {code!r}")
    values = np.full((len(t_unique), len(codes), len(cols)), np.nan)
    values[ti, si] = np.stack([avail[c].to_numpy(dtype=np.float64)[ok] for c in cols], axis=1)

    if stations_path is None and latc is not None and lonc is not None:
        _conflicts(pd.Series(codes_all[ok]), df[latc][ok], df[lonc][ok], p, dialect.conflicts, notes)
        first = df[ok].assign(_code=codes_all[ok]).groupby("_code", sort=False).first()
        lat = pd.to_numeric(first[latc], errors="coerce").reindex(codes).to_numpy(np.float64)
        lon = pd.to_numeric(first[lonc], errors="coerce").reindex(codes).to_numpy(np.float64)
        elev = pd.to_numeric(first[elevc], errors="coerce").reindex(codes).to_numpy(np.float64) if elevc else None
        positions_from = (str(p), latc, lonc)
    else:
        lat, lon, elev, positions_from = _positions(p, stations_path, codes, "a long table without lat/lon columns",
                                                    dialect, notes)
    return _Raw(codes, lat, lon, elev, t_unique, values, chosen, [names[c][1] for c in cols],
                "stations-long-csv", notes, positions_from=positions_from)


def _wide(p, df, times, time_cols, stations_path, variables, notes, dialect) -> _Raw:
    if variables is not None and len(variables) != 1:
        raise DataError(f"{p}: a wide table (one column per station) holds one variable; got {list(variables)}")
    name = variables[0] if variables else DEFAULT_WIDE_VARIABLE
    cols = [c for c in df.columns if c not in time_cols and c.lower() not in DATE_PART_COLS]
    if not cols:
        raise DataError(f"{p}: no station columns besides the date columns {time_cols}")
    ok = ~np.isnat(times)
    failures: dict = {}
    numbers = _numeric(df.loc[ok], cols, failures)
    notes.extend(_failure_note(failures))
    values = np.stack([numbers[c].to_numpy(np.float64) for c in cols], axis=1)
    order = np.argsort(times[ok], kind="stable")  # rows may come in any order; a time stamp may not come twice
    check_increasing(times[ok][order], str(p), ", ".join(time_cols), lines=np.nonzero(ok)[0][order] + 2)
    codes = [str(c).strip() for c in cols]
    lat, lon, elev, positions_from = _positions(p, stations_path, codes, "a wide table (one column per station)",
                                                dialect, notes)
    return _Raw(codes, lat, lon, elev, times[ok][order], values[order][:, :, None], [name], [_unit_from_name(p)],
                "stations-wide-csv", notes, positions_from=positions_from)


def _unit_from_name(p: Path) -> str:
    tokens = set(re.split(r"[^a-z0-9]+", p.stem.lower()))
    for unit, keys in (("knots", {"knots", "knot", "kt", "kts", "kn"}), ("m s-1", {"ms", "mps"}),
                       ("km h-1", {"kmh", "kph"}), ("mph", {"mph"})):
        if tokens & keys:
            return unit
    return ""


def station_positions(path) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude [N] (degrees, float64) of every row of a station table (``sample:`` paths
    allowed): the positions of a station network, e.g. the observation sites of ``task=assimilate``."""
    sp = resolve_path(path)
    table = _read_table(sp, _Dialect(), dtype=str)
    latc, lonc = _find(table, LAT_COLS), _find(table, LON_COLS)
    if latc is None or lonc is None:
        raise DataError(f"{sp}: a station table needs latitude and longitude columns (one of {list(LAT_COLS)} and "
                        f"one of {list(LON_COLS)}); columns: {list(table.columns)}")
    lat, lon = _to_number(table[latc]).to_numpy(np.float64), _to_number(table[lonc]).to_numpy(np.float64)
    keep = np.isfinite(lat) & np.isfinite(lon)
    if not keep.any():
        raise DataError(f"{sp}: no row has a numeric latitude and longitude")
    return lat[keep], lon[keep]


def _positions(p: Path, stations_path, codes, what: str, dialect: _Dialect = _Dialect(), notes=None):
    """lat, lon, elevation [N] of ``codes`` from the station table (NaN for codes it lacks), and the table's
    path, latitude and longitude columns (for messages)."""
    if stations_path is not None:
        sp = resolve_path(stations_path)
    else:
        sp = p.parent / "stations.csv"
        if not sp.exists() or sp.resolve() == p.resolve():
            raise DataError(
                f"{p}: {what} needs a station table with code, latitude, longitude; pass "
                f"data.stations_path or put stations.csv in {p.parent}"
            )
    table = _read_table(sp, _Dialect(dialect.sep, dialect.decimal), dtype=str)
    ccol = _find(table, (*STATION_COLS, "name"))
    latc, lonc, elevc = _find(table, LAT_COLS), _find(table, LON_COLS), _find(table, ELEV_COLS)
    if ccol is None or latc is None or lonc is None:
        raise DataError(
            f"{sp}: a station table needs a code column (one of {list(STATION_COLS)}) and latitude/longitude "
            f"columns; columns: {list(table.columns)}"
        )
    table = table.assign(_code=table[ccol].astype(str).str.strip())
    _conflicts(table["_code"], _to_number(table[latc]), _to_number(table[lonc]), sp, dialect.conflicts,
               notes if notes is not None else [])
    table = table.drop_duplicates("_code").set_index("_code")
    index = table.index.get_indexer(codes)
    if (index < 0).any():  # codes differing only in case
        lower = pd.Index(table.index.str.lower())
        index = np.where(index < 0, lower.get_indexer([c.lower() for c in codes]), index)

    def column(c):
        v = _to_number(table[c]).to_numpy(np.float64)
        return np.where(index >= 0, v[np.maximum(index, 0)], np.nan)

    return column(latc), column(lonc), (column(elevc) if elevc else None), (str(sp), latc, lonc)


# ---------------------------------------------------------------------------------------- netCDF
def _read_cf(p: Path, variables) -> _Raw:
    import xarray as xr

    try:
        ds = xr.open_dataset(p, mask_and_scale=True, decode_times=True)
    except Exception as exc:  # netCDF4/h5py raise many unrelated types for corrupt files
        raise DataError(f"{p}: cannot read as netCDF ({type(exc).__name__}: {exc})") from exc
    with ds:
        from gnnddm.data.mesh import forecast_series

        notes: list[str] = []
        ds = forecast_series(ds, p, notes)  # a forecast file of gnnddm predict as a series of valid times
        attrs = {k.lower(): v for k, v in ds.attrs.items()}
        ftype = str(attrs.get("featuretype", "")).lower()
        id_var = next((v for v in ds.variables if ds[v].attrs.get("cf_role") == "timeseries_id"), None)
        if ftype != "timeseries" and not (ftype == "" and id_var is not None):
            raise DataError(f"{p}: expected a CF featureType='timeSeries' file, found featureType={ftype!r}")
        if any("sample_dimension" in ds[v].attrs or "instance_dimension" in ds[v].attrs for v in ds.variables):
            raise DataError(f"{p}: CF ragged arrays are not supported; store the series as (station, time) arrays")
        lat_v, lon_v = _cf_coord(ds, "latitude", LAT_COLS), _cf_coord(ds, "longitude", LON_COLS)
        time_v = _cf_coord(ds, "time", ("time", "valid_time", "date"))
        if lat_v is None or lon_v is None or time_v is None or ds[time_v].ndim != 1:
            raise DataError(f"{p}: a CF timeSeries file needs 1-D time and per-station lat/lon variables")
        sdim = ds[id_var].dims[0] if id_var is not None else ds[lat_v].dims[0] if ds[lat_v].ndim else None
        tdim = ds[time_v].dims[0]
        if sdim is None or ds[lat_v].dims != (sdim,):
            raise DataError(f"{p}: lat/lon must have the station dimension ({sdim!r})")
        elev_v = _cf_coord(ds, "surface_altitude", ELEV_COLS)
        skip = {lat_v, lon_v, time_v, id_var, elev_v}
        avail = [v for v in ds.data_vars if v not in skip and set(ds[v].dims) == {sdim, tdim}
                 and np.issubdtype(ds[v].dtype, np.number)]
        chosen = _pick_variables(variables, avail, p)
        values = np.stack([ds[v].transpose(tdim, sdim).to_numpy().astype(np.float64) for v in chosen], axis=2)
        n = ds.sizes[sdim]
        codes = [_decode_id(c) for c in ds[id_var].to_numpy()] if id_var is not None else [str(i) for i in range(n)]
        elev = ds[elev_v].to_numpy().astype(np.float64) if elev_v is not None and ds[elev_v].dims == (sdim,) else None
        times = to_datetime64(ds[time_v].to_numpy(), p)
        check_increasing(times, str(p), str(time_v))
        return _Raw(codes, ds[lat_v].to_numpy().astype(np.float64), ds[lon_v].to_numpy().astype(np.float64),
                    elev, times, values, list(chosen), [str(ds[v].attrs.get("units", "")) for v in chosen],
                    "cf-timeseries", notes, standard_names=[str(ds[v].attrs.get("standard_name", "")) for v in chosen],
                    positions_from=(str(p), str(lat_v), str(lon_v)))


def _cf_coord(ds, standard_name: str, names) -> str | None:
    for v in ds.variables:
        if ds[v].attrs.get("standard_name") == standard_name:
            return v
    lower = {str(v).lower(): v for v in ds.variables}
    return next((lower[n] for n in names if n in lower), None)


def _decode_id(c) -> str:
    if isinstance(c, bytes):
        return c.decode("utf-8", "replace").strip()
    if isinstance(c, np.ndarray):  # undecoded char array
        return b"".join(c.astype("S1").tolist()).decode("utf-8", "replace").strip()
    return str(c).strip()


def to_datetime64(values: np.ndarray, source) -> np.ndarray:
    """datetime64[ns] from decoded times (numpy datetimes or cftime objects of any calendar)."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]")
    try:
        return pd.to_datetime([v.isoformat() for v in values.ravel()]).to_numpy("datetime64[ns]")
    except (AttributeError, ValueError) as exc:
        raise DataError(f"{source}: cannot interpret the time values as dates ({exc})") from exc


# ---------------------------------------------------------------------------------- variables, units
def _pick_variables(requested, available: list[str], source) -> list[str]:
    if not available:
        raise DataError(f"{source}: no numeric variable found")
    if requested is None:
        return list(available)
    unknown = [v for v in requested if v not in available]
    if unknown:
        raise DataError(f"{source}: unknown variable(s) {unknown}; available: {available}")
    return list(requested)


def _resolve_units(units, variables: list[str], found: list[str]) -> list[str]:
    if units is None:
        return list(found)
    if isinstance(units, str):
        if len(variables) != 1:
            raise ConfigError(f"data.units: give one unit per variable {variables} (a list or a mapping)")
        return [units]
    if isinstance(units, dict):
        return [str(units.get(v, f)) for v, f in zip(variables, found, strict=True)]
    units = [str(u) for u in units]
    if len(units) != len(variables):
        raise ConfigError(f"data.units: {len(units)} units for {len(variables)} variables {variables}")
    return units
