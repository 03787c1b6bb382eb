"""Geometry on the unit sphere: great-circle distances, unit vectors and tangent-plane displacements.

All positions are in degrees (as in :class:`~gnnddm.data.weather_graph.WeatherGraphData`), all
distances in radians of arc (multiply by :data:`EARTH_RADIUS_KM` for kilometres). Every function is
vectorised and broadcasts its arguments like numpy.

Neighbour searches work on 3-D unit vectors because the chord length between two unit vectors,
``c = 2 sin(d / 2)``, grows monotonically with the great-circle distance ``d`` on ``[0, π]``: the k
nearest points by chord are the k nearest on the sphere, and a k-d tree in 3-D has no trouble with the
poles or the date line.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius used to convert between kilometres and radians of arc."""


def unit_vectors(lat, lon) -> np.ndarray:
    """Cartesian unit vectors ``[..., 3]`` (float64) of points given in degrees.

    ``x`` points to (0°N, 0°E), ``y`` to (0°N, 90°E), ``z`` to the north pole.
    """
    la = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lo = np.deg2rad(np.asarray(lon, dtype=np.float64))
    cos_la = cos_latitude(lat)
    return np.stack([cos_la * np.cos(lo), cos_la * np.sin(lo), np.sin(la)], axis=-1)


def cos_latitude(lat) -> np.ndarray:
    """``cos(lat)`` of latitudes in degrees, exactly 0 at ±90° (``cos(π/2)`` is 6e-17 in floating
    point), so that all points of a pole row map to exactly the same unit vector."""
    lat = np.asarray(lat, dtype=np.float64)
    return np.where(np.abs(lat) == 90.0, 0.0, np.cos(np.deg2rad(lat)))


def haversine(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in radians between points given in degrees (haversine formula).

    Uses absolute coordinate differences so that ``haversine(a, b) == haversine(b, a)`` bit for bit,
    which keeps the weights of symmetric graphs exactly symmetric. Accurate for small distances (unlike
    the arccos of a dot product) and clipped so that round-off can never produce NaN.
    """
    la1 = np.deg2rad(np.asarray(lat1, dtype=np.float64))
    la2 = np.deg2rad(np.asarray(lat2, dtype=np.float64))
    dla = np.abs(la2 - la1)
    dlo = np.deg2rad(np.abs(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64)))
    h = np.sin(0.5 * dla) ** 2 + np.cos(la1) * np.cos(la2) * np.sin(0.5 * dlo) ** 2
    return 2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def arc_to_chord(arc) -> np.ndarray:
    """Chord length between two unit vectors ``arc`` radians apart: ``2 sin(arc / 2)``."""
    return 2.0 * np.sin(0.5 * np.clip(np.asarray(arc, dtype=np.float64), 0.0, np.pi))


def chord_to_arc(chord) -> np.ndarray:
    """Great-circle distance in radians of a chord between unit vectors: ``2 arcsin(chord / 2)``."""
    return 2.0 * np.arcsin(np.clip(0.5 * np.asarray(chord, dtype=np.float64), 0.0, 1.0))


def tangent_displacement(lat_src, lon_src, lat_dst, lon_dst, distance=None) -> tuple[np.ndarray, np.ndarray]:
    """Position of the source as seen from the target, on the target's tangent plane.

    Returns ``(dx, dy)``: east and north components in radians of arc of the azimuthal-equidistant
    projection centred on the target, so ``hypot(dx, dy)`` equals the great-circle distance and the
    direction is the initial bearing from target to source. With ``φ`` latitude and ``Δλ = λ_src −
    λ_dst``, the un-normalised direction is

        a = cos φ_src · sin Δλ                                         (east)
        b = cos φ_dst · sin φ_src − sin φ_dst · cos φ_src · cos Δλ     (north)

    with ``hypot(a, b) = sin d``, scaled by ``d / sin d``. At a pole the east/north basis is the limit
    reached along the node's own meridian (its nominal longitude). Coincident points (and exact
    antipodes, where the direction is undefined) get ``(0, 0)``. ``distance`` (radians), when already
    known, saves recomputing the haversine.
    """
    la_s = np.deg2rad(np.asarray(lat_src, dtype=np.float64))
    la_t = np.deg2rad(np.asarray(lat_dst, dtype=np.float64))
    dlo = np.deg2rad(np.asarray(lon_src, dtype=np.float64) - np.asarray(lon_dst, dtype=np.float64))
    cos_s = np.cos(la_s)
    a = cos_s * np.sin(dlo)
    b = np.cos(la_t) * np.sin(la_s) - np.sin(la_t) * cos_s * np.cos(dlo)
    d = haversine(lat_src, lon_src, lat_dst, lon_dst) if distance is None else np.asarray(distance)
    s = np.hypot(a, b)
    scale = np.divide(d, s, out=np.zeros_like(s), where=s > 0.0)
    return a * scale, b * scale
