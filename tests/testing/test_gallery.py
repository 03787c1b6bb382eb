"""The gallery's docstring examples run, and its problems are deterministic."""

from __future__ import annotations

import doctest
import importlib

import numpy as np

from gnnddm.testing.gallery import grid_data, station_data


def test_docstring_examples_run():
    result = doctest.testmod(importlib.import_module("gnnddm.testing.gallery"),
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_same_call_gives_the_same_problem():
    for make in (grid_data, station_data):
        a, b = make(), make()
        for field in ("X", "mask", "lat", "lon", "area", "edge_index", "edge_weight", "edge_attr"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
