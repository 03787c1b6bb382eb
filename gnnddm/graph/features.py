"""Edge features: where the sender lies relative to the receiver.

For an edge ``j -> i`` the features are ``(dx, dy, distance)``: the position of the source ``j`` on the
tangent plane of the target ``i`` (east and north components of the azimuthal-equidistant projection,
radians of arc; :func:`~gnnddm.graph.sphere.tangent_displacement`) and the great-circle distance
(radians; :func:`~gnnddm.graph.sphere.haversine`). ``hypot(dx, dy) == distance``, the reverse edge has
the same distance, and a neighbour to the east has ``dx > 0``, ``dy ≈ 0``. Expressing the displacement
in the receiver's local frame makes the features invariant under rotations about the polar axis, as
GraphCast's relative edge positions are.
"""

from __future__ import annotations

import numpy as np

from gnnddm.graph.sphere import cos_latitude

EDGE_ATTR_NAMES = ("dx", "dy", "distance")
"""Column names of the edge features, passed to :meth:`WeatherGraphData.with_graph`."""

DEFAULT_CHUNK = 1 << 20
"""Edges per chunk: bounds the float64 temporaries to a few tens of MB whatever the graph size."""


def edge_features(lat, lon, edge_index, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Edge features ``(dx, dy, distance)`` as float32 ``[E, 3]`` (computed in float64).

    Parameters
    ----------
    lat, lon : float [N]
        Node positions in degrees.
    edge_index : int [2, E]
        ``edge_index[0]`` = source j, ``edge_index[1]`` = target i.
    chunk : int
        Edges processed at once.

    The same quantities as :func:`~gnnddm.graph.sphere.haversine` and
    :func:`~gnnddm.graph.sphere.tangent_displacement`, but from per-node unit vectors ``p`` and sines and
    cosines computed once, so each edge costs one ``atan2`` and no other transcendental function:

        d = atan2(|p_j × p_i|, p_j · p_i),   (a, b) = (p_j · east_i, p_j · north_i),
        (dx, dy) = (a, b) · d / |p_j × p_i|

    Both ``|p_j × p_i|`` and ``p_j · p_i`` are bit-for-bit symmetric in ``i, j``, so the two directions of
    an edge get identical distances (and weights).
    """
    cos_la = cos_latitude(lat)
    sin_la = np.sin(np.deg2rad(np.asarray(lat, dtype=np.float64)))
    lon = np.deg2rad(np.asarray(lon, dtype=np.float64))
    sin_lo, cos_lo = np.sin(lon), np.cos(lon)
    px, py, pz = cos_la * cos_lo, cos_la * sin_lo, sin_la
    edge_index = np.asarray(edge_index)
    num_edges = edge_index.shape[1]
    out = np.empty((num_edges, 3), dtype=np.float32)
    for start in range(0, num_edges, chunk):
        stop = start + chunk
        j = edge_index[0, start:stop]
        i = edge_index[1, start:stop]
        xj, yj, zj = px[j], py[j], pz[j]
        xi, yi, zi = px[i], py[i], pz[i]
        sin_d = np.sqrt((yj * zi - zj * yi) ** 2 + (zj * xi - xj * zi) ** 2 + (xj * yi - yj * xi) ** 2)
        d = np.arctan2(sin_d, xj * xi + yj * yi + zj * zi)
        s_lo, c_lo = sin_lo[i], cos_lo[i]
        a = yj * c_lo - xj * s_lo
        b = zj * cos_la[i] - sin_la[i] * (xj * c_lo + yj * s_lo)
        scale = np.divide(d, sin_d, out=np.zeros_like(d), where=sin_d > 0.0)
        out[start:stop, 0] = a * scale
        out[start:stop, 1] = b * scale
        out[start:stop, 2] = d
    return out
