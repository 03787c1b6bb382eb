"""How a file will be read: its kind, layout, variables, nodes, times and missing values
(``gnnddm data info``, :mod:`gnnddm.commands.data`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gnnddm.data import names
from gnnddm.data.samples import resolve_path
from gnnddm.errors import DataError


def detect_kind(path: Path) -> str:
    """``grid``, ``mesh`` or ``stations`` from a quick look at the file (no data read)."""
    from gnnddm.data.grid import GRIB_SUFFIXES, open_dataset

    if path.suffix.lower() in (".csv", ".txt"):
        return "stations"
    if path.suffix.lower() in GRIB_SUFFIXES:
        return "grid"
    ds, _ = open_dataset(path)
    try:
        if str(ds.attrs.get("featureType", "")).lower() == "timeseries":
            return "stations"
        coords = {str(n): ds[n].dims for n in ds.variables}
        for lat_name, lon_name in (("clat", "clon"), ("lat", "lon"), ("latitude", "longitude")):
            dims = coords.get(lat_name)
            if dims is not None and len(dims) == 1 and coords.get(lon_name) == dims and dims[0] != lat_name:
                return "mesh"  # one position per cell along a shared 1-D dimension
        return "grid"
    finally:
        ds.close()


def load(path, kind: str | None = None):
    """Read ``path`` with the loader of ``kind`` (detected when None)."""
    p = resolve_path(path)
    kind = kind or detect_kind(p)
    if kind == "grid":
        from gnnddm.data.grid import load_grid

        return load_grid(p)
    try:
        if kind == "mesh":
            from gnnddm.data.mesh import load_mesh as loader
        else:
            from gnnddm.data.stations import load_stations as loader
    except ImportError as exc:
        raise DataError(f"{p}: the {kind} loader is not available in this installation ({exc})") from exc
    return loader(p)


def describe(data, verbose: bool = False) -> str:
    """A human-readable account of a loaded ``WeatherGraphData``."""
    lines = [f"file:       {data.source}", f"kind:       {data.kind}", f"layout:     {data.layout or '?'}"]
    shape = f" (grid {data.grid_shape[0]} x {data.grid_shape[1]} lat x lon)" if data.grid_shape else ""
    lines.append(f"nodes:      {data.num_nodes}{shape}")
    lines.append(f"reading:    {data.reading}")
    lines.append(f"lat range:  {data.lat.min():.3f} .. {data.lat.max():.3f}; "
                 f"lon range: {data.lon.min():.3f} .. {data.lon.max():.3f}")
    if data.num_times:
        t0, t1 = str(data.times[0])[:19], str(data.times[-1])[:19]
        lines.append(f"times:      {data.num_times} steps, {t0} .. {t1}{_spacing(data.times)}")
    else:
        lines.append("times:      none")
    if data.native_edges is not None:
        lines.append(f"native edges: {data.native_edges.shape[1]}")
    lines.append("variables:")
    width = max([len(v) for v in data.variables] + [4])
    valid, lo, total, hi = _field_summary(data, verbose)
    entries = data.num_times * data.num_nodes
    for j, (v, u) in enumerate(zip(data.variables, data.units, strict=True)):
        missing = 1.0 - valid[j] / entries if entries else 0.0
        row = f"  {v:<{width}}  {u or '-':<10} {names.long_name(v) or '-':<32} missing {100 * missing:6.2f}%"
        if verbose and valid[j]:
            row += f"  min {lo[j]:.4g}  mean {total[j] / valid[j]:.4g}  max {hi[j]:.4g}"
        lines.append(row)
    lines.append(f"static:     {', '.join(data.static_names) or '-'}")
    total_missing = 1.0 - valid.sum() / (entries * data.num_vars) if entries * data.num_vars else 0.0
    lines.append(f"missing:    {100 * total_missing:.2f}% of all entries")
    lines.extend(f"warning:    {w}" for w in data.warnings)
    return "\n".join(lines)


def _field_summary(data, extremes: bool):
    """Per variable: valid entries, and (``extremes``) min, sum and max of the valid values, read block by
    block of time steps (the whole series of lazily read data is never in memory at once)."""
    from gnnddm.data.normalise import read_block, time_chunks

    v = data.num_vars
    valid, total = np.zeros(v, dtype=np.int64), np.zeros(v)
    lo, hi = np.full(v, np.inf), np.full(v, -np.inf)
    for c in time_chunks(data.num_times, data.num_nodes, v):
        x, m = read_block(data, c)
        valid += m.sum(axis=(0, 1))
        if extremes:
            x = x.astype(np.float64)
            total += np.where(m, x, 0.0).sum(axis=(0, 1))
            lo = np.minimum(lo, np.where(m, x, np.inf).min(axis=(0, 1)))
            hi = np.maximum(hi, np.where(m, x, -np.inf).max(axis=(0, 1)))
    return valid, lo, total, hi


def _spacing(times) -> str:
    if len(times) < 2:
        return ""
    hours = np.diff(times) / np.timedelta64(1, "h")
    lo, hi = float(hours.min()), float(hours.max())
    return f" (every {lo:g} h)" if lo == hi else f" (spacing {lo:g} .. {hi:g} h, irregular)"
