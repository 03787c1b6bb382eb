"""Optimal interpolation (OI / 3D-Var with a static covariance), the classical reference of ``task=assimilate``.

For each variable and time, with the innovation ``d = y − H x_b`` at the valid observations,

    x_a − x_b = B Hᵀ (H B Hᵀ + R)⁻¹ d,     B_ij = σ_b² ρ(d_ij / ℓ),     R = σ_o² I,

``ρ`` Gaussian ``exp(−r²/2)`` or SOAR ``(1 + r) e^{−r}`` of the great-circle distance ``d_ij`` between nodes.
The system is solved exactly on the observation space (Cholesky of the ``O × O`` matrix of the observations
valid at that time). ``B`` is never formed: ``H B Hᵀ`` and ``B Hᵀ`` are accumulated in blocks of
:data:`CHUNK` nodes over the nodes the observations read (each observation reads a few: the stencil of
``H``), so memory stays at ``O²`` plus a block, whatever the grid size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.spatial import cKDTree

from gnnddm.assimilation.osse import distances_km
from gnnddm.graph.sphere import EARTH_RADIUS_KM, arc_to_chord, chord_to_arc, unit_vectors
from gnnddm.schema.task import CORRELATIONS

CHUNK = 2048
"""Nodes per block of ``B Hᵀ``: a block is ``CHUNK × stencil`` float64 (a few hundred MB at 5,000 sites)."""
FIT_CENTRES = 400
"""Random nodes whose neighbourhoods sample the background-error correlation for :func:`fit_background_errors`."""
FIT_BIN_KM = 100.0
FIT_MAX_KM = 4000.0


def correlation(d_km: np.ndarray, length_km: float, kind: str = "gaussian") -> np.ndarray:
    """``ρ(d / ℓ)``: Gaussian ``exp(−r²/2)`` or SOAR ``(1 + r) exp(−r)``, 1 at ``d = 0``."""
    r = np.asarray(d_km, dtype=np.float64) / float(length_km)
    if kind == "gaussian":
        return np.exp(-0.5 * r * r)
    if kind == "soar":
        return (1.0 + r) * np.exp(-r)
    raise ValueError(f"correlation must be one of {CORRELATIONS}, got {kind!r}")


@dataclass(frozen=True)
class ErrorModel:
    """OI's error statistics per variable, in the units of the fields it is applied to (the normalised ones)."""

    sigma_b: np.ndarray
    length_km: np.ndarray
    sigma_o: np.ndarray
    correlation: str = "gaussian"


def fit_background_errors(errors: np.ndarray, valid: np.ndarray, lat, lon, area,
                          kind: str = "gaussian", seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(σ_b, ℓ, bias)`` per variable from background-minus-truth samples ``errors`` ``[T, N, V]``.

    ``σ_b`` is the area-weighted RMS of the bias-removed errors, ``bias`` their area-weighted mean; ``ℓ``
    (km) is the length scale whose ``ρ`` best fits (least squares, weighted by the pairs per bin) the
    errors' correlation in 100 km distance bins up to 4,000 km, sampled over the neighbourhoods of
    :data:`FIT_CENTRES` random nodes. ``valid`` marks the samples to use; ``area`` > 0 marks the nodes.
    """
    errors = np.asarray(errors, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    area = np.asarray(area, dtype=np.float64)
    t, n, v = errors.shape
    w = valid * area[None, :, None]
    bias = (w * errors).sum(axis=(0, 1)) / np.maximum(w.sum(axis=(0, 1)), 1e-300)
    e = np.where(valid, errors - bias, 0.0)
    sigma = np.sqrt((w * e * e).sum(axis=(0, 1)) / np.maximum(w.sum(axis=(0, 1)), 1e-300))
    nodes = np.flatnonzero(area > 0)
    xyz = unit_vectors(np.asarray(lat)[nodes], np.asarray(lon)[nodes])
    tree = cKDTree(xyz)
    rng = np.random.default_rng(seed)
    centres = rng.choice(len(nodes), size=min(FIT_CENTRES, len(nodes)), replace=False)
    bins = int(FIT_MAX_KM / FIT_BIN_KM)
    cross, sq_a, sq_b, count = (np.zeros((bins, v)) for _ in range(4))
    dist_sum, dist_count = np.zeros(bins), np.zeros(bins)
    radius = float(arc_to_chord(FIT_MAX_KM / EARTH_RADIUS_KM))
    for c, near in zip(centres, tree.query_ball_point(xyz[centres], radius), strict=True):
        near = np.asarray([j for j in near if j != c], dtype=np.int64)  # the node itself says nothing of ℓ
        if not len(near):
            continue
        d = chord_to_arc(np.linalg.norm(xyz[near] - xyz[c], axis=1)) * EARTH_RADIUS_KM
        b = np.minimum((d / FIT_BIN_KM).astype(np.int64), bins - 1)
        np.add.at(dist_sum, b, d)
        np.add.at(dist_count, b, 1.0)
        ea, eb = e[:, nodes[c]][:, None, :], e[:, nodes[near]]  # [T, 1, V], [T, m, V]
        both = valid[:, nodes[c]][:, None, :] & valid[:, nodes[near]]
        for acc, value in ((cross, ea * eb), (sq_a, ea * ea), (sq_b, eb * eb), (count, np.ones_like(eb))):
            np.add.at(acc, b, np.where(both, value, 0.0).sum(axis=0))
    bin_km = dist_sum / np.maximum(dist_count, 1.0)  # the mean distance of each bin's pairs
    candidates = np.geomspace(20.0, 20000.0, 400)
    lengths = np.empty(v)
    for k in range(v):
        use = (count[:, k] > 0) & (sq_a[:, k] > 0) & (sq_b[:, k] > 0)
        corr = cross[use, k] / np.sqrt(sq_a[use, k] * sq_b[use, k])
        misfit = [(count[use, k] * (corr - correlation(bin_km[use], L, kind)) ** 2).sum() for L in candidates]
        lengths[k] = candidates[int(np.argmin(misfit))]
    return sigma, lengths, bias


class OptimalInterpolation:
    """OI analyses of the nodes ``rows`` from innovations at the sites of ``H``.

    Parameters
    ----------
    H : sparse ``[O, N]``
        The observation operator (:func:`gnnddm.assimilation.osse.interpolation_operator`).
    lat, lon : float [N]
        Node positions (degrees).
    errors : ErrorModel
    rows : int [G]
        The nodes analysed (the grid nodes; a joint graph's other nodes get no increment).
    """

    def __init__(self, H, lat, lon, errors: ErrorModel, rows: np.ndarray, chunk: int = CHUNK):
        H = sp.csr_matrix(H, dtype=np.float64)
        self.errors, self.rows, self.chunk = errors, np.asarray(rows), int(chunk)
        self.stencil = np.unique(H.indices)
        self.h = H[:, self.stencil].tocsr()  # [O, P]
        xyz = unit_vectors(lat, lon)
        self.xyz_stencil, self.xyz_rows = xyz[self.stencil], xyz[self.rows]
        self.num_obs = H.shape[0]

    def _b_ht(self, xyz: np.ndarray, v: int) -> np.ndarray:
        """``(B Hᵀ)`` rows of the nodes ``xyz`` for variable ``v``: ``[len(xyz), O]``."""
        e = self.errors
        rho = correlation(distances_km(xyz, self.xyz_stencil), e.length_km[v], e.correlation)
        return e.sigma_b[v] ** 2 * np.asarray((self.h @ rho.T).T)

    def innovation_covariance(self, v: int) -> np.ndarray:
        """``H B Hᵀ`` (without R), ``[O, O]``, accumulated over blocks of the stencil nodes."""
        out = np.zeros((self.num_obs, self.num_obs))
        for s in range(0, len(self.stencil), self.chunk):
            block = slice(s, s + self.chunk)
            out += self.h[:, block] @ self._b_ht(self.xyz_stencil[block], v)
        return 0.5 * (out + out.T)

    def increment(self, innovation: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``x_a − x_b`` at ``rows``: float64 ``[B, G, V]`` from innovations and their validity ``[B, O, V]``."""
        innovation = np.asarray(innovation, dtype=np.float64)
        valid = np.asarray(valid, dtype=bool)
        b, _, v = innovation.shape
        out = np.zeros((b, len(self.rows), v))
        for k in range(v):
            weights = self.solve(self.innovation_covariance(k), innovation[..., k], valid[..., k], k)
            if not weights.any():
                continue
            for s in range(0, len(self.rows), self.chunk):
                block = slice(s, s + self.chunk)
                out[:, block, k] = (self._b_ht(self.xyz_rows[block], k) @ weights).T
        return out

    def solve(self, hbht: np.ndarray, innovation: np.ndarray, valid: np.ndarray, v: int) -> np.ndarray:
        """``z = (H B Hᵀ + R)⁻¹ d`` per sample on its valid observations, 0 at the others: ``[O, B]``."""
        z = np.zeros((self.num_obs, innovation.shape[0]))
        for i in range(innovation.shape[0]):
            use = np.flatnonzero(valid[i])
            if not len(use):
                continue
            s = hbht[np.ix_(use, use)] + self.errors.sigma_o[v] ** 2 * np.eye(len(use))
            z[use, i] = la.cho_solve(la.cho_factor(s, lower=True), innovation[i, use])
        return z
