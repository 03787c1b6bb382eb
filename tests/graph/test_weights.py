import numpy as np
import pytest

from gnnddm.graph.weights import CORRELATION_FLOOR, INVERSE_EPS, correlation_weights, kernel_weights


def test_kernels():
    d = np.array([0.0, 0.5, 1.0, 2.0, 50.0])
    g = kernel_weights(d, "gaussian", length_scale=1.0)
    np.testing.assert_allclose(g[:4], np.exp(-d[:4] ** 2), rtol=1e-6)
    assert g[-1] > 0  # far edges underflow to the smallest positive float, never 0
    inv = kernel_weights(d, "inverse", length_scale=1.0)
    np.testing.assert_allclose(inv, 1.0 / (d + INVERSE_EPS), rtol=1e-6)
    assert (kernel_weights(d, "uniform") == 1).all()
    # default length scale: the median positive edge length, 1.5
    np.testing.assert_allclose(kernel_weights(d, "gaussian")[:4], np.exp(-(d[:4] / 1.5) ** 2), rtol=1e-6)
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in (g, inv))


def series(T=30, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=T)
    X = np.stack([base, 3.0 * base + 2.0, -base, rng.normal(size=T), np.full(T, 4.0)], axis=1)
    return X[:, :, None].astype(np.float32)  # [T, 5 nodes, 1 var]


@pytest.mark.parametrize("masked", [False, True])
def test_correlation_weights(masked):
    X = series()
    mask = np.ones(X.shape, dtype=bool)
    if masked:  # the masked computation must agree; hidden entries hold junk that must be ignored
        mask[0, 3, 0] = False
        X[0, 3, 0] = 1e6
    e = np.array([[1, 2, 3, 4, 0, 2], [0, 0, 0, 0, 0, 1]])
    w = correlation_weights(X, mask, e, chunk_elements=40)
    assert w[0] == pytest.approx(1.0, abs=1e-6)  # perfectly correlated (affine map)
    assert w[1] == pytest.approx(1.0, abs=1e-6)  # anti-correlated: absolute value
    assert CORRELATION_FLOOR <= w[2] < 0.5  # independent noise
    assert w[3] == pytest.approx(CORRELATION_FLOOR)  # constant series: undefined, floored
    assert w[4] == pytest.approx(1.0, abs=1e-6)  # self loop
    assert w[5] == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(w, correlation_weights(X, mask, e[::-1], chunk_elements=40))  # symmetric


def test_correlation_ignores_masked_steps_and_averages_defined_variables():
    T = 20
    rng = np.random.default_rng(2)
    a = rng.normal(size=T)
    X = np.zeros((T, 2, 2), dtype=np.float32)
    X[:, 0, 0], X[:, 1, 0] = a, 2 * a  # variable 0: correlation 1
    X[:, 0, 1], X[:, 1, 1] = a, rng.normal(size=T)  # variable 1 is never valid at node 1
    mask = np.ones(X.shape, dtype=bool)
    mask[:, 1, 1] = False
    X[:5, 1, 0] = -7.0  # corrupted steps, flagged invalid
    mask[:5, 1, 0] = False
    w = correlation_weights(X, mask, np.array([[0], [1]]))
    assert w[0] == pytest.approx(1.0, abs=1e-6)
