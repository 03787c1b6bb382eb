"""Physical plausibility checks applied by the loaders.

Real observation files carry sentinel values (``9999``, ``-999``), unit mix-ups and broken station
coordinates. A value that no instrument could report (a dew point of 9999 degC, a negative wind speed,
a mean sea-level pressure of 300 hPa) would dominate the normalisation statistics and the loss, so the
loaders mask it (``mask = False``, ``X = 0``) instead of training on it, and say how many they masked.
A station or cell without coordinates (NaN: a code missing from the station table) is dropped. An odd
value must never end a run; a coordinate off the sphere (latitude 123) is another matter: it is no
measurement but a broken file or a column mix-up (latitude and longitude swapped, radians read as
degrees), so :func:`require_on_sphere` makes it an error naming the file, the coordinate and the first
such position.

Each known variable is recognised by its CF ``standard_name`` when the file gives one, else by its name
(CDS short names, WeatherBench2 long names, CMIP names, common station-file headers; a per-level suffix
such as ``S_10`` or ``t_850`` is ignored) and checked in its own unit: the range is stated once in a
reference unit and the values are converted from the unit the file gives. Variables with unknown names
are not checked.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gnnddm.errors import DataError


class DataQualityWarning(UserWarning):
    """Impossible values were masked or locations dropped while loading a file."""


@dataclass(frozen=True)
class Range:
    """Plausible values of one physical quantity in ``unit`` (bounds inclusive unless stated)."""

    quantity: str
    lo: float
    hi: float
    unit: str
    hi_inclusive: bool = True


_RANGES = {
    "temperature": Range("temperature", -90.0, 60.0, "degC"),
    "dewpoint": Range("dewpoint", -90.0, 60.0, "degC"),
    "wind_speed": Range("wind_speed", 0.0, 120.0, "m s-1", hi_inclusive=False),
    "wind_component": Range("wind_component", -120.0, 120.0, "m s-1", hi_inclusive=False),
    "msl": Range("msl", 850.0, 1090.0, "hPa"),
    "surface_pressure": Range("surface_pressure", 300.0, 1100.0, "hPa"),
    "precipitation": Range("precipitation", 0.0, np.inf, ""),
    "relative_humidity": Range("relative_humidity", 0.0, 105.0, "%"),
    "specific_humidity": Range("specific_humidity", 0.0, 0.06, "kg kg-1"),
    "salinity": Range("salinity", 0.0, 45.0, "psu"),
    "cloud_cover": Range("cloud_cover", 0.0, 1.0, "1"),
    "wind_direction": Range("wind_direction", 0.0, 360.0, "degree"),
}

_NAMES = {
    "temperature": "t2m t 2t tas ta temp temperature air_temperature 2m_temperature t_2m tmax tmin tx tn "
    "tmean sst skt sea_surface_temperature tos thetao",
    "dewpoint": "d2m 2d td dpt dewpoint dew_point dewpoint_temperature 2m_dewpoint_temperature td_2m tdew",
    "wind_speed": "wind_speed ws wspd windspeed si10 10si wind sfcwind ff 10m_wind_speed wind_speed_10m",
    "wind_component": "u10 v10 10u 10v u v ua va uas vas 10m_u_component_of_wind 10m_v_component_of_wind "
    "u_component_of_wind v_component_of_wind",
    "msl": "msl mslp pmsl psl slp prmsl mean_sea_level_pressure air_pressure_at_mean_sea_level",
    "surface_pressure": "sp ps pres surface_pressure station_pressure",
    "precipitation": "tp pr precip precipitation total_precipitation rain rainfall prcp rr tp6 tp24 "
    "total_precipitation_6hr total_precipitation_24hr",
    "relative_humidity": "rh r r2 hurs relative_humidity relhum",
    "specific_humidity": "q huss hus specific_humidity",
    "salinity": "s so sal salinity sss psal sea_water_salinity",
    "cloud_cover": "tcc total_cloud_cover clt",
    "wind_direction": "wd wdir dd wind_direction",
}
_QUANTITY_OF_NAME = {name: q for q, names in _NAMES.items() for name in names.split()}

# CF standard names (https://cfconventions.org/standard-names.html) of the quantities above
_STANDARD_NAMES = {
    "temperature": "air_temperature sea_surface_temperature surface_temperature sea_water_temperature "
    "sea_water_potential_temperature",
    "dewpoint": "dew_point_temperature",
    "wind_speed": "wind_speed wind_speed_of_gust",
    "wind_component": "eastward_wind northward_wind x_wind y_wind",
    "msl": "air_pressure_at_mean_sea_level",
    "surface_pressure": "surface_air_pressure",
    "precipitation": "precipitation_amount precipitation_flux lwe_thickness_of_precipitation_amount",
    "relative_humidity": "relative_humidity",
    "specific_humidity": "specific_humidity",
    "salinity": "sea_water_salinity sea_water_practical_salinity sea_water_absolute_salinity",
    "cloud_cover": "cloud_area_fraction",
    "wind_direction": "wind_from_direction wind_to_direction",
}
_QUANTITY_OF_STANDARD_NAME = {name: q for q, names in _STANDARD_NAMES.items() for name in names.split()}

# factor, offset: value_in_reference_unit = value * factor + offset
_UNITS = {
    "temperature": {
        "k": (1.0, -273.15), "kelvin": (1.0, -273.15), "degc": (1.0, 0.0), "c": (1.0, 0.0),
        "celsius": (1.0, 0.0), "degcelsius": (1.0, 0.0),
        "degf": (5 / 9, -32 * 5 / 9), "f": (5 / 9, -32 * 5 / 9), "fahrenheit": (5 / 9, -32 * 5 / 9),
    },
    "wind_speed": {
        "m s-1": (1.0, 0.0), "m/s": (1.0, 0.0), "m s**-1": (1.0, 0.0), "ms-1": (1.0, 0.0),
        "mps": (1.0, 0.0), "knots": (0.514444, 0.0), "knot": (0.514444, 0.0), "kt": (0.514444, 0.0),
        "kn": (0.514444, 0.0), "kts": (0.514444, 0.0), "km h-1": (1 / 3.6, 0.0), "km/h": (1 / 3.6, 0.0),
        "kmh": (1 / 3.6, 0.0), "mph": (0.44704, 0.0),
    },
    "pressure": {
        "pa": (0.01, 0.0), "hpa": (1.0, 0.0), "mbar": (1.0, 0.0), "mb": (1.0, 0.0), "millibar": (1.0, 0.0),
        "kpa": (10.0, 0.0), "bar": (1000.0, 0.0),
    },
    "relative_humidity": {"%": (1.0, 0.0), "percent": (1.0, 0.0), "1": (100.0, 0.0), "fraction": (100.0, 0.0)},
    "cloud_cover": {"1": (1.0, 0.0), "(0 - 1)": (1.0, 0.0), "%": (0.01, 0.0), "percent": (0.01, 0.0)},
    "specific_humidity": {"kg kg-1": (1.0, 0.0), "kg/kg": (1.0, 0.0), "kg kg**-1": (1.0, 0.0),
                          "1": (1.0, 0.0), "g kg-1": (1e-3, 0.0), "g/kg": (1e-3, 0.0)},
    "salinity": {"psu": (1.0, 0.0), "1e-3": (1.0, 0.0), "0.001": (1.0, 0.0), "g/kg": (1.0, 0.0),
                 "g kg-1": (1.0, 0.0), "pss-78": (1.0, 0.0), "1": (1000.0, 0.0)},
}
_UNIT_FAMILY = {"temperature": "temperature", "dewpoint": "temperature", "wind_speed": "wind_speed",
                "wind_component": "wind_speed", "msl": "pressure", "surface_pressure": "pressure",
                "relative_humidity": "relative_humidity", "cloud_cover": "cloud_cover",
                "specific_humidity": "specific_humidity", "salinity": "salinity"}


def quantity(name: str, standard_name: str | None = None) -> str | None:
    """The physical quantity a variable denotes (``"t2m"`` -> ``"temperature"``), or None.

    A known CF ``standard_name`` decides; otherwise the name.
    """
    if standard_name and standard_name.strip().lower() in _QUANTITY_OF_STANDARD_NAME:
        return _QUANTITY_OF_STANDARD_NAME[standard_name.strip().lower()]
    key = name.strip().lower()
    if key in _QUANTITY_OF_NAME:
        return _QUANTITY_OF_NAME[key]
    base = re.sub(r"_-?\d+(\.\d+)?$", "", key)  # per-level names: "S_10", "t_850"
    return _QUANTITY_OF_NAME.get(base)


def plausible_range(name: str, unit: str, values: np.ndarray | None = None,
                    standard_name: str | None = None) -> tuple[float, float, bool] | None:
    """``(lo, hi, hi_inclusive)`` of plausible values of ``name`` in ``unit``; None when unknown.

    An empty or unrecognised unit is taken as the reference unit of the quantity, except for
    temperatures (K when the median of ``values`` exceeds 100) and pressures (Pa when it exceeds 2000),
    where files without unit attributes are common and both conventions occur.
    """
    q = quantity(name, standard_name)
    if q is None:
        return None
    rng = _RANGES[q]
    family = _UNITS.get(_UNIT_FAMILY.get(q, ""), {})
    key = _normalise_unit(unit)
    if key in family:
        factor, offset = family[key]
    else:
        factor, offset = 1.0, 0.0
        finite = values[np.isfinite(values)] if values is not None else np.zeros(0)
        med = float(np.median(finite)) if finite.size else 0.0
        if _UNIT_FAMILY.get(q) == "temperature" and med > 100.0:
            factor, offset = 1.0, -273.15
        elif _UNIT_FAMILY.get(q) == "pressure" and med > 2000.0:
            factor, offset = 0.01, 0.0
    lo = (rng.lo - offset) / factor
    hi = (rng.hi - offset) / factor
    return lo, hi, rng.hi_inclusive


def _normalise_unit(unit: str) -> str:
    u = (unit or "").strip().lower().replace("°", "deg").replace("degree_", "deg").replace("degrees_", "deg")
    u = {"degk": "k", "deg c": "degc", "deg_c": "degc", "deg f": "degf"}.get(u, u)
    return u


def check_values(
    X: np.ndarray, mask: np.ndarray, variables: Sequence[str], units: Sequence[str],
    standard_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask physically impossible values.

    Parameters
    ----------
    X : float [..., V]
        Values in the units of ``units`` (variables along the last axis).
    mask : bool [..., V]
        True where ``X`` holds an observation; only these entries are checked and counted.
    variables, units : sequences of length V
    standard_names : sequence of length V, optional
        CF ``standard_name`` of each variable ("" where none); recognised before the name.

    Returns
    -------
    mask : bool [..., V]
        A copy of ``mask`` with impossible (and non-finite) entries set to False.
    n_masked : int64 [V]
        Number of valid entries per variable that were out of range (non-finite ones are not counted:
        they are missing values, not impossible ones).
    """
    mask = np.asarray(mask, dtype=bool) & np.isfinite(X)
    n_masked = np.zeros(len(variables), dtype=np.int64)
    standard_names = list(standard_names) if standard_names is not None else [""] * len(variables)
    for v, (name, unit, std) in enumerate(zip(variables, units, standard_names, strict=True)):
        x, m = X[..., v], mask[..., v]
        rng = plausible_range(name, unit, x[m], std)
        if rng is None:
            continue
        lo, hi, hi_inclusive = rng
        with np.errstate(invalid="ignore"):
            bad = m & ((x < lo) | ((x > hi) if hi_inclusive else (x >= hi)))
        n_masked[v] = int(bad.sum())
        mask[..., v] = m & ~bad
    return mask, n_masked


def check_coordinates(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Bool [N]: True where the position is on the sphere (lat in [-90, 90], lon in [-180, 360])."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & (lon >= -180.0) & (lon <= 360.0)


def require_on_sphere(lat: np.ndarray, lon: np.ndarray, source: str,
                      names: tuple[str, str] = ("latitude", "longitude"), labels: Sequence[str] | None = None,
                      location: str = "index") -> None:
    """A :class:`DataError` for the first latitude outside [-90, 90] or longitude outside
    [-180, 360] (degrees); NaN positions are missing, not wrong, and pass.

    ``names`` are the coordinate variables (or columns) as the file spells them; ``labels`` name each
    position (station codes; default its index) and ``location`` what a position is (``"station"``).
    """
    for values, name, lo, hi in ((lat, names[0], -90.0, 90.0), (lon, names[1], -180.0, 360.0)):
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = np.nonzero((values < lo) | (values > hi) | np.isinf(values))[0]
        if bad.size:
            i = int(bad[0])
            label = repr(str(labels[i])) if labels is not None else str(i)
            more = f" ({bad.size} {location}s in all)" if bad.size > 1 else ""
            raise DataError(f"{source}: coordinate {name!r} outside [{lo:g}, {hi:g}] degrees: {values[i]:g} at "
                            f"{location} {label}{more}; fix the positions in the file")


def report(
    source: str,
    variables: Sequence[str],
    n_masked: np.ndarray | None = None,
    dropped: Sequence[str] = (),
    location: str = "station",
    notes: Sequence[str] = (),
    stacklevel: int = 3,
) -> tuple[str, ...]:
    """Emit one :class:`DataQualityWarning` summarising a load; return its message (or nothing).

    Example message: ``stations.csv: masked 3 impossible values (t2m: 2, d2m: 1); dropped 1 station
    with invalid coordinates (XYZ)``. ``stacklevel`` points the warning at the loader's caller.
    """
    parts = []
    if n_masked is not None and int(np.sum(n_masked)) > 0:
        per_var = ", ".join(f"{v}: {int(n)}" for v, n in zip(variables, n_masked, strict=True) if n > 0)
        total = int(np.sum(n_masked))
        parts.append(f"masked {total} impossible value{'s' if total != 1 else ''} ({per_var})")
    if len(dropped):
        shown = ", ".join(str(d) for d in list(dropped)[:10]) + (", ..." if len(dropped) > 10 else "")
        n = len(dropped)
        parts.append(f"dropped {n} {location}{'s' if n != 1 else ''} with invalid coordinates ({shown})")
    parts.extend(notes)
    if not parts:
        return ()
    message = f"{source}: " + "; ".join(parts)
    warnings.warn(message, DataQualityWarning, stacklevel=stacklevel)
    return (message,)
