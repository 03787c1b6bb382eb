"""Unstructured meshes stored as 1-D lists of cells or columns (ICON, CAM-SE, MPAS, HEALPix, FESOM).

Every node is one cell (or column) of the mesh. The cell dimension is recognised by name (``ncells``,
``cell``, ``cells``, ``ncol``, ``npix``, ``nCells``, ``nod2``, ``values``), the centre coordinates by
name or CF ``standard_name``. ICON and MPAS store them in radians: a coordinate is taken as radians when
its ``units`` say so, or when it has no degree units and all latitudes lie within pi/2 and longitudes
within 2 pi. A variable with extra dimensions (depth, level) becomes one variable per level, named
``<var>_<level>`` (``S_10``, ``S_30``); ``levels`` selects them.

When the file gives the cell polygons (``clat_vertices``/``clon_vertices``, ``latVertex``-style
``*_vertices`` bounds, or ``vertex_of_cell``), the mesh's own adjacency is built from shared vertices:
two cells are neighbours when they share an edge (>= 2 vertices; each ICON triangle then has exactly
3 neighbours) or, with ``share="vertex"``, any vertex. It is stored as ``native_edges``. Coordinates of
vertices are matched after rounding their unit vectors, so the poles and the dateline need no special
case. Cell areas come from ``cell_area`` when present, else from the spherical polygons, else ones;
they are scaled to mean 1.

Cells without coordinates (NaN) are dropped with a warning; a coordinate off the sphere (latitude 123,
shown in degrees when the file stores radians) and time stamps repeated or out of order are errors
naming the file, the variable and the first such cell or time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import xarray as xr

from gnnddm.data import plausibility
from gnnddm.data.grid import check_file
from gnnddm.data.samples import resolve_path
from gnnddm.data.times import check_increasing, time_index
from gnnddm.data.weather_graph import WeatherGraphData, static_position_features, wrap_lon
from gnnddm.errors import DataError
from gnnddm.schema.data import MeshDataConfig
from gnnddm.schema.fields import check_args

CELL_DIMS = ("ncells", "ncell", "cell", "cells", "ncol", "npix", "nod2", "values")
LAT_NAMES = ("clat", "lat", "latitude", "latcell", "grid_center_lat", "lat_cell")
LON_NAMES = ("clon", "lon", "longitude", "loncell", "grid_center_lon", "lon_cell")
AREA_NAMES = ("cell_area", "area", "areacell", "cell_area_p", "areacello")
WET_NAMES = ("wet_c", "wet", "wet_mask", "sea_mask")
TIME_NAMES = ("time", "valid_time")
VERTEX_ROUND = 1e-6  # unit-vector rounding step for vertex matching (about 6 m on the Earth)


def load_mesh(path, variables: Sequence[str] | None = None, levels=None, time=None, wet_only: bool = False,
              share: str = "edge") -> WeatherGraphData:
    """Read an unstructured mesh into a :class:`WeatherGraphData` (``kind="mesh"``, physical units).

    Parameters
    ----------
    path : str or Path
        netCDF file; ``sample:NAME`` names a shipped file.
    variables : list of str, optional
        Base names of the variables to keep (``["S"]``); default all on the cell dimension.
    levels : list of float, optional
        Values of the extra (depth/level) coordinate to keep; default all.
    time : None, [start, end] or a date string
        Time selection as in :func:`gnnddm.data.times.time_index`.
    wet_only : bool
        Drop the cells that the wet mask marks as land at every kept level.
    share : {"edge", "vertex"}
        Neighbour rule of ``native_edges``: cells sharing an edge (>= 2 vertices) or any vertex.
    """
    check_args(MeshDataConfig, "data", wet_only=wet_only, share=share)
    p = resolve_path(path)
    check_file(p, "a netCDF file of an unstructured mesh (cell positions on a cell dimension)")
    try:
        ds = xr.open_dataset(p, decode_times=False, mask_and_scale=True)
    except Exception as exc:  # netCDF4/h5py raise many unrelated types for corrupt files
        raise DataError(f"{p}: cannot read as netCDF ({type(exc).__name__}: {exc})") from exc
    with ds:
        notes: list[str] = []
        return _read(forecast_series(ds, p, notes), p, variables, levels, time, wet_only, share, notes)


def forecast_series(ds: xr.Dataset, p: Path, notes: list) -> xr.Dataset:
    """A forecast file of ``gnnddm predict`` on a mesh or station network (dimensions ``init_time``,
    ``lead_time`` and the cells) as a series of valid times, the shortest lead kept where they repeat (as
    the grid loader reads a grid forecast file); any other dataset unchanged."""
    from gnnddm.data.grid import _valid_time_axis

    if "init_time" not in ds.dims or "valid_time" not in ds.variables:
        return ds
    keep = [v for v in ("init_time", "lead_time", "valid_time") if v in ds.variables]
    if np.issubdtype(ds["valid_time"].dtype, np.datetime64):  # opened with its times decoded
        return _valid_time_axis(ds, str(p), notes)
    decoded = xr.decode_cf(ds[keep])
    return _valid_time_axis(ds.assign_coords({v: decoded[v] for v in keep}), str(p), notes)


def _read(ds: xr.Dataset, p: Path, variables, levels, time, wet_only, share, notes=()) -> WeatherGraphData:
    lower_dims = {str(d).lower(): d for d in ds.dims}
    cdim = next((lower_dims[d] for d in CELL_DIMS if d in lower_dims), None)
    if cdim is None:
        raise DataError(f"{p}: no cell dimension (one of {list(CELL_DIMS)}); dims are {dict(ds.sizes)}")
    lat_v = _coord(ds, cdim, "latitude", LAT_NAMES)
    lon_v = _coord(ds, cdim, "longitude", LON_NAMES)
    if lat_v is None or lon_v is None:
        raise DataError(f"{p}: no 1-D latitude/longitude of the cells on dimension {cdim!r}")
    radians = _is_radians(ds[lat_v], ds[lon_v])
    lat, lon = _degrees(ds[lat_v].to_numpy(), radians), _degrees(ds[lon_v].to_numpy(), radians)
    plausibility.require_on_sphere(lat, lon, str(p), (str(lat_v), str(lon_v)), location="cell")

    tvar = next((ds[t] for t in TIME_NAMES if t in ds.variables and ds[t].ndim == 1), None)
    tdim = tvar.dims[0] if tvar is not None else None
    times, time_notes = _decode_times(tvar)
    notes = [*notes, *time_notes]
    if tvar is not None:
        check_increasing(times, str(p), str(tvar.name))
    tsel = time_index(times, time, p.name)

    fields, names, units = _fields(ds, p, cdim, tdim, variables, levels)
    wet = _wet_mask(ds, cdim)
    T, N = len(tsel), ds.sizes[cdim]
    wet_cells = np.zeros(N, dtype=bool)  # wet at some kept level
    values = np.empty((T, N, len(fields)))
    mask = np.empty((T, N, len(fields)), dtype=bool)
    for k, (da, lev_dim, lev_i) in enumerate(fields):
        a = da.isel({lev_dim: lev_i}) if lev_dim is not None else da
        a = a.isel({tdim: tsel}).transpose(tdim, cdim) if tdim in a.dims else a.expand_dims("_t").transpose(
            "_t", cdim).isel(_t=np.zeros(T, dtype=int))
        values[:, :, k] = a.to_numpy()
        mask[:, :, k] = np.isfinite(values[:, :, k])
        if wet is not None:
            w = wet.isel({lev_dim: lev_i}) if lev_dim is not None and lev_dim in wet.dims else wet
            if w.ndim == 1:
                mask[:, :, k] &= w.to_numpy() != 0
                wet_cells |= w.to_numpy() != 0
    keep = plausibility.check_coordinates(lat, lon)
    standard = [str(da.attrs.get("standard_name", "")) for da, _, _ in fields]
    mask, n_masked = plausibility.check_values(values, mask & keep[None, :, None], names, units, standard)
    dropped = [str(i) for i in np.nonzero(~keep)[0]]
    if wet_only and wet is not None:
        keep &= wet_cells
    if not keep.any():
        raise DataError(f"{p}: no cell left (invalid coordinates or, with wet_only, no wet cell)")
    messages = plausibility.report(p.name, names, n_masked, dropped, "cell", notes, stacklevel=4)

    area = _area(ds, cdim, radians)
    edges = _native_edges(ds, cdim, radians, share)
    idx = np.nonzero(keep)[0]
    if len(idx) < N:
        edges = _restrict(edges, keep) if edges is not None else None
    lat, lon = lat[idx], wrap_lon(lon[idx])
    area = area[idx] / area[idx].mean()
    mask = mask[:, idx]
    static, static_names = static_position_features(lat, lon)
    return WeatherGraphData(
        kind="mesh", lat=lat, lon=lon, area=area,
        X=np.where(mask, values[:, idx], 0.0).astype(np.float32), mask=mask, times=times[tsel],
        variables=tuple(names), units=tuple(units), static=static, static_names=static_names,
        native_edges=edges, source=str(p), layout=_layout(ds, cdim), warnings=messages,
    )


# ------------------------------------------------------------------------------- coordinates, time
def _coord(ds, cdim, standard_name, names) -> str | None:
    one_d = [v for v in ds.variables if ds[v].dims == (cdim,)]
    for v in one_d:
        if ds[v].attrs.get("standard_name") == standard_name:
            return v
    lower = {str(v).lower(): v for v in one_d}
    return next((lower[n] for n in names if n in lower), None)


def _is_radians(lat: xr.DataArray, lon: xr.DataArray) -> bool:
    u = (str(lat.attrs.get("units", "")) + " " + str(lon.attrs.get("units", ""))).lower()
    if "rad" in u:
        return True
    if "deg" in u:
        return False
    la, lo = np.abs(lat.to_numpy()), np.abs(lon.to_numpy())
    return bool(np.nanmax(la) <= np.pi / 2 * 1.0001 and np.nanmax(lo) <= 2 * np.pi * 1.0001)


def _degrees(values: np.ndarray, radians: bool) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.rad2deg(values) if radians else values


def _decode_times(tvar: xr.DataArray | None) -> tuple[np.ndarray, list[str]]:
    """datetime64[ns] [T] from a raw numeric time variable, and notes on any guess made."""
    if tvar is None:
        return np.array(["1970-01-01"], dtype="datetime64[ns]"), []
    values = tvar.to_numpy()
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]"), []
    units = str(tvar.attrs.get("units", ""))
    m = re.match(r"^\s*(day|hour)s? as %Y%m%d(\.%f)?", units)
    if m:  # absolute time (CDO/ICON): 20981118.5 = 1998-11-18 12:00
        ymd = np.floor(values).astype(np.int64)
        base = np.array([f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}" for d in ymd], "datetime64[ns]")
        return base + ((values - ymd) * 86400e9).astype("timedelta64[ns]"), []
    if " since " in units:
        import cftime

        try:
            dates = cftime.num2date(values, units, calendar=tvar.attrs.get("calendar", "standard"))
            return np.array([np.datetime64(d.isoformat()) for d in np.ravel(dates)], "datetime64[ns]"), []
        except (ValueError, OverflowError):
            pass
    note = f"time values have no readable units ({units!r}); using step indices as days since 1970-01-01"
    return np.datetime64("1970-01-01", "ns") + np.arange(len(values)) * np.timedelta64(1, "D"), [note]


def _layout(ds, cdim) -> str:
    d = str(cdim).lower()
    if "clat" in ds.variables or d == "ncells":
        return "icon"
    return {"ncol": "cam-se", "npix": "healpix", "nod2": "fesom", "values": "reduced-grid"}.get(
        d, "mpas" if "latCell" in ds.variables else "unstructured")


# ------------------------------------------------------------------------------------------ fields
def _fields(ds, p, cdim, tdim, variables, levels):
    """(DataArray, level dim or None, level index) per output variable, with names and units."""
    skip = {v for v in ds.variables if str(v).lower() in (*LAT_NAMES, *LON_NAMES, *AREA_NAMES, *WET_NAMES)}
    base = {}
    for v in ds.data_vars:
        da = ds[v]
        extra = [d for d in da.dims if d not in (cdim, tdim)]
        if v in skip or cdim not in da.dims or len(extra) > 1 or not np.issubdtype(da.dtype, np.number):
            continue
        if extra and (str(extra[0]).lower() in ("nv", "vertices", "nvertex", "maxedges", "two")
                      or "vert" in str(v).lower()):
            continue
        base[str(v)] = (da, extra[0] if extra else None)
    if not base:
        raise DataError(f"{p}: no variable on the cell dimension {cdim!r}")
    if variables is not None:
        unknown = [v for v in variables if v not in base]
        if unknown:
            raise DataError(f"{p}: unknown variable(s) {list(unknown)}; available: {list(base)}")
        base = {v: base[v] for v in variables}
    out, names, units, found_levels = [], [], [], set()
    for v, (da, ldim) in base.items():
        unit = str(da.attrs.get("units", ""))
        if ldim is None:
            out.append((da, None, 0))
            names.append(v)
            units.append(unit)
            continue
        lev = ds[ldim].to_numpy() if ldim in ds.variables else np.arange(ds.sizes[ldim])
        found_levels.update(float(x) for x in lev)
        for i, x in enumerate(lev):
            if levels is None or any(np.isclose(float(x), float(want)) for want in levels):
                out.append((da, ldim, i))
                names.append(f"{v}_{float(x):g}")
                units.append(unit)
    if levels is not None:
        missing = [lv for lv in levels if not any(np.isclose(float(lv), f) for f in found_levels)]
        if missing or not out:
            raise DataError(f"{p}: data.levels {list(missing or levels)} not in the file; "
                            f"available: {sorted(found_levels)}")
    return out, names, units


def _wet_mask(ds, cdim) -> xr.DataArray | None:
    lower = {str(v).lower(): v for v in ds.variables}
    name = next((lower[n] for n in WET_NAMES if n in lower), None)
    if name is None or cdim not in ds[name].dims or ds[name].ndim > 2:
        return None
    return ds[name].fillna(0)


def _area(ds, cdim, radians) -> np.ndarray:
    n = ds.sizes[cdim]
    lower = {str(v).lower(): v for v in ds.variables}
    name = next((lower[a] for a in AREA_NAMES if a in lower and ds[lower[a]].dims == (cdim,)), None)
    if name is not None:
        a = ds[name].to_numpy().astype(np.float64)
        if np.isfinite(a).all() and (a > 0).all():
            return a / a.mean()
    xyz = _vertex_xyz(ds, cdim, radians)
    if xyz is not None:
        a = polygon_areas(xyz)
        if (a > 0).all():
            return a / a.mean()
    return np.ones(n)


# ------------------------------------------------------------------------------------- adjacency
def _vertex_xyz(ds, cdim, radians) -> np.ndarray | None:
    """float64 [N, nv, 3] unit vectors of the cell polygons' vertices, or None."""
    names = [(a, b) for a, b in (("clat_vertices", "clon_vertices"), ("lat_vertices", "lon_vertices"),
                                 ("lat_bnds", "lon_bnds"), ("lat_bounds", "lon_bounds")) if a in ds.variables]
    if not names or names[0][1] not in ds.variables:
        return None
    la, lo = ds[names[0][0]], ds[names[0][1]]
    if la.ndim != 2 or cdim not in la.dims:
        return None
    la = np.deg2rad(_degrees(la.transpose(cdim, ...).to_numpy(), radians))
    lo = np.deg2rad(_degrees(lo.transpose(cdim, ...).to_numpy(), radians))
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def polygon_areas(xyz: np.ndarray) -> np.ndarray:
    """Spherical areas (steradians) [N] of convex polygons with vertices ``xyz`` [N, nv, 3].

    Fan triangulation from the first vertex; each triangle by Van Oosterom & Strackee:
    ``tan(E/2) = |a.(b x c)| / (1 + a.b + b.c + c.a)``. Repeated vertices give zero-area triangles.
    """
    a = xyz[:, :1]
    b, c = xyz[:, 1:-1], xyz[:, 2:]
    num = np.abs(np.einsum("nkd,nkd->nk", np.broadcast_to(a, b.shape), np.cross(b, c)))
    den = 1 + (a * b).sum(-1) + (b * c).sum(-1) + (c * a).sum(-1)
    return (2 * np.arctan2(num, den)).sum(axis=1)


def _native_edges(ds, cdim, radians, share) -> np.ndarray | None:
    """int64 [2, E] symmetric cell adjacency from shared vertices, no self loops; None without vertices."""
    n = ds.sizes[cdim]
    if "vertex_of_cell" in ds.variables and cdim in ds["vertex_of_cell"].dims:
        vid = ds["vertex_of_cell"].fillna(-1).transpose(cdim, ...).to_numpy().astype(np.int64)
        if vid.min() >= 1 or ds["vertex_of_cell"].attrs.get("start_index", None) == 1:
            vid = vid - 1  # Fortran (1-based) indices, as ICON grid files store them
        valid = vid >= 0
    else:
        xyz = _vertex_xyz(ds, cdim, radians)
        if xyz is None:
            return None
        key = np.round(xyz.reshape(-1, 3) / VERTEX_ROUND).astype(np.int64)
        _, vid = np.unique(key, axis=0, return_inverse=True)
        vid = vid.reshape(xyz.shape[:2])
        valid = np.ones(vid.shape, dtype=bool)
    rows = np.broadcast_to(np.arange(n)[:, None], vid.shape)[valid]
    inc = sp.csr_matrix((np.ones(rows.size), (rows, vid[valid])), shape=(n, int(vid.max()) + 1))
    inc.sum_duplicates()
    inc.data[:] = 1.0  # a vertex repeated within one polygon counts once
    shared = (inc @ inc.T).tocoo()
    need = 2 if share == "edge" else 1
    sel = (shared.data >= need) & (shared.row != shared.col)
    edges = np.stack([shared.col[sel], shared.row[sel]]).astype(np.int64)
    order = np.lexsort((edges[0], edges[1]))
    return edges[:, order]


def _restrict(edges: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Edges among kept nodes, renumbered to the kept nodes' new ids."""
    new_id = np.cumsum(keep) - 1
    sel = keep[edges[0]] & keep[edges[1]]
    return new_id[edges[:, sel]].astype(np.int64)
