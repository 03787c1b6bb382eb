"""The real sample files in data/: present, documented, and readable with the configs that name them."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from gnnddm.config import config_dir
from gnnddm.data.pipeline import load_data
from gnnddm.data.samples import PREFIX, resolve_path, sample_dir

SHIPPED = {
    "era5_sample_1deg.nc": "CC-BY 4.0",
    "irish_wind/wind_daily_knots.csv": "GPL-2+",
    "irish_wind/stations.csv": "GPL-2+",
    "icon_r2b4_ocean_salinity.nc": "BSD-style",
}


def _data_config(name: str):
    return OmegaConf.load(Path(config_dir()) / "data" / f"{name}.yaml")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_exists_and_its_provenance_is_documented(name):
    assert (sample_dir() / name).is_file()
    readme = (sample_dir() / "README.md").read_text()
    assert f"`{name}`" in readme and SHIPPED[name] in readme


def test_every_data_config_naming_a_sample_finds_it():
    for f in sorted((Path(config_dir()) / "data").glob("*.yaml")):
        cfg = OmegaConf.load(f)
        for key in ("path", "stations_path"):
            value = cfg.get(key)
            if isinstance(value, str) and value.startswith(PREFIX):
                assert resolve_path(value).is_file(), f"{f.name}: {key}={value}"


def test_stations_wind_config_loads_the_irish_network():
    data, split = load_data(_data_config("stations_wind"))
    assert data.kind == "stations" and data.layout == "stations-wide-csv"
    assert data.num_nodes == 12 and data.num_times == 6574
    assert data.units == ("knots",) and data.mask.all()
    assert dict(split) == {"train": 0.7, "val": 0.15, "test": 0.15}


def test_icon_mesh_config_loads_the_icon_grid():
    data, split = load_data(_data_config("icon_mesh"))
    assert data.kind == "mesh" and data.num_nodes == 20480 and data.num_times == 1
    assert data.native_edges.shape == (2, 3 * 20480)
    assert "train" in split


def test_era5_sample_loads_with_the_grid_loader():
    from gnnddm.data.grid import load_grid

    data = load_grid("sample:era5_sample_1deg.nc")
    assert data.kind == "grid" and data.num_nodes == 181 * 360 and data.num_times == 24
    assert {"t2m", "msl", "u10", "v10", "tp"} <= set(data.variables)
    assert data.mask.all()
    assert np.isclose(data.area.mean(), 1.0)
