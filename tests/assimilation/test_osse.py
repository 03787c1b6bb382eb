"""The OSSE's pieces: observation operator, domain test, sites and correlated background noise."""

from __future__ import annotations

import numpy as np
import pytest

from gnnddm.assimilation.osse import correlated_noise, inside_domain, interpolation_operator, uniform_sites
from gnnddm.testing.gallery import grid_data, latlon, weather_data


def test_bilinear_operator_is_exact_for_fields_linear_in_latitude_and_longitude():
    data = grid_data(18, 36, times=1)
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-80, 80, 50), rng.uniform(-170, 165, 50)  # inside the rows and columns, no wrap
    h = interpolation_operator(data, lat, lon)
    field = 2.0 * data.lat - 0.5 * data.lon + 3.0
    np.testing.assert_allclose(h @ field, 2.0 * lat - 0.5 * lon + 3.0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(h.sum(axis=1)).ravel(), 1.0)
    assert np.diff(h.indptr).max() <= 4


def test_a_site_on_a_node_reads_that_node_and_longitude_wraps_around():
    data = grid_data(6, 12, times=1)
    h = interpolation_operator(data, data.lat[[7, 20]], data.lon[[7, 20]])
    np.testing.assert_allclose(h.toarray()[[0, 1], [7, 20]], 1.0)
    # between the last column (150 E) and the first (-180 = 180): half of each
    lat0 = data.lat[0]
    h = interpolation_operator(data, [lat0], [165.0]).toarray()[0]
    np.testing.assert_allclose(h[[11, 0]], 0.5)


def test_mesh_operator_uses_inverse_distance_over_the_nearest_nodes():
    lat, lon = np.random.default_rng(1).uniform(-60, 60, 200), np.random.default_rng(2).uniform(-180, 180, 200)
    data = weather_data(lat, lon, kind="mesh", times=1)
    h = interpolation_operator(data, [lat[5], 10.0], [lon[5], 20.0]).toarray()
    assert h[0, 5] == pytest.approx(1.0)
    assert h[1].sum() == pytest.approx(1.0) and (h[1] > 0).sum() == 3


def test_sites_outside_a_regional_grid_are_outside_the_domain():
    lat, lon = latlon(10, 10)
    lat, lon = 40 + (lat + 90) / 18, -10 + (lon + 180) / 18  # rows 40.5-49.5 N, columns 10 W-8 E: not periodic
    data = weather_data(lat, lon, grid_shape=(10, 10), times=1)
    inside = inside_domain(data, [45.0, 45.0, 60.0, 45.0, 40.2], [0.0, 30.0, 0.0, -9.0, 8.8])
    assert inside.tolist() == [True, False, False, True, True]  # the outer cells' edges are in
    assert inside_domain(grid_data(6, 12, times=1), [89.0, -89.0], [179.0, 0.0]).all()  # global: every site


def test_uniform_sites_are_seeded_and_cover_the_sphere_by_area():
    a, b = uniform_sites(20000, np.random.default_rng(3)), uniform_sites(20000, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    # equal area: the fraction of sites north of 30 N is (1 - sin 30) / 2 = 0.25
    assert np.mean(a[0] > 30.0) == pytest.approx(0.25, abs=0.01)


def test_correlated_noise_has_unit_variance_and_the_gaussian_correlation_at_the_length_scale():
    lat, lon = latlon(36, 72)  # 5 deg
    length = 1500.0
    noise = correlated_noise(lat, lon, length, (200, 2), np.random.default_rng(4))
    samples = noise.transpose(0, 2, 1).reshape(-1, len(lat))  # [400, N]
    equator = np.flatnonzero(np.abs(lat) < 5)
    assert samples[:, equator].std(axis=0).mean() == pytest.approx(1.0, abs=0.05)
    # pairs along a row near the equator, about one length scale apart: correlation exp(-d² / 2ℓ²)
    row = equator[:72]
    spacing = 5.0 * 111.19 * np.cos(np.deg2rad(lat[row[0]]))  # km between neighbouring columns
    shift = int(round(length / spacing))
    pairs = [np.corrcoef(samples[:, row[i]], samples[:, row[(i + shift) % 72]])[0, 1] for i in range(72)]
    assert np.mean(pairs) == pytest.approx(np.exp(-0.5 * (shift * spacing / length) ** 2), abs=0.08)
