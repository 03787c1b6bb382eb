"""A synthetic, learnable reanalysis on any regular grid, written in the CDS layout.

The generator produces ``t2m``, ``msl``, ``u10`` and ``v10`` with simple but physically shaped
dynamics, so forecasting it is learnable and its difficulty does not depend on the resolution:

* temperature ``t2m = T_clim(lat, day of year) + diurnal(lat, local solar time) + a``: a pole-equator
  gradient (300 K at the equator, 250 K at the poles), a seasonal cycle of opposite sign in the two
  hemispheres, and a 3 K diurnal cycle peaking at 15 h local solar time;
* pressure ``msl = p_clim(lat) + b``: subtropical highs and subpolar lows;
* the anomalies ``a`` (K) and ``b`` (Pa) evolve as ``a <- r * D(A(a)) + F``: ``A`` is a semi-Lagrangian
  shift in longitude by a zonal jet (westerlies of 25 m/s at 45° N/S, tropical easterlies), ``D`` a small
  horizontal diffusion, ``r = exp(-dt / 5 days)`` a relaxation and ``F`` a smooth random forcing (a
  sum of random zonal/meridional waves, the same continuous field at every resolution);
* winds ``u10, v10``: 0.5 x the geostrophic wind of ``msl`` (Coriolis parameter bounded away from 0,
  tapered to 0 at the equator);
* small white noise on every output field (0.1 K, 20 Pa, 0.3 m/s).

Grid: latitude descending, longitude ``0 .. 360 - res``. ``poles=None`` chooses the convention from
the resolution: when ``360 / res`` is a power of two (5.625, 2.8125, 1.40625, ...) the grid is the
WeatherBench one without poles (``180 / res`` rows centred in their cells: 5.625° -> 32 x 64);
otherwise it is the ERA5 one with both poles (``180 / res + 1`` rows: 0.25° -> 721 x 1440).

Everything is vectorised numpy and deterministic given ``seed``. :func:`write` streams ``chunk_time``
steps at a time to a netCDF file or, for a path ending in ``.zarr``, to a zarr store (chunks of one step
and 64 latitude rows); memory stays at those steps, so the 0.25° grid (1,038,240 nodes, 16.6 MB per
step) can be written for any number of steps, e.g. 1,460 steps (24 GB) on a machine with less memory.
Both formats load identically with :func:`gnnddm.data.grid.load_grid`. :func:`generate` holds the
whole series in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from gnnddm.data.lazy import DEFAULT_EAGER_MAX_GB
from gnnddm.errors import ConfigError
from gnnddm.schema.data import SyntheticDataConfig
from gnnddm.schema.fields import check_args

GENERATOR_VERSION = 1
VARIABLES = {
    "t2m": ("K", "2 metre temperature"),
    "msl": ("Pa", "Mean sea level pressure"),
    "u10": ("m s**-1", "10 metre U wind component"),
    "v10": ("m s**-1", "10 metre V wind component"),
}
_R, _OMEGA, _RHO = 6.371e6, 7.292e-5, 1.2
_NOISE = {"t2m": 0.1, "msl": 10.0, "u10": 0.3, "v10": 0.3}
_TAU_DAYS = 10.0
_FORCING_DAYS = 5.0
_FORCING_GAIN = 2.0
# zarr chunks are (1 step, ZARR_LAT_BAND latitude rows, all longitudes): a reader of some rows of one step
# decodes only the bands it touches, and a chunk of the 0.25° grid (64 x 1440 float32) is 369 KB
ZARR_LAT_BAND = 64


def _zarr_compressors() -> tuple:
    """Blosc lz4 (level 5, byte shuffle) for every variable of a zarr store.

    Measured at 0.25° (16.6 MB per step, 32 steps, repeated runs on a shared 2-core machine): 11.4 MB per
    step on disk (69%), written in 0.03-0.06 s per step (275-500 MB/s); uncompressed, 17.7 MB per step
    (107%: the last latitude band is stored padded to 64 rows) in 0.03-0.05 s; Blosc zstd level 1, 67% in
    0.04-0.08 s. All are well below the 0.19 s of generating a step, so lz4 saves a third of the disk
    for at most a few percent of the writing time.
    """
    import numcodecs

    return (numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),)


def grid_coords(resolution: float, poles: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes (descending) and longitudes (0 .. 360 - res) of the grid; see the module docstring."""
    res = float(resolution)
    n = 180.0 / res if res > 0 else 0.0
    if res <= 0 or abs(n - round(n)) > 1e-9 or round(n) < 1:
        raise ConfigError(f"data.resolution: {resolution!r} must divide 180 degrees (e.g. 5.625, 2.8125, 1, 0.25)")
    n = int(round(n))
    if poles is None:
        poles = (2 * n) & (2 * n - 1) != 0  # 360/res not a power of two -> ERA5 convention
    lat = 90.0 - res * np.arange(n + 1) if poles else 90.0 - res / 2 - res * np.arange(n)
    return lat, res * np.arange(2 * n)


def _waves(rng, lat_r, lon_r, k: int, scale: float) -> np.ndarray:
    """A smooth random field [nlat, nlon]: ``k`` separable waves, vanishing at the poles, RMS ≈ ``scale``."""
    m = rng.integers(1, 9, size=k)  # zonal wavenumbers
    n = rng.integers(1, 7, size=k)  # meridional wavenumbers
    amp, ph_lon, ph_lat = rng.standard_normal(k), rng.uniform(0, 2 * np.pi, k), rng.uniform(0, 2 * np.pi, k)
    out = np.zeros((lat_r.size, lon_r.size))
    for i in range(k):
        out += amp[i] * np.outer(np.cos(lat_r) * np.sin(n[i] * (lat_r + np.pi / 2) + ph_lat[i]),
                                 np.cos(m[i] * lon_r + ph_lon[i]))
    return out * scale * 2.0 / np.sqrt(k)


class _Model:
    """State and one time step of the synthetic dynamics (see the module docstring)."""

    def __init__(self, lat, lon, dt_hours, seed):
        self.lat, self.lon, self.dt = lat, lon, float(dt_hours)
        self.rng = np.random.default_rng(seed)
        self.phi = np.deg2rad(lat)[:, None]
        lat_r, lon_r = np.deg2rad(lat), np.deg2rad(lon)
        self.lat_r, self.lon_r = lat_r, lon_r
        absd = np.abs(lat)
        u_jet = 25.0 * np.exp(-(((absd - 45.0) / 15.0) ** 2)) - 7.0 * np.exp(-((lat / 15.0) ** 2))
        shift_deg = u_jet * self.dt * 3600.0 / (_R * np.maximum(np.cos(lat_r), 0.05)) * 180.0 / np.pi
        res = lon[1] - lon[0] if lon.size > 1 else 360.0
        s = shift_deg / res
        self.i0 = np.floor(s).astype(np.int64)[:, None]
        self.frac = (s - np.floor(s))[:, None]
        self.cols = np.arange(lon.size)[None, :]
        self.relax = np.exp(-self.dt / (24.0 * _TAU_DAYS))
        self.persist = np.exp(-self.dt / (24.0 * _FORCING_DAYS))
        # forcing RMS so that the stationary anomaly RMS is ~3 K and ~800 Pa
        self.force = _FORCING_GAIN * (1.0 - self.relax)
        self.p_clim = (101325.0 + 1200.0 * np.exp(-(((absd - 30.0) / 15.0) ** 2))
                       - 1800.0 * np.exp(-(((absd - 60.0) / 15.0) ** 2)))[:, None]
        sgn = np.where(lat >= 0, 1.0, -1.0)
        f = 2 * _OMEGA * sgn * np.maximum(np.abs(np.sin(lat_r)), np.sin(np.deg2rad(10.0)))
        taper = 1.0 - np.exp(-((lat / 20.0) ** 2))
        self.geo = (0.5 * taper / (_RHO * f))[:, None]
        self.a = _waves(self.rng, lat_r, lon_r, 12, 5.0)
        self.b = _waves(self.rng, lat_r, lon_r, 12, 800.0)
        self.ga = _waves(self.rng, lat_r, lon_r, 12, 5.0)
        self.gb = _waves(self.rng, lat_r, lon_r, 12, 800.0)

    def _advect(self, x):
        left = np.take_along_axis(x, (self.cols - self.i0) % x.shape[1], axis=1)
        right = np.take_along_axis(x, (self.cols - self.i0 - 1) % x.shape[1], axis=1)
        return (1.0 - self.frac) * left + self.frac * right

    @staticmethod
    def _diffuse(x, kappa=0.05):
        lap = np.roll(x, 1, 1) + np.roll(x, -1, 1) - 2 * x
        padded = np.pad(x, ((1, 1), (0, 0)), mode="edge")
        lap += padded[:-2] + padded[2:] - 2 * x
        return x + kappa * lap

    def step(self):
        innov = np.sqrt(1.0 - self.persist**2)
        self.ga = self.persist * self._advect(self.ga) + _waves(self.rng, self.lat_r, self.lon_r, 12, 5.0 * innov)
        self.gb = self.persist * self._advect(self.gb) + _waves(self.rng, self.lat_r, self.lon_r, 12, 800.0 * innov)
        self.a = self.relax * self._diffuse(self._advect(self.a)) + self.force * self.ga
        self.b = self.relax * self._diffuse(self._advect(self.b)) + self.force * self.gb

    def fields(self, when: np.datetime64, variables) -> dict[str, np.ndarray]:
        """The output fields [nlat, nlon] float32 at time ``when`` (noise drawn in a fixed order)."""
        doy = (when - when.astype("datetime64[Y]")) / np.timedelta64(1, "D")
        hour = (when - when.astype("datetime64[D]")) / np.timedelta64(1, "h")
        lst = (hour + self.lon[None, :] / 15.0) % 24.0
        sin_phi, cos_phi = np.sin(self.phi), np.cos(self.phi)
        t_clim = 300.0 - 50.0 * sin_phi**2 - 8.0 * sin_phi * np.cos(2 * np.pi * (doy - 15.0) / 365.25)
        diurnal = 3.0 * cos_phi * np.cos(2 * np.pi * (lst - 15.0) / 24.0)
        p = self.p_clim + self.b
        dp_dy = np.gradient(p, self.lat_r, axis=0) / _R if p.shape[0] > 1 else np.zeros_like(p)
        dlon = self.lon_r[1] - self.lon_r[0] if self.lon_r.size > 1 else 2 * np.pi
        dp_dx = (np.roll(p, -1, 1) - np.roll(p, 1, 1)) / (2 * dlon * _R * np.maximum(cos_phi, 0.05))
        clean = {"t2m": t_clim + diurnal + self.a, "msl": p,
                 "u10": -self.geo * dp_dy, "v10": self.geo * dp_dx}
        out = {}
        for name in VARIABLES:  # always draw all noises: outputs do not depend on the selection
            noisy = clean[name] + _NOISE[name] * self.rng.standard_normal(p.shape)
            if name in variables:
                out[name] = noisy.astype(np.float32)
        return out


def _check(steps, dt_hours, variables) -> tuple[str, ...]:
    check_args(SyntheticDataConfig, "data", steps=steps, dt_hours=dt_hours, variables=variables)
    return (variables,) if isinstance(variables, str) else tuple(variables)


def iter_chunks(resolution=5.625, steps=200, dt_hours=6, start="2000-01-01", seed=0,
                variables=("t2m", "msl", "u10", "v10"), chunk_time=8, poles=None):
    """Yield ``(times [c], {name: float32 [c, nlat, nlon]})`` for consecutive blocks of ``chunk_time`` steps."""
    variables = _check(steps, dt_hours, variables)
    lat, lon = grid_coords(resolution, poles)
    model = _Model(lat, lon, dt_hours, seed)
    t0 = np.datetime64(str(start), "ns")
    dt = np.timedelta64(int(round(float(dt_hours) * 3600)), "s")
    chunk_time = max(1, int(chunk_time))
    for c0 in range(0, steps, chunk_time):
        n = min(chunk_time, steps - c0)
        times = t0 + (c0 + np.arange(n)) * dt
        block = {v: np.empty((n, lat.size, lon.size), np.float32) for v in variables}
        for i, when in enumerate(times):
            if c0 + i > 0:
                model.step()
            for name, field in model.fields(when, variables).items():
                block[name][i] = field
        yield times.astype("datetime64[ns]"), block


def _attrs(resolution, steps, dt_hours, start, seed, poles) -> dict:
    return {"title": "gnnddm synthetic reanalysis", "Conventions": "CF-1.8",
            "generator": f"gnnddm.data.synthetic v{GENERATOR_VERSION}",
            "resolution": float(resolution), "steps": int(steps), "dt_hours": float(dt_hours),
            "start": str(start), "seed": int(seed), "poles": str(poles)}


def generate(resolution=5.625, steps=200, dt_hours=6, start="2000-01-01", seed=0,
             variables=("t2m", "msl", "u10", "v10"), chunk_time=8, poles=None) -> xr.Dataset:
    """The synthetic series in memory as an ``xarray.Dataset`` (dims ``time, latitude, longitude``).

    Needs ``steps * nlat * nlon * len(variables) * 4`` bytes (16 MB per step at 0.25°); use
    :func:`write` to stream longer series to disk.
    """
    variables = _check(steps, dt_hours, variables)
    lat, lon = grid_coords(resolution, poles)
    data = {v: np.empty((steps, lat.size, lon.size), np.float32) for v in variables}
    times = []
    pos = 0
    for t, block in iter_chunks(resolution, steps, dt_hours, start, seed, variables, chunk_time, poles):
        for v in variables:
            data[v][pos:pos + t.size] = block[v]
        times.append(t)
        pos += t.size
    coords = {"time": np.concatenate(times),
              "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
              "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"})}
    ds = xr.Dataset(
        {v: (("time", "latitude", "longitude"), data[v], {"units": VARIABLES[v][0], "long_name": VARIABLES[v][1]})
         for v in variables},
        coords=coords, attrs=_attrs(resolution, steps, dt_hours, start, seed, poles))
    return ds


def write(path, resolution=5.625, steps=200, dt_hours=6, start="2000-01-01", seed=0,
          variables=("t2m", "msl", "u10", "v10"), chunk_time=8, poles=None) -> Path:
    """Stream the synthetic series to disk, atomically; returns the path written.

    A path ending in ``.zarr`` is written as a zarr store (a directory, zarr format 2 with consolidated
    metadata, chunks ``(1, min(nlat, ZARR_LAT_BAND), nlon)``), any other path as a netCDF4 file (chunks
    ``(1, nlat, nlon)``). Both read back identically with :func:`gnnddm.data.grid.load_grid`.

    Memory stays at ``chunk_time`` time steps, whatever ``steps`` is. The data are written to
    ``.<name>.tmp-<pid>`` beside ``path`` and renamed at the end: an existing ``path`` is replaced only
    by a complete series, and a failed or interrupted write leaves nothing behind.
    """
    variables = _check(steps, dt_hours, variables)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    lat, lon = grid_coords(resolution, poles)
    attrs = _attrs(resolution, steps, dt_hours, start, seed, poles)
    blocks = iter_chunks(resolution, steps, dt_hours, start, seed, variables, chunk_time, poles)
    t0 = np.datetime64(str(start), "ns")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    writer = _write_zarr if path.suffix == ".zarr" else _write_netcdf
    try:
        _remove(tmp)
        writer(tmp, blocks, lat, lon, variables, attrs, t0, steps)
        _replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def _time_units(t0: np.datetime64) -> str:
    return f"hours since {str(t0)[:19].replace('T', ' ')}"


def _write_netcdf(tmp, blocks, lat, lon, variables, attrs, t0, steps) -> None:
    import netCDF4

    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.setncatts(attrs)
        nc.createDimension("time", None)
        nc.createDimension("latitude", lat.size)
        nc.createDimension("longitude", lon.size)
        tv = nc.createVariable("time", "f8", ("time",))
        tv.setncatts({"units": _time_units(t0), "calendar": "proleptic_gregorian", "standard_name": "time"})
        for name, values, units in (("latitude", lat, "degrees_north"), ("longitude", lon, "degrees_east")):
            cv = nc.createVariable(name, "f8", (name,))
            cv.setncatts({"units": units, "standard_name": name})
            cv[:] = values
        out = {}
        for v in variables:
            out[v] = nc.createVariable(v, "f4", ("time", "latitude", "longitude"),
                                       chunksizes=(1, lat.size, lon.size))
            out[v].setncatts({"units": VARIABLES[v][0], "long_name": VARIABLES[v][1]})
        pos = 0
        for times, block in blocks:
            tv[pos:pos + times.size] = (times - t0) / np.timedelta64(1, "h")
            for v in variables:
                out[v][pos:pos + times.size] = block[v]
            pos += times.size


def _write_zarr(tmp, blocks, lat, lon, variables, attrs, t0, steps) -> None:
    """Write the blocks to a zarr store at ``tmp``.

    xarray writes the first block with the metadata, coordinates and encodings; the arrays then take
    their full length and each further block is assigned to its time slice.
    """
    import zarr

    blocks = iter(blocks)
    times, block = next(blocks)
    dims = ("time", "latitude", "longitude")
    ds = xr.Dataset(
        {v: (dims, block[v], {"units": VARIABLES[v][0], "long_name": VARIABLES[v][1]}) for v in variables},
        coords={"time": ("time", times, {"standard_name": "time"}),
                "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs=attrs)
    chunks = (1, min(lat.size, ZARR_LAT_BAND), lon.size)
    encoding = {v: {"chunks": chunks, "compressors": _zarr_compressors()} for v in variables}
    encoding["time"] = {"units": _time_units(t0), "calendar": "proleptic_gregorian", "dtype": "f8",
                        "chunks": (steps,)}
    ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=False, encoding=encoding)
    del ds, block  # memory: one block at a time
    root = zarr.open_group(tmp, mode="r+")
    out = {name: root[name] for name in ("time", *variables)}
    for array in out.values():
        array.resize((steps, *array.shape[1:]))
    pos = times.size
    for times, block in blocks:
        out["time"][pos:pos + times.size] = (times - t0) / np.timedelta64(1, "h")
        for v in variables:
            out[v][pos:pos + times.size] = block[v]
        pos += times.size
    zarr.consolidate_metadata(tmp)
    _order_consolidated(tmp, ["time", "latitude", "longitude", *variables])


def _order_consolidated(store: Path, names: list[str]) -> None:
    """List the arrays of the consolidated metadata in the order ``names``.

    A zarr group has no order of its members: ``consolidate_metadata`` sorts them by name, and readers
    list the variables in the order of the consolidated metadata. Ordered as the netCDF file, the store
    loads with the same variable order (t2m, msl, u10, v10 rather than msl, t2m, ...).
    """
    meta_path = store / ".zmetadata"
    meta = json.loads(meta_path.read_text())
    rank = {name: i for i, name in enumerate(names)}
    # keys are ".zgroup", ".zattrs" (group, first) and "<array>/.zarray", "<array>/.zattrs"
    meta["metadata"] = dict(sorted(meta["metadata"].items(), key=lambda item: rank.get(item[0].split("/")[0], -1)))
    meta_path.write_text(json.dumps(meta, indent=4))


def _replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path``; an existing ``path`` (file or store) is removed once ``tmp`` is in place."""
    if not (tmp.is_dir() or path.is_dir()):
        os.replace(tmp, path)  # one atomic rename, whether or not ``path`` exists
        return
    old = None
    if os.path.lexists(path):
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def cache_path(cache_dir=None, **params) -> Path:
    """The cache file for a set of generator parameters (a hash of all of them and the generator version)."""
    if cache_dir is None:
        root = os.environ.get("GNNDDM_CACHE")
        cache_dir = Path(root) / "synthetic" if root else Path("~/.cache/gnnddm/synthetic")
    key = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"synthetic_{params.get('resolution')}deg_{digest}.nc"


def load_synthetic(resolution=2.8125, steps=200, seed=0, cache_dir=None, variables=None, time=None,
                   coarsen=1, lazy="auto", eager_max_gb=DEFAULT_EAGER_MAX_GB, **gen_kw):
    """Generate (or reuse from the cache) a synthetic series and read it with the regular grid loader.

    Parameters
    ----------
    resolution, steps, seed, **gen_kw
        Generator parameters (see :func:`generate`: ``dt_hours``, ``start``, ``poles``, ``chunk_time``).
    cache_dir : str, optional
        Folder of generated files; default ``$GNNDDM_CACHE/synthetic`` or ``~/.cache/gnnddm/synthetic``.
        Files are keyed by every generator parameter, so a changed parameter never reuses a stale file.
    variables : list of str, optional
        Generated and loaded variables (default all four).
    time, coarsen, lazy, eager_max_gb
        Passed to :func:`gnnddm.data.grid.load_grid` (``lazy``: keep the fields in the cached file).
    """
    from gnnddm.data.grid import load_grid

    check_args(SyntheticDataConfig, "data", resolution=resolution, steps=steps, seed=seed, variables=variables,
               coarsen=coarsen, lazy=lazy, eager_max_gb=eager_max_gb, **gen_kw)
    gen = {"resolution": float(resolution), "steps": steps, "seed": int(seed),
           "variables": list(variables) if variables is not None else list(VARIABLES), **gen_kw}
    if isinstance(gen.get("dt_hours"), int) and not isinstance(gen["dt_hours"], bool):
        gen["dt_hours"] = float(gen["dt_hours"])  # 6 and 6.0 name the same file
    key = {k: v for k, v in gen.items() if k != "chunk_time"}
    path = cache_path(cache_dir, **key)
    if not path.exists():
        write(path, **gen)
    return load_grid(path, variables=gen["variables"], time=time, coarsen=coarsen, lazy=lazy,
                     eager_max_gb=eager_max_gb)
