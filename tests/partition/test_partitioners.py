"""Partitioners (metis, random, contiguous, geometric) and the ``partition`` config group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gnnddm.errors import ConfigError
from gnnddm.graph.sphere import haversine
from gnnddm.partition import Partition, get_partitioner, partition_graph, symmetric_adjacency
from gnnddm.partition.metrics import edge_cut, imbalance

ROOT = Path(__file__).resolve().parents[2]
ERA5 = ROOT / "data" / "era5_sample_1deg.nc"


@pytest.fixture(scope="module")
def era5_grid():
    """The ERA5 1° grid of the sample file: (edge_index, edge_weight, lat, lon), 65,160 nodes."""
    import xarray as xr

    from gnnddm.graph.grid import grid_edges

    with xr.open_dataset(ERA5) as ds:
        la, lo = ds.latitude.values, ds.longitude.values
    lat = np.repeat(la, lo.size)
    lon = np.tile((lo + 180.0) % 360.0 - 180.0, la.size)
    ei = grid_edges(la.size, lo.size, neighbours=8)
    d = haversine(lat[ei[0]], lon[ei[0]], lat[ei[1]], lon[ei[1]])
    w = np.exp(-0.5 * (d / np.median(d)) ** 2)
    return ei, w, lat, lon


def test_metis_cuts_far_less_than_random_on_era5_grid(era5_grid):
    ei, w, lat, lon = era5_grid
    n = lat.size
    assert n == 181 * 360
    a = symmetric_adjacency(ei, n, w)
    parts = get_partitioner("metis")(ei, n, 8, edge_weight=w, seed=0)
    rand = get_partitioner("random")(ei, n, 8, seed=0)
    assert np.bincount(parts).size == 8
    assert imbalance(parts, 8) <= 1.05
    assert edge_cut(a, parts)[1] < edge_cut(a, rand)[1] / 5


def test_metis_is_deterministic_for_a_seed(era5_grid):
    ei, w, _, _ = era5_grid
    n = int(ei.max()) + 1
    first = get_partitioner("metis")(ei, n, 16, edge_weight=w, seed=3)
    again = get_partitioner("metis")(ei, n, 16, edge_weight=w, seed=3)
    assert np.array_equal(first, again)


def test_metis_single_part_is_all_zeros(grid4x8):
    ei, n, _, _ = grid4x8
    parts = get_partitioner("metis")(ei, n, 1)
    assert parts.dtype == np.int64 and not parts.any()


def test_metis_follows_strong_couplings():
    # two 4-cliques joined by weak edges: a 2-way cut must split only the weak ones
    ei = np.array([(a, b) for a in range(8) for b in range(8) if a != b and (a < 4) == (b < 4)]).T
    weak = np.array([[0, 4, 1, 5], [4, 0, 5, 1]])
    ei = np.concatenate([ei, weak], axis=1)
    w = np.concatenate([np.full(ei.shape[1] - 4, 10.0), np.full(4, 0.1)])
    parts = get_partitioner("metis")(ei, 8, 2, edge_weight=w, seed=0)
    assert len(set(parts[:4])) == 1 and len(set(parts[4:])) == 1 and parts[0] != parts[4]


@pytest.mark.parametrize("method", ["random", "contiguous", "geometric"])
@pytest.mark.parametrize("p", [1, 3, 5, 8])
def test_balanced_partitioners_are_exactly_balanced(era5_grid, method, p):
    ei, w, lat, lon = era5_grid
    n = lat.size
    parts = get_partitioner(method)(ei, n, p, edge_weight=w, lat=lat, lon=lon, seed=0)
    sizes = np.bincount(parts, minlength=p)
    assert sizes.size == p and sizes.max() - sizes.min() <= 1


def test_geometric_parts_are_compact(era5_grid):
    ei, w, lat, lon = era5_grid
    n = lat.size
    a = symmetric_adjacency(ei, n, w)
    geo = get_partitioner("geometric")(ei, n, 6, lat=lat, lon=lon)
    rand = get_partitioner("random")(ei, n, 6)
    assert edge_cut(a, geo)[1] < edge_cut(a, rand)[1] / 10


def test_node_weights_balance_weight_not_count():
    n = 100
    w = np.where(np.arange(n) < 50, 3.0, 1.0)  # the first half is three times as heavy
    lat = np.linspace(-80, 80, n)
    lon = np.zeros(n)
    for method in ("contiguous", "geometric"):
        parts = get_partitioner(method)(None, n, 2, node_weight=w, lat=lat, lon=lon)
        load = np.bincount(parts, weights=w)
        assert abs(load[0] - load[1]) <= 3.0, method


@pytest.mark.filterwarnings("ignore:parts .* several connected components")  # random parts
@pytest.mark.parametrize("name", ["metis", "random", "contiguous", "geometric"])
def test_config_group_makes_a_partition_from_data(tiny_data, name):
    cfg = OmegaConf.load(ROOT / "conf" / "partition" / f"{name}.yaml")
    assert next(iter(cfg)) == "_target_" and cfg._partial_ is True
    assert cfg._target_ == f"gnnddm.partition.{name}.partition"  # one target per partitioner
    assert (cfg.num_parts, cfg.overlap, cfg.seed, cfg.name) == (4, 1, 0, name)
    make = instantiate(cfg)
    part = make(tiny_data)
    assert isinstance(part, Partition)
    assert (part.num_parts, part.overlap, part.method) == (4, 1, name)
    assert sorted(np.concatenate([s.owned for s in part.subdomains]).tolist()) == list(range(32))


def test_node_weights_valid_count_uses_the_mask(tiny_data):
    mask = tiny_data.mask.copy()
    mask[:, :16] = False  # no valid data on the first 16 nodes
    data = tiny_data.replace(mask=mask)
    part = partition_graph(data, method="contiguous", num_parts=2, overlap=0, node_weights="valid_count")
    # the 16 nodes without data weigh nothing, the others 3 times x 2 variables = 6 each
    assert part.metrics["part_sizes"] == [16 + 8, 8]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_parts": 0}, r"partition\.num_parts: must be between 1 and the number of nodes \(32\)"),
        ({"num_parts": 33}, r"partition\.num_parts: must be between 1 and the number of nodes"),
        ({"overlap": -1}, r"partition\.overlap: expected an integer >= 0"),
        ({"method": "kahip"},
         r"partition\.method: unknown partitioner 'kahip'; valid: contiguous, geometric, mesh, metis"),
        ({"method": "random", "imbalance": 1.1}, r"partition\.imbalance: not an option of the random partitioner"),
        ({"imbalance": 0.9}, r"partition\.imbalance: must be >= 1\.0"),
        ({"weight_scale": 0}, r"partition\.weight_scale"),
        ({"node_weights": "area"}, r"partition\.node_weights: expected null or 'valid_count'"),
    ],
)
def test_bad_settings_raise_config_errors_naming_the_key(tiny_data, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        partition_graph(tiny_data, **{"method": "metis", **kwargs})


def test_data_without_graph_is_a_config_error(tiny_data):
    with pytest.raises(ConfigError, match="graph"):
        partition_graph(tiny_data.replace(edge_index=None), method="metis")
