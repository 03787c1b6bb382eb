"""Time axes and time selections shared by every loader and by the date-range splits (one rule everywhere).

Every loader hands its time stamps to :func:`check_increasing` before selecting: a repeated or backward
time stamp is an error naming the file, the time variable and the stamps, since a step read twice or out
of order would silently pair the wrong inputs and targets.

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


def check_increasing(times: np.ndarray, source: str, name: str = "time", lines: np.ndarray | None = None,
                     where: str = "") -> None:
    """A :class:`DataError` unless ``times`` is strictly increasing (no repeated or backward time stamp).

    Parameters
    ----------
    times : datetime64 [T]
        The time stamps in the order the data holds them.
    source : str
        The file, named first in the message.
    name : str
        The time variable or column as the file spells it (``valid_time``, ``date``).
    lines : int [T], optional
        The line of the file holding each time stamp (a table's time column); without it the message
        names steps of a time variable.
    where : str
        What the times belong to, for messages (``"station 'A'"``).

    Examples
    --------
    ``era5.nc: time variable 'valid_time' is not strictly increasing: 2020-01-01T12:00:00 repeated
    (steps 2 and 3); each time stamp must appear once, in increasing order``
    """
    times = np.asarray(times)
    if times.size < 2:
        return
    bad = np.nonzero(~(times[1:] > times[:-1]))[0]  # NaT compares False: it is never in order either
    if bad.size == 0:
        return
    word, pos = ("line", np.asarray(lines)) if lines is not None else ("step", np.arange(times.size))
    found = []
    for i in bad[:3]:
        before, after = times[i], times[i + 1]
        if before == after:
            found.append(f"{_stamp(after)} repeated ({word}s {pos[i]} and {pos[i + 1]})")
        else:
            found.append(f"{_stamp(after)} ({word} {pos[i + 1]}) after {_stamp(before)} ({word} {pos[i]})")
    more = f"; {bad.size} such {word}s in all" if bad.size > 3 else ""
    kind = "column" if lines is not None else "variable"
    raise DataError(f"{source}: time {kind} {name!r}{' of ' + where if where else ''} is not strictly "
                    f"increasing: {'; '.join(found)}{more}; each time stamp must appear once, in increasing order")


def _stamp(t) -> str:
    return str(t)[:19]


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
