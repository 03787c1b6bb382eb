"""Edge weights: how strongly two nodes are coupled (positive; larger = stronger).

The partitioner cuts where the weights are small, so the weights decide which nodes a subdomain keeps
together. Two ingredients, chosen by the builders' ``weights`` option:

- ``"distance"``: a kernel of the great-circle distance ``d`` (radians) with length scale ``L``
  (default: the median edge length, so typical edges get weights of order 1):

  - ``"gaussian"``: ``w = exp(−(d / L)²)``
  - ``"inverse"``: ``w = 1 / (d / L + ε)`` with ``ε =`` :data:`INVERSE_EPS` (finite at ``d = 0``)
  - ``"uniform"``: ``w = 1``

- ``"correlation"``: the *atmospheric dependency* of the endpoints, ``w = mean_v |r_v(i, j)|``, the
  absolute Pearson correlation of their training-period series of each variable ``v``, over the time
  steps where both are valid, averaged over the variables where it is defined (at least two common
  valid steps and non-constant series), floored at :data:`CORRELATION_FLOOR` so that weights stay > 0.
  Nodes whose weather moves together (along a front, within an air mass) end up in the same subdomain.
- ``"product"``: kernel × correlation.

Only the training split is used, so validation and test data never leak into the graph.
"""

from __future__ import annotations

import numpy as np

KERNELS = ("gaussian", "inverse", "uniform")
WEIGHTINGS = ("distance", "correlation", "product")
INVERSE_EPS = 1e-2
"""``ε`` of the inverse kernel: caps the weight of zero-length edges (coincident points) at ``1 / ε``."""
CORRELATION_FLOOR = 1e-3
"""Smallest correlation weight: uncorrelated or constant series still give a positive weight."""
CHUNK_ELEMENTS = 1 << 22
"""Edge chunk size of the correlation in ``edges × steps × variables`` elements (a few tens of MB)."""


def median_length(distance: np.ndarray) -> float:
    """Median of the positive edge lengths (1 when there are none), the default kernel length scale."""
    d = np.asarray(distance)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def kernel_weights(distance: np.ndarray, kernel: str = "gaussian", length_scale: float | None = None) -> np.ndarray:
    """Distance kernel ``w(d)`` (see module docstring) as float32 ``[E]``; ``length_scale`` in radians.

    Evaluated in float32, the precision of the result (one transcendental per edge on 8M edges).
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    d = np.asarray(distance, dtype=np.float32)
    if kernel == "uniform":
        return np.ones(d.shape, dtype=np.float32)
    scale = median_length(d) if length_scale is None else float(length_scale)
    r = d / np.float32(scale)
    w = np.exp(-(r * r)) if kernel == "gaussian" else 1.0 / (r + np.float32(INVERSE_EPS))
    # exp(-r²) underflows to 0 for edges far beyond L; keep every weight positive.
    return np.maximum(w, np.finfo(np.float32).tiny).astype(np.float32, copy=False)


def correlation_weights(
    X: np.ndarray,
    mask: np.ndarray,
    edge_index: np.ndarray,
    floor: float = CORRELATION_FLOOR,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> np.ndarray:
    """Mean absolute Pearson correlation of the endpoints' series, float32 ``[E]`` in ``[floor, 1]``.

    Parameters
    ----------
    X : float [T, N, V]
        The (training) time series; entries where ``mask`` is False are ignored.
    mask : bool [T, N, V]
    edge_index : int [2, E]
    floor : float
        Lower bound of the returned weights.
    chunk_elements : int
        Edges are processed in chunks of ``chunk_elements / (T·V)`` to bound memory (O(E·T·V) work).

    For each edge and variable, with ``m_t`` = both endpoints valid at ``t`` and ``n = Σ m_t``,

        r = (Σ m x_i x_j − Σ m x_i · Σ m x_j / n) / sqrt(var_i · var_j),  var_i = Σ m x_i² − (Σ m x_i)² / n

    (all sums over ``t`` in float64). The endpoints are ordered (smaller id first) before computing, so
    the two directions of an edge get bit-identical weights. A self loop gets 1 (the floor if the series is constant).
    """
    X = np.asarray(X)
    mask = np.asarray(mask, dtype=bool)
    t, n_nodes, v = X.shape
    # node-major copies make each edge's gather one contiguous block of T·V values
    xs = np.empty((n_nodes, t, v), dtype=np.float32)
    xs[...] = X.transpose(1, 0, 2)
    all_valid = bool(mask.all())
    ms = None
    if not all_valid:
        ms = np.ascontiguousarray(mask.transpose(1, 0, 2))
        xs[~ms] = 0.0
    if all_valid:
        # every pair shares all T steps: standardise each node once, then r = Σ_t z_i z_j
        # (float32 throughout: the node-major copy is the only array of size N·T·V kept alive)
        mean = xs.mean(axis=1, dtype=np.float64)
        xs -= mean[:, None, :].astype(np.float32)
        norm = np.sqrt(np.square(xs).sum(axis=1, dtype=np.float64))
        # a constant series centres to (almost) exactly 0: its correlation is undefined
        defined_node = norm > 1e-6 * np.abs(mean) * np.sqrt(t)
        defined_node &= norm > 0
        xs *= np.where(defined_node, 1.0 / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)[:, None, :]
    edge_index = np.asarray(edge_index, dtype=np.int64)
    lo = np.minimum(edge_index[0], edge_index[1])
    hi = np.maximum(edge_index[0], edge_index[1])
    num_edges = lo.shape[0]
    out = np.empty(num_edges, dtype=np.float32)
    chunk = max(1, chunk_elements // max(1, t * v))
    for start in range(0, num_edges, chunk):
        a, b = lo[start:start + chunk], hi[start:start + chunk]
        if all_valid:
            r = np.einsum("etv,etv->ev", xs[a], xs[b], dtype=np.float64)
            defined = defined_node[a] & defined_node[b]
        else:
            r, defined = _masked_pearson(xs[a], xs[b], ms[a] & ms[b])
        r = np.where(defined, np.minimum(np.abs(r), 1.0), 0.0)
        count = defined.sum(axis=1)
        mean_r = np.divide(r.sum(axis=1), count, out=np.zeros(len(a)), where=count > 0)
        out[start:start + chunk] = np.maximum(mean_r, floor)
    return out


def _masked_pearson(xi: np.ndarray, xj: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation over the common valid steps; ``[C, T, V]`` inputs, ``[C, V]`` outputs."""
    xi = np.where(m, xi, 0.0).astype(np.float64)
    xj = np.where(m, xj, 0.0).astype(np.float64)
    n = m.sum(axis=1).astype(np.float64)
    n_safe = np.maximum(n, 1.0)
    si, sj = xi.sum(axis=1), xj.sum(axis=1)
    cov = np.einsum("ctv,ctv->cv", xi, xj) - si * sj / n_safe
    var_i = np.einsum("ctv,ctv->cv", xi, xi) - si * si / n_safe
    var_j = np.einsum("ctv,ctv->cv", xj, xj) - sj * sj / n_safe
    scale_i = np.maximum(np.einsum("ctv,ctv->cv", xi, xi), 1e-300)
    scale_j = np.maximum(np.einsum("ctv,ctv->cv", xj, xj), 1e-300)
    # a variance at round-off level of the raw second moment means a constant series: undefined
    defined = (n >= 2) & (var_i > 1e-12 * scale_i) & (var_j > 1e-12 * scale_j)
    denom = np.sqrt(np.where(defined, var_i * var_j, 1.0))
    return np.where(defined, cov / denom, 0.0), defined


def edge_weights(
    distance: np.ndarray,
    edge_index: np.ndarray,
    kernel: str = "gaussian",
    length_scale: float | None = None,
    weights: str = "distance",
    X: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Edge weights float32 ``[E]`` (> 0) of the given ``weights`` kind (see module docstring).

    ``X`` and ``mask`` (``[T, N, V]``, the training steps) are needed for ``"correlation"`` and
    ``"product"``.
    """
    if weights not in WEIGHTINGS:
        raise ValueError(f"weights must be one of {WEIGHTINGS}, got {weights!r}")
    if weights == "distance":
        return kernel_weights(distance, kernel, length_scale)
    if X is None or mask is None:
        raise ValueError(f"weights={weights!r} needs the time series X and mask")
    corr = correlation_weights(X, mask, edge_index)
    if weights == "correlation":
        return corr
    w = kernel_weights(distance, kernel, length_scale) * corr
    return np.maximum(w, np.finfo(np.float32).tiny).astype(np.float32)
