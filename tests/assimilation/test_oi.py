"""Optimal interpolation: the blocked observation-space solve equals the dense 3D-Var analysis."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.assimilation.oi import ErrorModel, OptimalInterpolation, correlation, fit_background_errors
from gnnddm.assimilation.osse import correlated_noise, interpolation_operator, uniform_sites
from gnnddm.graph.sphere import EARTH_RADIUS_KM, haversine
from gnnddm.testing.gallery import grid_data, latlon


def _dense_analysis(data, h, errors, innovation, valid, v, form="gain"):
    """The analysis increment from B formed in full (haversine distances between all nodes), H dense:
    gain form B Hᵀ (H B Hᵀ + R)⁻¹ d, or 3D-Var's information form (B⁻¹ + Hᵀ R⁻¹ H)⁻¹ Hᵀ R⁻¹ d."""
    d = haversine(data.lat[:, None], data.lon[:, None], data.lat[None, :], data.lon[None, :]) * EARTH_RADIUS_KM
    b = errors.sigma_b[v] ** 2 * correlation(d, errors.length_km[v], errors.correlation)
    hv = h.toarray()[valid]
    r = errors.sigma_o[v] ** 2 * np.eye(len(hv))
    if form == "gain":
        return b @ hv.T @ np.linalg.solve(hv @ b @ hv.T + r, innovation[valid])
    r_inv = np.linalg.inv(r)
    return np.linalg.solve(np.linalg.inv(b) + hv.T @ r_inv @ hv, hv.T @ r_inv @ innovation[valid])


@pytest.mark.parametrize(("kind", "lengths", "form"), [
    ("gaussian", [2500.0, 1500.0], "gain"), ("soar", [2500.0, 1500.0], "gain"),
    # B⁻¹ of a Gaussian correlation is accurate only while ℓ is short against the node spacing (2,500 km)
    ("gaussian", [900.0, 700.0], "information"), ("soar", [2500.0, 1500.0], "information"),
])
def test_oi_equals_the_dense_3dvar_solve(kind, lengths, form):
    data = grid_data(8, 16, times=1)
    lat, lon = uniform_sites(30, np.random.default_rng(0))
    h = interpolation_operator(data, lat, lon)
    errors = ErrorModel(sigma_b=np.array([1.3, 0.7]), length_km=np.array(lengths),
                        sigma_o=np.array([0.5, 0.3]), correlation=kind)
    rng = np.random.default_rng(1)
    innovation = rng.standard_normal((2, 30, 2))
    valid = rng.random((2, 30, 2)) > 0.2
    rows = np.arange(data.num_nodes)
    oi = OptimalInterpolation(h, data.lat, data.lon, errors, rows, chunk=7)  # blocks that split the stencil
    out = oi.increment(innovation, valid)
    for b in range(2):
        for v in range(2):
            dense = _dense_analysis(data, h, errors, innovation[b, :, v], valid[b, :, v], v, form)
            np.testing.assert_allclose(out[b, :, v], dense, rtol=1e-6, atol=1e-9)


def test_oi_block_size_does_not_change_the_analysis():
    data = grid_data(6, 12, times=1)
    lat, lon = uniform_sites(12, np.random.default_rng(2))
    h = interpolation_operator(data, lat, lon)
    errors = ErrorModel(np.array([1.0]), np.array([2000.0]), np.array([0.4]))
    d = np.random.default_rng(3).standard_normal((1, 12, 1))
    valid = np.ones_like(d, dtype=bool)
    a = OptimalInterpolation(h, data.lat, data.lon, errors, np.arange(72), chunk=5).increment(d, valid)
    b = OptimalInterpolation(h, data.lat, data.lon, errors, np.arange(72)).increment(d, valid)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_an_accurate_observation_on_a_node_pulls_the_analysis_to_it():
    data = grid_data(6, 12, times=1)
    h = interpolation_operator(data, data.lat[[20]], data.lon[[20]])
    errors = ErrorModel(np.array([1.0]), np.array([1000.0]), np.array([1e-4]))
    out = OptimalInterpolation(h, data.lat, data.lon, errors, np.arange(72)).increment(
        np.array([[[2.5]]]), np.array([[[True]]]))
    assert out[0, 20, 0] == pytest.approx(2.5, rel=1e-6)
    assert abs(out[0, 60, 0]) < 1e-3  # far away (another hemisphere): no increment


def test_no_valid_observation_gives_no_increment():
    data = grid_data(4, 8, times=1)
    h = interpolation_operator(data, [10.0, 20.0], [0.0, 30.0])
    oi = OptimalInterpolation(h, data.lat, data.lon, ErrorModel(np.ones(1), np.full(1, 900.0), np.ones(1)),
                              np.arange(32))
    assert not oi.increment(np.ones((1, 2, 1)), np.zeros((1, 2, 1), dtype=bool)).any()


def test_fitted_statistics_recover_those_of_correlated_background_errors():
    lat, lon = latlon(45, 90)  # 4 deg
    sigma, length = np.array([2.0, 0.5]), 1200.0
    noise = correlated_noise(lat, lon, length, (40, 2), np.random.default_rng(5))
    errors = noise * sigma + np.array([0.3, 0.0])  # with a bias
    area = np.cos(np.deg2rad(lat))
    fitted_sigma, fitted_length, bias = fit_background_errors(errors, np.ones(errors.shape, dtype=bool), lat, lon,
                                                              area / area.mean())
    np.testing.assert_allclose(fitted_sigma, sigma, rtol=0.1)
    np.testing.assert_allclose(fitted_length, length, rtol=0.2)
    np.testing.assert_allclose(bias, [0.3, 0.0], atol=0.1)
