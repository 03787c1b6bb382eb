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

    Returns a copy with ``normalised=True`` and ``mean`` / ``std`` set; invalid entries stay 0.
    """
    if data.normalised:
        raise ValueError("data is already normalised")
    x = data.X[train_index].astype(np.float64)
    m = data.mask[train_index]
    count = np.maximum(m.sum(axis=(0, 1)), 1)
    mean = np.where(m, x, 0.0).sum(axis=(0, 1)) / count
    var = np.where(m, (x - mean) ** 2, 0.0).sum(axis=(0, 1)) / count
    std = np.sqrt(var)
    std = np.where(std > 1e-12, std, 1.0)
    X = ((data.X - mean) / std).astype(np.float32)
    X = np.where(data.mask, X, 0.0).astype(np.float32)
    return data.replace(X=X, mean=mean, std=std, normalised=True)
