"""Fields read lazily from their file give what the eager loader gives: batches, statistics, training;
a rank reads only its rows; a damaged file or an eager load that cannot fit is one clear error."""

from __future__ import annotations

import importlib
import json
import os
import warnings

import numpy as np
import pytest
import torch

from gnnddm.data.grid import load_grid
from gnnddm.data.normalise import field_statistics, normalise, split_times
from gnnddm.data.synthetic import generate
from gnnddm.errors import DataError
from gnnddm.tasks import ForecastTask, InterpolateTask

pytestmark = pytest.mark.usefixtures("own_cache")  # synthetic files of each test's own

lazy_module = importlib.import_module("gnnddm.data.lazy")
normalise_module = importlib.import_module("gnnddm.data.normalise")  # the package exports the function


def _series(steps=12, ascending=False, gaps=True):
    """A synthetic 5.625 deg series (32 x 64) with missing entries, latitude north first or ascending."""
    ds = generate(resolution=5.625, steps=steps, seed=3)
    if not gaps:
        return ds
    t2m = ds["t2m"].values.copy()
    t2m[2, 5:9, 10:30] = np.nan  # a gap in the training steps
    t2m[9, :, 3] = np.nan  # and in a later one
    ds["t2m"] = (ds["t2m"].dims, t2m, ds["t2m"].attrs)
    return ds.isel(latitude=slice(None, None, -1)) if ascending else ds


def _write(ds, path, time_chunk=1):
    chunks = {v: {"chunksizes" if path.suffix == ".nc" else "chunks": (time_chunk, ds.sizes["latitude"],
                                                                      ds.sizes["longitude"])}
              for v in ds.data_vars}
    if path.suffix == ".nc":
        ds.to_netcdf(path, encoding=chunks)
    else:
        ds.to_zarr(path, encoding=chunks, zarr_format=2, consolidated=True)
    return path


@pytest.fixture(params=["nc", "zarr"])
def stored(request, tmp_path):
    return _write(_series(), tmp_path / f"series.{request.param}")


def _both(path, **kw):
    return load_grid(path, lazy=False, **kw), load_grid(path, lazy=True, **kw)


@pytest.mark.parametrize("ascending, coarsen", [(False, 1), (True, 1), (False, 2)])
def test_lazy_reads_equal_the_eager_arrays(tmp_path, ascending, coarsen):
    path = _write(_series(ascending=ascending), tmp_path / "s.nc")
    eager, lazy = _both(path, coarsen=coarsen)
    assert lazy.lazy and not eager.lazy and lazy.reading.startswith("lazy")
    assert lazy.X.shape == eager.X.shape and not eager.mask.all()
    assert np.array_equal(lazy.X[:], eager.X) and np.array_equal(lazy.mask[:], eager.mask)
    assert np.array_equal(lazy.X[[9, 2, 9]], eager.X[[9, 2, 9]]) and np.array_equal(lazy.X[4, 7:9], eager.X[4, 7:9])
    nodes = np.array([700, 3, 1500, 64, 65, 1000]) % eager.num_nodes
    x, m = lazy.X.reader.fields(np.array([2, 9]), nodes)
    assert np.array_equal(x, eager.X[[2, 9]][:, nodes]) and np.array_equal(m, eager.mask[[2, 9]][:, nodes])
    sub = lazy.select_times(np.arange(3, 8))
    assert np.array_equal(sub.X[:], eager.X[3:8]) and sub.num_times == 5


def test_the_whole_series_of_lazy_data_is_never_made_silently(stored):
    lazy = load_grid(stored, lazy=True)
    with pytest.raises(DataError, match=r"read lazily .* data.lazy=false"):
        np.asarray(lazy.X)


def test_streaming_statistics_equal_the_two_pass_values(stored, monkeypatch):
    eager = load_grid(stored, lazy=False)
    train = np.arange(8)
    x, m = eager.X[train].astype(np.float64), eager.mask[train]
    n = m.sum(axis=(0, 1))
    mean = np.where(m, x, 0.0).sum(axis=(0, 1)) / n
    std = np.sqrt(np.where(m, (x - mean) ** 2, 0.0).sum(axis=(0, 1)) / n)
    one_block = field_statistics(eager, train)
    assert np.array_equal(one_block[0], mean) and np.array_equal(one_block[1], std)  # one block: two-pass itself
    monkeypatch.setattr(normalise_module, "CHUNK_BYTES", 3 * eager.num_nodes * eager.num_vars * 8)  # 3 steps
    for data in _both(stored):
        got_mean, got_std, counts = field_statistics(data, train)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-13)
        np.testing.assert_allclose(got_std, std, rtol=1e-12)
        assert np.array_equal(counts, eager.mask.sum(axis=1))


def test_lazy_and_eager_give_identical_batches_and_counts(stored):
    eager, lazy = _both(stored)
    split = split_times(eager.times)
    eager, lazy = normalise(eager, split.train), normalise(lazy, split.train)
    assert np.array_equal(eager.mean, lazy.mean) and np.array_equal(eager.std, lazy.std)
    assert np.array_equal(lazy.X[:], eager.X)
    nodes = torch.arange(100, 900)
    for make in (lambda d: ForecastTask(d, history=2), lambda d: InterpolateTask(d)):
        te, tl = make(eager), make(lazy)
        anchors = te.split_anchors(split)["train"][:4]
        assert np.array_equal(te.valid_counts(anchors), tl.valid_counts(anchors))
        for rows in (None, nodes):
            be = te.batch(anchors, np.random.default_rng(1), nodes=rows)
            bl = tl.batch(anchors, np.random.default_rng(1), nodes=rows)
            for name in ("x", "y", "w", "base", "truth", "valid"):
                assert torch.equal(getattr(be, name), getattr(bl, name)), name


def test_statistics_of_lazy_data_are_cached_by_the_data_identity(stored, tmp_path):
    train = np.arange(8)
    first = normalise(load_grid(stored, lazy=True), train)
    again = normalise(load_grid(stored, lazy=True), train)
    assert "streamed" in first.reading and "from the cache" in again.reading
    assert np.array_equal(first.mean, again.mean) and np.array_equal(first.X.reader.step_counts,
                                                                      again.X.reader.step_counts)
    other = normalise(load_grid(stored, lazy=True), np.arange(6))  # another training split: not that entry
    assert "streamed" in other.reading
    assert len(list((tmp_path / "cache" / "stats").glob("*.json"))) == 2


def test_a_rank_reads_only_the_latitude_rows_of_its_nodes(stored):
    lazy = load_grid(stored, lazy=True)
    nlat, nlon = lazy.grid_shape
    reader = lazy.X.reader
    rows = np.arange(nlon * 4, nlon * 10)  # six latitude rows, as a band of subdomains
    before = reader.points_read
    reader.fields(np.array([1, 5, 5]), rows)
    assert reader.points_read - before == 2 * 6 * nlon * lazy.num_vars  # two distinct steps, six rows
    scattered = np.array([3, nlon * 20 + 7])  # two nodes in two rows: two rows, not the band between
    before = reader.points_read
    reader.fields(np.array([0]), scattered)
    assert reader.points_read - before == 2 * nlon * lazy.num_vars


def test_a_store_chunked_over_all_times_is_read_with_a_rechunk_warning(tmp_path):
    path = _write(_series(), tmp_path / "whole.zarr", time_chunk=12)
    with pytest.warns(UserWarning, match="chunks of the whole time axis.*rechunk"):
        load_grid(path, lazy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_grid(path, lazy=False)  # eager reads it once: nothing to say


def test_an_eager_load_that_cannot_fit_names_the_file_its_size_and_the_lazy_option(stored, monkeypatch):
    monkeypatch.setattr(lazy_module, "available_memory", lambda: 10_000)
    with pytest.raises(DataError, match=rf"{stored.name}: loading 12 steps .* GB.*data.lazy=true"):
        load_grid(stored, lazy=False)
    assert load_grid(stored, lazy="auto", eager_max_gb=1e-6).lazy  # auto: lazy past the threshold


def _train_args(path, tmp_path, *extra):
    return ["data=era5", f"data.path={path}", "data.variables=[t2m,msl]", "model=sage", "model.hidden=8",
            "model.layers=2", "partition.num_parts=2", "partition.overlap=2", "trainer.max_iterations=6",
            "trainer.eval_every=3", "trainer.batch_size=2", "trainer.progress=false",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", *extra]


@pytest.mark.slow
def test_training_on_lazy_data_follows_the_eager_trajectory(tmp_path):
    from gnnddm.config import compose
    from gnnddm.training import train

    path = _write(_series(), tmp_path / "s.zarr")
    runs = {}
    for lazy in ("false", "true"):
        runs[lazy] = train(compose(_train_args(path, tmp_path, f"data.lazy={lazy}", "ddm=asm",
                                               f"output_dir={tmp_path / lazy}")))
    assert runs["true"]["data"]["reading"].startswith("lazy") and runs["true"]["data"]["points_read"] > 0
    assert runs["true"]["final"] == runs["false"]["final"]
    assert "data_wait_seconds" in runs["true"]["accounting"]


@pytest.mark.slow
def test_a_damaged_chunk_met_in_training_fails_the_run_naming_file_variable_and_time(tmp_path):
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train
    from gnnddm.training.checkpoint import find_checkpoint

    # complete fields: the set-up then reads only the validation and test steps (the baselines), and the
    # training steps are first read by the batches
    path = _write(_series(gaps=False), tmp_path / "s.zarr")
    args = _train_args(path, tmp_path, "data.lazy=true", "trainer.checkpoint_every=1",
                       f"output_dir={tmp_path / 'run'}", "trainer.max_iterations=40",
                       "seed=1")  # its second batch is the first to read the damaged step
    train(compose(_train_args(path, tmp_path, "data.lazy=true", "trainer.max_iterations=1",
                              f"output_dir={tmp_path / 'first'}")))  # the statistics are cached now
    # a training step's chunk goes bad in place (same size and time: the cached statistics still apply),
    # as a disk or a network file system can fail under a running training
    chunk = path / "msl" / "6.0.0"
    st = chunk.stat()
    chunk.write_bytes(b"\xff" * st.st_size)
    os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataError, match=r"s.zarr: variable 'msl' at time 2000-01-02T12:00 cannot be read"):
        train(compose(args))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "'msl'" in summary["error"]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"
    failed_at = max(m.step for m in MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
                    .get_metric_history(run.info.run_id, "cost/rounds"))
    state = find_checkpoint(tmp_path / "run", 0, 1)  # the last checkpoint, intact and loadable
    assert failed_at >= 1 and state["iteration"] == failed_at
