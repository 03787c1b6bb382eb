"""The model tests' graph, from :mod:`gnnddm.testing.gallery`."""

import pytest

from gnnddm.testing.gallery import grid_tensors


@pytest.fixture
def grid():
    """The 4 x 8 grid (32 nodes) as tensors, with 3 edge features and positive edge weights."""
    return grid_tensors()
