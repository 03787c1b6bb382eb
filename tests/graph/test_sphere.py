import numpy as np
import pytest

from gnnddm.graph.sphere import arc_to_chord, chord_to_arc, haversine, tangent_displacement, unit_vectors


def test_haversine_known_distances():
    assert haversine(0, 0, 0, 90) == pytest.approx(np.pi / 2)
    assert haversine(90, 0, -90, 0) == pytest.approx(np.pi)
    assert haversine(0, 0, 0, 180) == pytest.approx(np.pi)
    # across the date line: 179.5E to 179.5W is 1 degree, not 359
    assert haversine(0, 179.5, 0, -179.5) == pytest.approx(np.deg2rad(1.0))
    # all points of the pole coincide whatever their longitude
    assert haversine(90, 0, 90, 123) == pytest.approx(0.0, abs=1e-12)


def test_haversine_agrees_with_chord_of_unit_vectors():
    rng = np.random.default_rng(0)
    lat1, lat2 = rng.uniform(-90, 90, (2, 500))
    lon1, lon2 = rng.uniform(-180, 180, (2, 500))
    chord = np.linalg.norm(unit_vectors(lat1, lon1) - unit_vectors(lat2, lon2), axis=-1)
    d = haversine(lat1, lon1, lat2, lon2)
    np.testing.assert_allclose(chord_to_arc(chord), d, atol=1e-12)
    np.testing.assert_allclose(arc_to_chord(d), chord, atol=1e-12)
    assert np.array_equal(d, haversine(lat2, lon2, lat1, lon1))  # bitwise symmetric


def test_tangent_displacement_points_east_and_north():
    dx, dy = tangent_displacement(10.0, 21.0, 10.0, 20.0)  # source east of target
    assert dx > 0 and abs(dy) < 1e-2 * dx  # (the great circle bends slightly poleward)
    dx, dy = tangent_displacement(11.0, 20.0, 10.0, 20.0)  # source north of target
    assert dy == pytest.approx(np.deg2rad(1.0)) and dx == pytest.approx(0.0, abs=1e-15)
    dx, dy = tangent_displacement(0.0, -179.0, 0.0, 179.0)  # east across the date line
    assert dx == pytest.approx(np.deg2rad(2.0)) and dy == pytest.approx(0.0, abs=1e-15)


def test_tangent_displacement_length_is_great_circle_distance():
    rng = np.random.default_rng(1)
    lat1, lat2 = rng.uniform(-89, 89, (2, 200))
    lon1, lon2 = rng.uniform(-180, 180, (2, 200))
    dx, dy = tangent_displacement(lat1, lon1, lat2, lon2)
    np.testing.assert_allclose(np.hypot(dx, dy), haversine(lat1, lon1, lat2, lon2), rtol=1e-9)
    dx0, dy0 = tangent_displacement(45.0, 7.0, 45.0, 7.0)
    assert dx0 == 0.0 and dy0 == 0.0  # coincident points: no direction, no NaN
