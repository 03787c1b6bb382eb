"""Tiny gallery graphs shared by the model tests."""

import numpy as np
import pytest
import torch

from gnnddm.models.graph import prepare_graph


def grid_edge_index(nlat: int, nlon: int) -> np.ndarray:
    """8-neighbour lat-lon grid, periodic in longitude, both directions of every edge."""
    i, j = np.meshgrid(np.arange(nlat), np.arange(nlon), indexing="ij")
    src, dst = [], []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                ii, jj = i + di, (j + dj) % nlon
                ok = (ii >= 0) & (ii < nlat)
                src.append((ii * nlon + jj)[ok])
                dst.append((i * nlon + j)[ok])
    return np.stack([np.concatenate(src), np.concatenate(dst)])


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
