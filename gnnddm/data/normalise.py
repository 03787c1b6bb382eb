"""Time splits and normalisation with statistics from the training split only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnnddm.data.times import covers, time_mask
from gnnddm.data.weather_graph import WeatherGraphData
from gnnddm.errors import ConfigError
from gnnddm.schema.data import SplitConfig
from gnnddm.schema.fields import check_args


@dataclass(frozen=True)
class TimeSplit:
    """Index arrays of the time steps in each split (sorted, disjoint, contiguous in time)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        return f"TimeSplit(train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"


def split_times(times: np.ndarray, train=0.7, val=0.15, test=None) -> TimeSplit:
    """Split time steps into contiguous train / val / test blocks.

    Each of ``train``, ``val``, ``test`` is either a fraction in (0, 1] of the time steps, or a
    ``[start, end]`` pair of dates (inclusive; an end given as a day includes that whole day, as for
    ``data.time``: :mod:`gnnddm.data.times`). With fractions the
    blocks follow each other in time (train first); ``test`` defaults to the rest.
    """
    check_args(SplitConfig, "data.split", train=train, val=val, test=test)
    t = len(times)
    if all(_is_fraction(v) or v is None for v in (train, val, test)):
        ftr, fva = float(train), float(val or 0.0)
        fte = 1.0 - ftr - fva if test is None else float(test)
        n_tr = max(1, int(round(ftr * t)))
        n_va = int(round(fva * t))
        n_te = min(t - n_tr - n_va, int(round(fte * t))) if test is not None else t - n_tr - n_va
        idx = np.arange(t)
        return TimeSplit(idx[:n_tr], idx[n_tr : n_tr + n_va], idx[n_tr + n_va : n_tr + n_va + max(n_te, 0)])
    out = {}
    for name, rng in (("train", train), ("val", val), ("test", test)):
        if rng is None:
            out[name] = np.arange(0)
            continue
        out[name] = np.nonzero(time_mask(times, rng, f"data.split.{name}"))[0]
    if len(out["train"]) == 0:
        raise ConfigError(f"data.split.train: the range {train} selects no time step; data covers {covers(times)}")
    return TimeSplit(**out)


def _is_fraction(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def normalise(data: WeatherGraphData, train_index: np.ndarray) -> WeatherGraphData:
    """Zero mean / unit variance per variable, statistics from the valid entries of ``train_index`` only.

    Returns a copy with ``normalised=True`` and ``mean`` / ``std`` set; invalid entries stay 0. The
    statistics come from one streaming pass (:func:`field_statistics`), for data in memory and for data
    read lazily alike, so both give the same values; lazily read data keeps its fields in the file and
    normalises what it reads (with the same arithmetic), and its statistics and per-step valid counts are
    cached by the data's identity (:func:`gnnddm.data.stats_cache.cached_statistics`).
    """
    if data.normalised:
        raise ValueError("data is already normalised")
    if data.lazy:
        from gnnddm.data.lazy import LazyField
        from gnnddm.data.stats_cache import cached_statistics

        (mean, std, counts), note = cached_statistics(data, train_index, field_statistics)
        reader = data.X.reader.normalised(mean, std).with_counts(counts)
        return data.replace(X=LazyField(reader, "X"), mask=LazyField(reader, "mask"), mean=mean, std=std,
                            normalised=True, reading=f"{data.reading}; {note}")
    mean, std, _ = field_statistics(data, train_index)
    X = np.empty_like(data.X)
    for c in time_chunks(data.num_times, data.num_nodes, data.num_vars):
        X[c] = np.where(data.mask[c], ((data.X[c] - mean) / std).astype(np.float32), np.float32(0.0))
    return data.replace(X=X, mean=mean, std=std, normalised=True)


#: bytes of float64 values one chunk of the streaming statistics holds (a few time steps at 0.25 deg)
CHUNK_BYTES = 2**27


def time_chunks(steps: int, nodes: int, variables: int) -> list[slice]:
    """Consecutive blocks of time steps of about :data:`CHUNK_BYTES` (as float64): the same blocks for the
    same shape, so eager and lazy data are reduced in the same order."""
    size = max(1, CHUNK_BYTES // max(1, nodes * variables * 8))
    return [slice(i, min(i + size, steps)) for i in range(0, steps, size)]


def read_block(data: WeatherGraphData, steps) -> tuple[np.ndarray, np.ndarray]:
    """``(X, mask)`` of the time steps ``steps`` (a slice, index array or boolean mask): one read of the file
    for lazily read data (indexing ``X`` and ``mask`` apart would read it twice)."""
    if data.lazy:
        return data.X.reader.fields(np.atleast_1d(np.arange(data.num_times)[steps]))
    return data.X[steps], data.mask[steps]


def field_statistics(data: WeatherGraphData, train_index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, counts)``: float64 [V] over the valid entries of the steps ``train_index``, and int64
    [T, V] valid entries of every step, in one pass over blocks of time steps.

    Each block's count, mean and sum of squared deviations (two-pass within the block) are merged with
    Chan et al.'s pairwise update, ``M2 = M2_a + M2_b + d^2 n_a n_b / n`` with ``d = mean_b - mean_a``: exact
    in exact arithmetic, the two-pass values to rounding. A standard deviation below 1e-12 becomes 1.
    """
    t_all, n, v = data.num_times, data.num_nodes, data.num_vars
    in_train = np.zeros(t_all, dtype=bool)
    in_train[np.asarray(train_index, dtype=np.int64)] = True
    counts = np.zeros((t_all, v), dtype=np.int64)
    total, mean, m2 = np.zeros(v), np.zeros(v), np.zeros(v)
    for c in time_chunks(t_all, n, v):
        x, m = read_block(data, c)
        counts[c] = m.sum(axis=1)
        pick = in_train[c]
        if not pick.any():
            continue
        x, m = x[pick].astype(np.float64), m[pick]
        n_b = m.sum(axis=(0, 1)).astype(np.float64)
        mean_b = np.where(m, x, 0.0).sum(axis=(0, 1)) / np.maximum(n_b, 1)
        m2_b = np.where(m, (x - mean_b) ** 2, 0.0).sum(axis=(0, 1))
        both = total + n_b
        d = mean_b - mean
        safe = np.maximum(both, 1)
        first = total == 0  # the first block with entries: its own two-pass values, exactly
        mean = np.where(first, mean_b, mean + d * n_b / safe)
        m2 = np.where(first, m2_b, m2 + m2_b + d**2 * total * n_b / safe)
        total = both
    std = np.sqrt(m2 / np.maximum(total, 1))
    return mean, np.where(std > 1e-12, std, 1.0), counts
