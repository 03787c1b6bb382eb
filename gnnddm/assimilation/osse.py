"""Observing-system simulation experiments: observation sites, the observation operator, synthetic
observations and backgrounds drawn from a gridded truth.

A reanalysis is the truth ``x_t`` on the grid's ``N`` nodes; observations are ``y_t = H x_t + ε`` at ``O``
sites, ``H`` the interpolation to the sites (:func:`interpolation_operator`, a sparse ``[O, N]`` matrix) and
``ε ~ N(0, σ_o²)`` per variable; the background is the truth at ``t − lead`` (persistence) or the truth plus
spatially correlated noise (:func:`correlated_noise`). Every draw comes from a seeded generator, so the same
configuration gives the same sites, observations and backgrounds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from gnnddm.data.weather_graph import WeatherGraphData, wrap_lon
from gnnddm.graph.grid import is_periodic
from gnnddm.graph.sphere import EARTH_RADIUS_KM, arc_to_chord, chord_to_arc, unit_vectors

IDW_NEIGHBOURS = 3
"""Nodes an observation reads on a grid without a regular layout (meshes): inverse-distance weights."""


def uniform_sites(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sites uniformly distributed on the sphere (equal area): latitude, longitude in degrees."""
    z = rng.uniform(-1.0, 1.0, count)
    lon = rng.uniform(-180.0, 180.0, count)
    return np.rad2deg(np.arcsin(z)), lon


def grid_rows(data: WeatherGraphData) -> np.ndarray:
    """The nodes that carry the truth (area > 0): a joint graph's mesh nodes carry none."""
    return np.flatnonzero(np.asarray(data.area) > 0)


def _regular(data: WeatherGraphData) -> tuple[np.ndarray, np.ndarray] | None:
    """Row latitudes and column longitudes of a regular grid whose nodes come first, else None."""
    if data.grid_shape is None:
        return None
    nlat, nlon = data.grid_shape
    lat = np.asarray(data.lat[: nlat * nlon]).reshape(nlat, nlon)
    lon = np.asarray(data.lon[: nlat * nlon]).reshape(nlat, nlon)
    if not ((lat == lat[:, :1]).all() and (lon == lon[:1]).all()):
        return None
    return lat[:, 0], lon[0]


def inside_domain(data: WeatherGraphData, lat, lon) -> np.ndarray:
    """bool [O]: the sites within the grid's domain (the band of its rows' cells and, unless it wraps around
    the globe, the range of its columns' cells; on meshes, within twice the median node spacing of a node)."""
    lat, lon = np.asarray(lat, dtype=np.float64), wrap_lon(lon)
    regular = _regular(data)
    if regular is not None:
        rows, cols = regular
        half = 0.5 * np.diff(np.sort(rows)).min() if len(rows) > 1 else 0.0
        inside = (lat >= rows.min() - half) & (lat <= rows.max() + half)  # the cells' edges
        if not is_periodic(cols):
            lo = np.sort(wrap_lon(cols))
            half = 0.5 * np.diff(lo).min() if len(lo) > 1 else 0.0
            inside &= (lon >= lo[0] - half) & (lon <= lo[-1] + half)
        return inside
    nodes = grid_rows(data)
    tree = cKDTree(unit_vectors(data.lat[nodes], data.lon[nodes]))
    spacing = np.median(tree.query(unit_vectors(data.lat[nodes], data.lon[nodes]), k=2)[0][:, 1])
    return tree.query(unit_vectors(lat, lon), k=1)[0] <= 2.0 * spacing


def interpolation_operator(data: WeatherGraphData, lat, lon) -> sp.csr_matrix:
    """The observation operator ``H``: float64 CSR ``[O, N]`` whose row ``o`` interpolates node values to site
    ``o`` (rows sum to 1; columns of nodes without truth stay empty).

    Bilinear in latitude and longitude on a regular grid (longitude wrapping around where the grid is
    periodic; sites beyond the outermost rows take those rows), inverse squared distance over the
    :data:`IDW_NEIGHBOURS` nearest nodes otherwise.
    """
    lat, lon = np.asarray(lat, dtype=np.float64), wrap_lon(lon)
    n = data.num_nodes
    regular = _regular(data)
    if regular is None:
        return _idw_operator(data, lat, lon)
    rows, cols = regular
    nlon = len(cols)
    r_order = np.argsort(rows)
    r_sorted = rows[r_order]
    i_hi = np.clip(np.searchsorted(r_sorted, lat), 1, len(rows) - 1)
    i_lo = i_hi - 1
    t = np.clip((lat - r_sorted[i_lo]) / (r_sorted[i_hi] - r_sorted[i_lo]), 0.0, 1.0)
    c_order = np.argsort(wrap_lon(cols))
    c_sorted = wrap_lon(cols)[c_order]
    if is_periodic(cols):
        ext = np.append(c_sorted, c_sorted[0] + 360.0)
        x = np.where(lon < c_sorted[0], lon + 360.0, lon)
        j_hi = np.clip(np.searchsorted(ext, x), 1, nlon)
        j_lo = j_hi - 1
        u = np.clip((x - ext[j_lo]) / (ext[j_hi] - ext[j_lo]), 0.0, 1.0)
        j_hi = j_hi % nlon
    else:
        j_hi = np.clip(np.searchsorted(c_sorted, lon), 1, nlon - 1)
        j_lo = j_hi - 1
        u = np.clip((lon - c_sorted[j_lo]) / (c_sorted[j_hi] - c_sorted[j_lo]), 0.0, 1.0)
    node = lambda i, j: r_order[i] * nlon + c_order[j]  # noqa: E731 - the grid's node numbering
    cols_idx = np.stack([node(i_lo, j_lo), node(i_lo, j_hi), node(i_hi, j_lo), node(i_hi, j_hi)], axis=1)
    weights = np.stack([(1 - t) * (1 - u), (1 - t) * u, t * (1 - u), t * u], axis=1)
    o = len(lat)
    h = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(o), 4), cols_idx.ravel())), shape=(o, n))
    h.sum_duplicates()
    h.eliminate_zeros()
    return h


def _idw_operator(data: WeatherGraphData, lat, lon) -> sp.csr_matrix:
    nodes = grid_rows(data)
    k = min(IDW_NEIGHBOURS, len(nodes))
    tree = cKDTree(unit_vectors(data.lat[nodes], data.lon[nodes]))
    chord, idx = tree.query(unit_vectors(lat, lon), k=k)
    chord, idx = chord.reshape(len(lat), k), idx.reshape(len(lat), k)
    d = chord_to_arc(chord)
    exact = d[:, :1] < 1e-12
    w = np.where(exact, (np.arange(k) == 0).astype(np.float64)[None, :], 1.0 / np.maximum(d, 1e-12) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    o = len(lat)
    return sp.csr_matrix((w.ravel(), (np.repeat(np.arange(o), k), nodes[idx].ravel())), shape=(o, data.num_nodes))


def correlated_noise(lat, lon, length_km: float, shape: tuple[int, int], rng: np.random.Generator,
                     nodes: np.ndarray | None = None) -> np.ndarray:
    """Gaussian noise ``[T, N, V]`` (``shape = (T, V)``) with unit variance at every node and correlation
    ≈ ``exp(−d² / (2 ℓ²))`` between nodes ``d`` km apart (``ℓ = length_km``).

    White noise smoothed by the Gaussian kernel ``exp(−d² / ℓ²)`` (truncated at ``3.5 ℓ / √2``), whose
    self-convolution on a plane is the target correlation, then divided by each node's kernel norm.
    Only ``nodes`` (default: all) receive noise; the others are 0.
    """
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    nodes = np.arange(len(lat)) if nodes is None else np.asarray(nodes)
    xyz = unit_vectors(lat[nodes], lon[nodes])
    scale = length_km / EARTH_RADIUS_KM / np.sqrt(2.0)  # radians: the kernel's width
    tree = cKDTree(xyz)
    pairs = tree.sparse_distance_matrix(tree, float(arc_to_chord(3.5 * scale)), output_type="coo_matrix")
    off = pairs.row != pairs.col
    arc = chord_to_arc(pairs.data[off])
    kernel = sp.csr_matrix((np.exp(-0.5 * (arc / scale) ** 2), (pairs.row[off], pairs.col[off])), shape=pairs.shape)
    kernel = kernel + sp.identity(len(nodes), format="csr")  # each node's own weight, 1
    norm = np.sqrt(np.asarray(kernel.multiply(kernel).sum(axis=1))).ravel()
    t, v = shape
    white = rng.standard_normal((len(nodes), t * v))
    smooth = (kernel @ white) / norm[:, None]
    out = np.zeros((t, len(lat), v), dtype=np.float32)
    out[:, nodes, :] = smooth.reshape(len(nodes), t, v).transpose(1, 0, 2)
    return out


def distances_km(a_xyz: np.ndarray, b_xyz: np.ndarray) -> np.ndarray:
    """Great-circle distances (km) ``[len(a), len(b)]`` between unit vectors."""
    return chord_to_arc(cdist(a_xyz, b_xyz)) * EARTH_RADIUS_KM
