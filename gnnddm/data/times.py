"""Time selections shared by every loader and by the date-range splits (one rule everywhere).

A selection is ``None`` (every step), one period (``"1961"``, ``"1961-01"``, ``"1961-01-31"``: the whole
year, month or day), or an inclusive range ``[start, end]`` where either end may be ``None``. An end
given as a year, month or day includes that whole period (``["1961-01-01", "1961-01-31"]`` keeps the
18 UTC step of 31 January); an end with a time of day (``"1961-01-31T12"``) is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gnnddm.errors import ConfigError, DataError

_PERIODS = ("Y", "M", "W", "D")


def _end_of(instant: np.datetime64) -> np.datetime64:
    """The first instant after the period ``instant`` names (itself plus one unit of its precision)."""
    return instant + np.timedelta64(1, np.datetime_data(instant.dtype)[0])


def time_mask(times: np.ndarray, selection, key: str = "data.time") -> np.ndarray:
    """Boolean mask of ``times`` inside ``selection`` (see the module docstring); ``key`` names the option."""
    if selection is None:
        return np.ones(len(times), dtype=bool)
    try:
        if isinstance(selection, str | np.datetime64 | pd.Timestamp):
            start = np.datetime64(str(selection))
            return (times >= start) & (times < _end_of(start))
        lo, hi = selection
        sel = np.ones(len(times), dtype=bool)
        if lo is not None:
            sel &= times >= np.datetime64(str(lo))
        if hi is not None:
            hi = np.datetime64(str(hi))
            whole = np.datetime_data(hi.dtype)[0] in _PERIODS
            sel &= (times < _end_of(hi)) if whole else (times <= hi)
        return sel
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{key}: expected null, [start, end] or a date such as '1961-01', got {_show(selection)}"
        ) from exc


def time_index(times: np.ndarray, selection, source: str, key: str = "data.time") -> np.ndarray:
    """Indices of ``times`` inside ``selection``; a :class:`DataError` naming the file when there are none."""
    idx = np.nonzero(time_mask(times, selection, key))[0]
    if idx.size == 0:
        raise DataError(f"{source}: {key}={_show(selection)} selects no time step; the file covers "
                        f"{covers(times)}")
    return idx


def covers(times: np.ndarray) -> str:
    """``first .. last (n steps)`` for messages."""
    if not len(times):
        return "no time steps"
    return f"{str(times[0])[:19]} .. {str(times[-1])[:19]} ({len(times)} steps)"


def _show(selection) -> str:
    if isinstance(selection, str | np.datetime64 | pd.Timestamp):
        return repr(str(selection))
    try:
        return "[" + ", ".join("null" if v is None else str(v) for v in selection) + "]"
    except TypeError:
        return repr(selection)
