"""Chunk files missing from a zarr store, found by listing its keys before anything is read.

zarr reads a chunk that has no key in the store as the array's fill value (NaN for the fields of a
reanalysis) without a word: a chunk file lost in a copy or a failed upload would become a silent gap in
training. The grid loader therefore lists the keys of each variable it reads (one listing per
variable, no data read) and compares them with the chunks its time steps and levels need.

``data.on_missing_chunk`` decides what a missing chunk does: ``error`` (default) is one
:class:`~gnnddm.errors.DataError` naming the store, the variable and the first time step the chunk
holds, as for a chunk that cannot be decoded (:func:`gnnddm.data.lazy.damaged`); ``gap`` reads it as
missing values (masked, as zarr gives them) with one warning counting the missing chunks per variable.
``gap`` is for stores whose writer leaves out chunks holding only fill values (zarr's
``write_empty_chunks=False``, the default of zarr-python 3), where a missing key is a legitimate gap.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gnnddm.data.lazy import damaged

_METADATA_KEYS = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


@dataclass(frozen=True)
class ChunkRead:
    """What the loader reads of one array of the store.

    Attributes
    ----------
    array : str
        The array's name in the store.
    variable : str
        The gnnddm name (``t_850``), for messages.
    positions : tuple
        Per axis of the array, the positions read (int array) or None for all of them.
    time_axis : int or None
        The axis of the file's time steps (None for a constant field).
    """

    array: str
    variable: str
    positions: tuple
    time_axis: int | None


@dataclass(frozen=True)
class Missing:
    """One chunk the read needs and the store lacks: its key and the first time step read from it."""

    read: ChunkRead
    key: str
    step: int | None


def missing_chunks(store: Path, reads: Sequence[ChunkRead]) -> list[Missing]:
    """The chunks of ``reads`` without a key in ``store``, ordered by time step.

    A sharded array (zarr format 3) stores shards, so the shards are compared instead of its chunks.
    """
    import zarr

    group = zarr.open_group(str(store), mode="r")
    found = []
    for read in reads:
        array = group[read.array]
        prefix = f"{array.path}/" if array.path else ""
        present = _keys(array, prefix)
        unit = array.shards or array.chunks
        grid = [-(-size // per) for size, per in zip(array.shape, unit, strict=True)]
        needed = [np.arange(n) if pos is None else np.unique(np.asarray(pos) // per)
                  for n, pos, per in zip(grid, read.positions, unit, strict=True)]
        if all(len(n) == g for n, g in zip(needed, grid, strict=True)) and len(present) >= int(np.prod(grid)):
            continue  # the read needs every chunk and every one is there: no key to compare
        for coords in itertools.product(*needed):
            key = prefix + array.metadata.encode_chunk_key(tuple(int(c) for c in coords))
            if key not in present:
                found.append(Missing(read, key, _first_step(read, coords, unit)))
    return sorted(found, key=lambda m: -1 if m.step is None else m.step)


def _keys(array, prefix: str) -> set[str]:
    """The chunk keys stored under ``prefix`` (one listing of the store, no data read)."""
    from zarr.core.sync import sync

    async def listing():
        return {key async for key in array.store_path.store.list_prefix(prefix)}

    return {k for k in sync(listing()) if k.rpartition("/")[2] not in _METADATA_KEYS}


def _first_step(read: ChunkRead, coords, unit) -> int | None:
    """The first time step read from the chunk at ``coords`` (None for a constant field)."""
    if read.time_axis is None:
        return None
    per = unit[read.time_axis]
    first = int(coords[read.time_axis]) * per
    pos = read.positions[read.time_axis]
    if pos is None:
        return first
    pos = np.asarray(pos)
    return int(pos[(pos >= first) & (pos < first + per)].min())


def check_missing_chunks(store: Path, reads: Sequence[ChunkRead], times: np.ndarray, source: str,
                         on_missing: str = "error") -> list[str]:
    """Raise the error for the first missing chunk (``on_missing="error"``), or return the one note of
    ``"gap"`` counting them per variable (empty when none is missing).

    ``times`` is the file's time axis (datetime64), for naming the time step of the chunk.
    """
    missing = missing_chunks(store, reads)
    if not missing:
        return []
    counts = Counter(m.read.variable for m in missing)
    per_variable = ", ".join(f"{name}: {n}" for name, n in counts.items())
    n = len(missing)
    if on_missing == "gap":
        return [f"{source}: {n} chunk{'s' if n != 1 else ''} missing from the store ({per_variable}), read as "
                "gaps (data.on_missing_chunk=gap)"]
    first = missing[0]
    when = None if first.step is None else str(times[first.step])[:16]
    raise damaged(
        source, first.read.variable, when,
        f"chunk {first.key!r} is missing from the store; {n} missing in all ({per_variable})",
        "; if its writer leaves out chunks holding only fill values, read them as gaps with "
        "data.on_missing_chunk=gap")
