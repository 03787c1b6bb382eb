"""Normalisation statistics of lazily read data, cached by the data's identity.

The streaming pass over a data set larger than memory reads every time step once (minutes for a year at
0.25 deg); its result, the mean and standard deviation of the training split and the valid entries of
every step, is kept in ``$GNNDDM_CACHE/stats`` (default ``~/.cache/gnnddm/stats``), one JSON file per
identity: the file (path, and size and modification time of every file of it, so that a rewritten store
is never matched), the variables, the time steps and coarsening read, and the training steps. A run
records the statistics it used and whether they came from the cache (``summary.json``, ``data``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from gnnddm.outputs import write_json


def cache_dir() -> Path:
    root = os.environ.get("GNNDDM_CACHE")
    return (Path(root) if root else Path("~/.cache/gnnddm").expanduser()) / "stats"


def file_identity(path: Path) -> list:
    """Size and modification time of the file, or of every file of a directory store."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    sizes, newest, files = 0, 0, 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            sizes, newest, files = sizes + st.st_size, max(newest, st.st_mtime_ns), files + 1
    return [files, sizes, newest]


def identity(data, train_index) -> str:
    """A digest of what the statistics depend on (see the module docstring)."""
    reader = data.X.reader
    key = {
        "source": str(Path(reader.source).resolve()), "file": file_identity(Path(reader.source)),
        "variables": list(reader.names), "coarsen": reader.coarsen,
        "steps": hashlib.sha256(np.asarray(reader.steps, np.int64).tobytes()).hexdigest(),
        "train": hashlib.sha256(np.asarray(train_index, np.int64).tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def cached_statistics(data, train_index, compute) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], str]:
    """``((mean, std, counts), note)``: from the cache when it holds this identity, else ``compute(data,
    train_index)`` stored there. ``note`` says which, for the run's summary."""
    path = cache_dir() / f"{identity(data, train_index)}.json"
    try:
        saved = json.loads(path.read_text())
        stats = (np.array(saved["mean"], np.float64), np.array(saved["std"], np.float64),
                 np.array(saved["counts"], np.int64).reshape(data.num_times, data.num_vars))
        return stats, f"statistics from the cache {path}"
    except (OSError, ValueError, KeyError):
        pass
    start = time.perf_counter()
    mean, std, counts = compute(data, train_index)
    seconds = time.perf_counter() - start
    try:
        write_json(path, {"source": data.X.reader.source, "variables": list(data.variables),
                          "mean": mean.tolist(), "std": std.tolist(), "counts": counts.ravel().tolist(),
                          "seconds": seconds})
    except OSError:  # a read-only cache only costs the pass next time
        pass
    return (mean, std, counts), f"statistics streamed in {seconds:.1f} s (cached in {path})"
