"""Synthetic series as a zarr store: same data as the netCDF file, banded chunks, CLI, atomic writes."""

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from gnnddm.commands.data import main
from gnnddm.data import synthetic
from gnnddm.data.grid import load_grid
from gnnddm.data.synthetic import ZARR_LAT_BAND, write


def _size(store):
    return sum(f.stat().st_size for f in store.rglob("*") if f.is_file())


def test_zarr_loads_exactly_as_netcdf(tmp_path):
    params = {"resolution": 5.625, "steps": 10, "seed": 2, "chunk_time": 3}
    nc = load_grid(write(tmp_path / "s.nc", **params))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated zarr format 2: read back without any warning
        store = write(tmp_path / "s.zarr", **params)
        zr = load_grid(store)
        opened = xr.open_zarr(store, chunks=None)
    assert zr.layout == nc.layout == "synthetic"
    assert zr.variables == nc.variables == ("t2m", "msl", "u10", "v10")
    assert zr.X.dtype == nc.X.dtype
    for name in ("X", "mask", "times", "lat", "lon"):
        np.testing.assert_array_equal(getattr(zr, name), getattr(nc, name), err_msg=name)
    assert opened["time"].dtype == np.dtype("datetime64[ns]")
    with xr.open_dataset(tmp_path / "s.nc") as ref:
        assert opened.attrs == ref.attrs
        for name in ref.variables:
            assert opened[name].attrs == ref[name].attrs, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nc", "s.zarr"]  # no temporary left behind


@pytest.mark.parametrize(("resolution", "shape"), [(5.625, (32, 64)), (1.40625, (128, 256))])
def test_zarr_chunks_are_one_step_and_a_band_of_rows(tmp_path, resolution, shape):
    store = write(tmp_path / "s.zarr", resolution=resolution, steps=2)
    root = zarr.open_group(store, mode="r")
    for v in synthetic.VARIABLES:
        assert root[v].shape == (2, *shape)
        assert root[v].chunks == (1, min(shape[0], ZARR_LAT_BAND), shape[1])


def test_cli_writes_a_zarr_store_and_prints_its_size(tmp_path, capsys):
    store = tmp_path / "out" / "s.zarr"
    for seed in (0, 1):  # the second run replaces the first store
        args = ["synth", "--resolution", "5.625", "--steps", "4", "--seed", str(seed), "--output", str(store)]
        assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"wrote {store}: 4 steps") and "grid 32 x 64" in line
    assert line.endswith(f"{_size(store) / 2**20:.1f} MiB")
    assert store.is_dir() and [p.name for p in store.parent.iterdir()] == ["s.zarr"]
    assert xr.open_zarr(store, chunks=None).attrs["seed"] == 1


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_store_behind(tmp_path, monkeypatch, error):
    kept = write(tmp_path / "kept.zarr", resolution=11.25, steps=4)
    before = load_grid(kept).X
    real = synthetic.iter_chunks

    def fail_after_first_block(*args, **kwargs):
        blocks = real(*args, **kwargs)
        yield next(blocks)
        raise error("interrupted")

    monkeypatch.setattr(synthetic, "iter_chunks", fail_after_first_block)
    for name in ("new.zarr", "kept.zarr"):
        with pytest.raises(error):
            write(tmp_path / name, resolution=11.25, steps=4, seed=5, chunk_time=2)
    assert [p.name for p in tmp_path.iterdir()] == ["kept.zarr"]
    np.testing.assert_array_equal(load_grid(kept).X, before)
