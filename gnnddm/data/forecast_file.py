"""Forecast fields as a CF-1.8 dataset that xarray, ncview and Panoply open (written by ``gnnddm predict``).

Layout:

- dimensions ``init_time`` (the forecast's reference time, ``standard_name = forecast_reference_time``),
  ``lead_time`` (a duration, ``forecast_period``) and the locations: ``latitude`` and ``longitude`` for a
  regular grid (longitudes ascending), or ``values`` with the coordinates ``latitude(values)`` and
  ``longitude(values)`` for a mesh or a station network;
- the coordinate ``valid_time(init_time, lead_time)`` = init_time + lead_time (``standard_name = time``);
- one variable per forecast variable, under the input's name, in physical units, with ``units``,
  ``long_name`` and, where the variable has one, ``standard_name``
  (:data:`gnnddm.data.names.CF_STANDARD`); station networks add ``featureType = timeSeries`` and a
  ``station`` name variable (``cf_role = timeseries_id``);
- global attributes ``Conventions``, ``title``, ``source`` (the model), ``history``, ``gnnddm_version``,
  ``gnnddm_run_id`` and ``gnnddm_model``.

The file is written to a temporary name beside the target and renamed over it once complete, so a failed
or interrupted write never leaves a partial file under the target's name. ``gnnddm data info`` and the
loaders read a forecast file back as a series of valid times (the shortest lead kept where valid times
repeat): a grid's with the grid loader, a mesh's or a station network's with the mesh loader.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from gnnddm.data import names
from gnnddm.errors import ConfigError, OutputError

SUFFIXES = (".nc", ".nc4", ".zarr")


def cf_units(units: str) -> str:
    """A UDUNITS-readable spelling of ``units``: ERA5's ``(0 - 1)`` and empty units become ``1``."""
    u = str(units or "").strip()
    return "1" if u in ("", "(0 - 1)", "0-1", "~", "-", "none") else u


def forecast_dataset(data, fields: np.ndarray, init_times, lead_hours, attrs: dict) -> xr.Dataset:
    """The CF dataset of ``fields`` [init, lead, N, V] (physical units) on the locations of ``data``.

    ``init_times``: datetime64 [init]; ``lead_hours``: float [lead]; ``attrs``: the global attributes to add.
    """
    init = np.asarray(init_times, dtype="datetime64[ns]")
    lead = (np.asarray(lead_hours, dtype=np.float64) * 3600e9).astype("timedelta64[ns]")
    coords = {
        "init_time": ("init_time", init, {"standard_name": "forecast_reference_time",
                                          "long_name": "initial time of the forecast"}),
        "lead_time": ("lead_time", lead, {"standard_name": "forecast_period", "long_name": "lead time"}),
        "valid_time": (("init_time", "lead_time"), init[:, None] + lead[None, :],
                       {"standard_name": "time", "long_name": "time the forecast is valid for"}),
    }
    lat_attrs = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
    lon_attrs = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}
    if data.kind == "grid" and data.grid_shape is not None:
        nlat, nlon = data.grid_shape
        lat = np.asarray(data.lat).reshape(nlat, nlon)[:, 0]
        lon_row = np.asarray(data.lon).reshape(nlat, nlon)[0]
        order = np.argsort(lon_row, kind="stable")  # longitudes ascending (the file may start at 0 E)
        grid = fields.reshape(*fields.shape[:2], nlat, nlon, fields.shape[-1])[:, :, :, order]
        coords["latitude"] = ("latitude", lat, {**lat_attrs, "axis": "Y"})
        coords["longitude"] = ("longitude", lon_row[order], {**lon_attrs, "axis": "X"})
        dims, values = ("init_time", "lead_time", "latitude", "longitude"), grid
    else:
        coords["latitude"] = ("values", np.asarray(data.lat), lat_attrs)
        coords["longitude"] = ("values", np.asarray(data.lon), lon_attrs)
        dims, values = ("init_time", "lead_time", "values"), fields
    variables = {}
    for v, (name, units) in enumerate(zip(data.variables, data.units, strict=True)):
        var_attrs = {"units": cf_units(units), "long_name": names.long_name(name).replace("_", " ") or name,
                     "coordinates": "valid_time latitude longitude"}
        standard = names.standard_name(name)
        if standard:
            var_attrs["standard_name"] = standard
        variables[name] = (dims, values[..., v].astype(np.float32), var_attrs)
    ds = xr.Dataset(variables, coords=coords, attrs={"Conventions": "CF-1.8", **attrs})
    if data.kind == "stations":
        ids = data.node_ids or tuple(f"station_{i}" for i in range(data.num_nodes))  # the file's codes
        ds["station"] = ("values", np.array(ids, dtype=object), {"cf_role": "timeseries_id", "long_name": "station"})
        ds.attrs["featureType"] = "timeSeries"
    return ds


def check_output(path: Path) -> Path:
    """``path`` if it names a writable forecast file (``.nc`` or ``.zarr``), else a :class:`ConfigError`."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"output={path}: expected a .nc (netCDF) or .zarr (zarr store) path")
    if not path.parent.is_dir():
        raise ConfigError(f"output={path}: the folder {path.parent} does not exist; create it or choose another")
    return path


def write_forecast(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` to ``path`` (netCDF or zarr, by suffix) atomically: a temporary name beside it first,
    renamed over the target when complete; nothing is left under ``path`` if the write fails."""
    path = check_output(path)
    encoding = {name: {"dtype": "float32"} for name in ds.data_vars if ds[name].dtype.kind == "f"}
    encoding.update({name: {} for name in ("latitude", "longitude")})
    for name in ("init_time", "valid_time"):
        encoding[name] = {"units": "hours since 1970-01-01 00:00:00", "dtype": "float64"}
    encoding["lead_time"] = {"units": "hours", "dtype": "float64"}
    for name in ("init_time", "valid_time", "lead_time", "latitude", "longitude"):
        encoding[name]["_FillValue"] = None  # CF 2.5.1: coordinates have no missing values
    zarr = path.suffix.lower() == ".zarr"
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) if zarr else Path(
        tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)[1])
    try:
        if zarr:
            shutil.rmtree(tmp)
            ds.to_zarr(tmp, mode="w", encoding=encoding, zarr_format=2, consolidated=True)
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            ds.to_netcdf(tmp, encoding=encoding)
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"output={path}: could not be written ({exc.strerror or exc})") from None
        raise
    return path
