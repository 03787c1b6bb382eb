"""Area-weighted coarsening of regular latitude-longitude grids (``data.coarsen``).

Shared by the eager loader (:mod:`gnnddm.data.grid`) and the lazy reader (:mod:`gnnddm.data.lazy`), which
coarsens each block it reads; it imports neither.
"""

from __future__ import annotations

import numpy as np

from gnnddm.errors import ConfigError


def cell_areas(lat: np.ndarray) -> np.ndarray:
    """Relative area of one cell in each latitude row (unnormalised), for a uniform longitude spacing.

    A row spans from the midpoints towards its neighbours (clipped at the poles), area ∝
    sin(upper) - sin(lower). A pole row gets its half-cell polar cap: small, but never 0.
    """
    lat = np.asarray(lat, dtype=np.float64)
    if lat.size == 1:
        return np.ones(1)
    step = lat[0] - lat[1]
    mid = 0.5 * (lat[:-1] + lat[1:])
    upper = np.concatenate([[lat[0] + 0.5 * step], mid])
    lower = np.concatenate([mid, [lat[-1] - 0.5 * (lat[-2] - lat[-1])]])
    upper, lower = np.clip(upper, -90, 90), np.clip(lower, -90, 90)
    return np.abs(np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)))


def coarsen_grid(lat, lon, X, k: int, source: str = ""):
    """Area-weighted block average of ``X [T, nlat, nlon, V]`` (lat north first) by ``k`` in each direction.

    Longitude: periodic windows centred on every ``k``-th longitude (kept as the new coordinate).
    Latitude: a grid with both poles keeps every ``k``-th row, poles included, each averaging the rows
    within ±k/2 (half weight at the window ends for even ``k``; clipped at the poles), so a 721-row grid
    coarsens to 181 rows from pole to pole; a grid without poles (WeatherBench) averages blocks of ``k``
    rows. Row weights are cell areas, so the mean of the field over the sphere is preserved. NaN entries
    are left out of the averages. Returns ``(lat, lon, X)``.
    """
    nlat, nlon = lat.size, lon.size
    poles = nlat > 1 and np.isclose(abs(lat[0]), 90.0) and np.isclose(abs(lat[-1]), 90.0)
    n_rows = nlat - 1 if poles else nlat
    if n_rows % k or nlon % k:
        raise ConfigError(
            f"data.coarsen: {k} must divide the number of longitudes ({nlon}) and of latitude "
            f"{'intervals' if poles else 'rows'} ({n_rows}) of {source or 'the grid'}; valid: "
            f"{[d for d in range(1, min(n_rows, nlon) + 1) if n_rows % d == 0 and nlon % d == 0]}"
        )
    half = np.arange(k + 1) - k // 2 if k % 2 == 0 else np.arange(k) - k // 2
    w_centred = np.ones(half.size)
    if k % 2 == 0:
        w_centred[[0, -1]] = 0.5
    if poles:
        rows = np.arange(0, nlat, k)
        new_lat = lat[rows]
        X = _window_mean(X, 1, rows, half, w_centred, periodic=False, row_weight=cell_areas(lat))
    else:
        rows = np.arange(0, nlat, k)
        new_lat = np.array([lat[r:r + k].mean() for r in rows])
        X = _window_mean(X, 1, rows, np.arange(k), np.ones(k), periodic=False, row_weight=cell_areas(lat))
    cols = np.arange(0, nlon, k)
    X = _window_mean(X, 2, cols, half, w_centred, periodic=True)
    return new_lat, lon[cols], X


def _window_mean(x, axis, centres, offsets, weights, periodic, row_weight=None):
    n = x.shape[axis]
    num = np.zeros(x.shape[:axis] + (centres.size,) + x.shape[axis + 1:], dtype=np.float64)
    den = np.zeros_like(num)
    shape = [1] * x.ndim
    shape[axis] = centres.size
    for off, w in zip(offsets, weights, strict=True):
        idx = centres + off
        ok = np.ones(centres.size, bool) if periodic else (idx >= 0) & (idx < n)
        idx = idx % n if periodic else np.clip(idx, 0, n - 1)
        wv = w * ok * (row_weight[idx] if row_weight is not None else 1.0)
        xs = np.take(x, idx, axis=axis)
        valid = ~np.isnan(xs)
        wv = wv.reshape(shape)
        num += np.where(valid, xs, 0.0) * wv
        den += valid * wv
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).astype(np.float32)
