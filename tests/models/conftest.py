"""Tiny gallery graphs shared by the model tests."""

import numpy as np
import pytest
import torch

from gnnddm.graph.grid import grid_edges
from gnnddm.models.graph import prepare_graph


def grid_edge_index(nlat: int, nlon: int) -> np.ndarray:
    """8-neighbour lat-lon grid, periodic in longitude, both directions of every edge."""
    return grid_edges(nlat, nlon, neighbours=8, periodic=True)


@pytest.fixture
def grid():
    """A 4x8 grid (32 nodes) with 3 edge features and positive edge weights."""
    gen = torch.Generator().manual_seed(0)
    ei = torch.as_tensor(grid_edge_index(4, 8))
    attr = torch.randn(ei.shape[1], 3, generator=gen)
    weight = torch.rand(ei.shape[1], generator=gen) + 0.1
    return dict(edge_index=ei, num_nodes=32, edge_attr=attr, edge_weight=weight)


def build(g: dict):
    return prepare_graph(g["edge_index"], g["num_nodes"], edge_attr=g["edge_attr"], edge_weight=g["edge_weight"])
