"""Unstructured mesh loader: coordinate units, levels, masks, native adjacency, the real ICON file."""

import time

import numpy as np
import pytest
import xarray as xr

from gnnddm.data.mesh import load_mesh
from gnnddm.data.plausibility import DataQualityWarning
from gnnddm.errors import ConfigError, DataError

ignore_quality = pytest.mark.filterwarnings("ignore::gnnddm.data.plausibility.DataQualityWarning")


def _octahedron(path, radians=True, units=True, with_time=True):
    """8 triangular cells of the octahedron; pole vertices carry the cell's own longitude (as real files do)."""
    signs = np.array([(sx, sy, sz) for sz in (1, -1) for sy in (1, -1) for sx in (1, -1)], dtype=float)
    c = signs / np.sqrt(3.0)
    clat, clon = np.arcsin(c[:, 2]), np.arctan2(c[:, 1], c[:, 0])
    vlat = np.stack([np.zeros(8), np.zeros(8), signs[:, 2] * np.pi / 2], axis=1)
    vlon = np.stack([np.where(signs[:, 0] > 0, 0.0, np.pi), signs[:, 1] * np.pi / 2, clon], axis=1)
    f = (lambda a: a) if radians else np.rad2deg
    unit = ("radian" if radians else "degrees") if units else None
    s = np.arange(8 * 2, dtype=np.float32).reshape(1, 2, 8) + 30.0
    s[0, 1, 3] = np.nan  # missing (fill value on disk)
    s[0, 0, 5] = 99.0  # impossible salinity
    wet = np.ones((2, 8), dtype=np.float32)
    wet[1, 0] = 0.0  # cell 0 is land at the second depth
    ds = xr.Dataset(
        {
            "clat": ("ncells", f(clat), {"units": unit} if unit else {}),
            "clon": ("ncells", f(clon), {"units": unit} if unit else {}),
            "clat_vertices": (("ncells", "nv"), f(vlat)),
            "clon_vertices": (("ncells", "nv"), f(vlon)),
            "S": (("time", "depth", "ncells") if with_time else ("depth", "ncells"), s if with_time else s[0],
                  {"units": "psu"}),
            "wet_c": (("depth", "ncells"), wet),
        },
        coords={"depth": [10.0, 30.0]},
    )
    if with_time:
        ds = ds.assign_coords(time=("time", [20000102.5], {"units": "day as %Y%m%d.%f"}))
    ds.to_netcdf(path, encoding={"S": {"_FillValue": -999.0}})
    return np.rad2deg(clat), np.rad2deg(clon)


@ignore_quality
@pytest.mark.parametrize("radians,units", [(True, True), (True, False), (False, True), (False, False)])
def test_radians_and_degrees_give_the_same_positions(tmp_path, radians, units):
    lat, lon = _octahedron(tmp_path / "m.nc", radians=radians, units=units)
    d = load_mesh(tmp_path / "m.nc")
    np.testing.assert_allclose(d.lat, lat, atol=1e-9)
    np.testing.assert_allclose(d.lon, lon, atol=1e-9)
    assert d.kind == "mesh" and d.layout == "icon"


def test_octahedron_adjacency_levels_masks_and_areas(tmp_path):
    _octahedron(tmp_path / "m.nc")
    with pytest.warns(DataQualityWarning, match=r"m.nc: masked 1 impossible value \(S_10: 1\)"):
        d = load_mesh(tmp_path / "m.nc")
    assert d.variables == ("S_10", "S_30") and d.units == ("psu", "psu")
    assert str(d.times[0]) == "2000-01-02T12:00:00.000000000"
    e = d.native_edges
    assert e.dtype == np.int64 and (np.bincount(e[1], minlength=8) == 3).all()
    assert (e[0] != e[1]).all()
    assert {tuple(x) for x in e.T} == {tuple(x) for x in e[::-1].T}
    # neighbours across an edge differ in exactly one sign of the octant
    assert all(bin(a ^ b).count("1") == 1 for a, b in e.T.tolist())
    np.testing.assert_allclose(d.area, 1.0)  # 8 congruent spherical triangles
    assert not d.mask[0, 5, 0] and d.mask[0, 5, 1]  # impossible value
    assert not d.mask[0, 3, 1]  # fill value
    assert not d.mask[0, 0, 1] and d.mask[0, 0, 0]  # land at 30 m only
    assert d.mask.sum() == 16 - 3 and (d.X[~d.mask] == 0).all()
    with pytest.warns(DataQualityWarning):
        v = load_mesh(tmp_path / "m.nc", share="vertex").native_edges
    assert (np.bincount(v[1], minlength=8) == 6).all()  # all but the opposite face


@ignore_quality
def test_levels_select_and_unknown_level_lists_available(tmp_path):
    _octahedron(tmp_path / "m.nc")
    d = load_mesh(tmp_path / "m.nc", variables=["S"], levels=[30])
    assert d.variables == ("S_30",)
    with pytest.raises(DataError, match=r"levels \[20\].*available: \[10.0, 30.0\]"):
        load_mesh(tmp_path / "m.nc", levels=[20])
    with pytest.raises(DataError, match=r"unknown variable.*'T'.*available: \['S'\]"):
        load_mesh(tmp_path / "m.nc", variables=["T"])
    with pytest.raises(ConfigError, match="edge"):
        load_mesh(tmp_path / "m.nc", share="face")


@ignore_quality
def test_wet_only_drops_land_cells_and_renumbers_edges(tmp_path):
    _octahedron(tmp_path / "m.nc")
    d = load_mesh(tmp_path / "m.nc", levels=[30], wet_only=True)
    assert d.num_nodes == 7
    e = d.native_edges
    assert e.max() < 7 and e.shape[1] == 3 * 8 - 2 * 3  # cell 0's 3 edges gone, both directions
    np.testing.assert_allclose(d.area.mean(), 1.0)


@ignore_quality
def test_file_without_time_has_one_step(tmp_path):
    _octahedron(tmp_path / "m.nc", with_time=False)
    d = load_mesh(tmp_path / "m.nc")
    assert d.num_times == 1 and d.X.shape == (1, 8, 2)


def test_cam_se_columns_in_degrees_with_cf_time(tmp_path):
    n = 5
    ds = xr.Dataset(
        {"T": (("time", "lev", "ncol"), np.full((3, 2, n), 250.0, np.float32), {"units": "K"}),
         "lat": ("ncol", np.linspace(-60, 60, n), {"units": "degrees_north"}),
         "lon": ("ncol", np.linspace(0, 350, n), {"units": "degrees_east"})},
        coords={"lev": [500.0, 850.0],
                "time": ("time", [0.0, 1.0, 2.0], {"units": "days since 2000-02-28", "calendar": "noleap"})},
    )
    ds.to_netcdf(tmp_path / "cam.nc")
    d = load_mesh(tmp_path / "cam.nc", time=["2000-03-01", None])
    assert d.layout == "cam-se" and d.variables == ("T_500", "T_850")
    assert [str(t)[:10] for t in d.times] == ["2000-03-01", "2000-03-02"]  # noleap: no Feb 29
    np.testing.assert_allclose(d.lon, [0.0, 87.5, 175.0, -97.5, -10.0])
    assert d.native_edges is None and (d.area == 1).all() and d.mask.all()


def test_missing_file_and_missing_cell_dimension(tmp_path):
    with pytest.raises(DataError, match="gone.nc"):
        load_mesh(tmp_path / "gone.nc")
    xr.Dataset({"a": (("x",), np.zeros(3))}).to_netcdf(tmp_path / "flat.nc")
    with pytest.raises(DataError, match="flat.nc: no cell dimension"):
        load_mesh(tmp_path / "flat.nc")


def test_real_icon_file():
    t0 = time.perf_counter()
    d = load_mesh("sample:icon_r2b4_ocean_salinity.nc")
    seconds = time.perf_counter() - t0
    assert d.num_nodes == 20480 and d.variables == ("S_10", "S_30", "S_50")
    assert str(d.times[0])[:10] == "2098-11-18"
    e = d.native_edges
    assert (np.bincount(e[1], minlength=d.num_nodes) == 3).all()
    assert (e[0] != e[1]).all()
    key = e[0] * d.num_nodes + e[1]
    assert np.array_equal(np.sort(key), np.sort(e[1] * d.num_nodes + e[0]))  # symmetric
    assert len(np.unique(key)) == key.size
    assert d.mask.sum(axis=(0, 1)).tolist() == [12614, 12614, 12350]  # wet cells per depth
    assert d.warnings == ()
    np.testing.assert_allclose(d.area.mean(), 1.0)
    assert seconds < 5.0, f"loading the 20,480-cell mesh took {seconds:.2f} s"
