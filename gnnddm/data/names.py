"""Variable names: Copernicus CDS short names <-> WeatherBench2 / ARCO-ERA5 long names.

Inside gnnddm a variable is always called by its CDS short name (``t2m``, ``msl``, ...); a
pressure-level variable becomes one variable per level, ``<short>_<hPa>`` (``t_850``, ``z_500``).
Files name the same quantity differently: the CDS netCDF uses the short names, the WeatherBench2 and
ARCO-ERA5 zarr stores the long names, GRIB files read through cfgrib sometimes the GRIB ``shortName``
(``2t``, ``10u``). :data:`VARIABLES` is the one table of these spellings; :func:`match_variable`
finds which variable of a file a user's request means, whichever of the names either side uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariableName:
    """One physical variable and its spellings.

    Attributes
    ----------
    short : str
        CDS short name, the canonical name inside gnnddm.
    long : str
        WeatherBench2 / ARCO-ERA5 name.
    units : str
        Units as ERA5 writes them (used when a file carries no ``units`` attribute).
    aliases : tuple[str, ...]
        Other spellings met in files (GRIB shortName, CF standard names).
    """

    short: str
    long: str
    units: str
    aliases: tuple[str, ...] = ()


# The one literal table. Order is the order ``gnnddm data info`` lists known names in.
VARIABLES: tuple[VariableName, ...] = (
    VariableName("t2m", "2m_temperature", "K", ("2t", "air_temperature_2m")),
    VariableName("d2m", "2m_dewpoint_temperature", "K", ("2d",)),
    VariableName("u10", "10m_u_component_of_wind", "m s**-1", ("10u",)),
    VariableName("v10", "10m_v_component_of_wind", "m s**-1", ("10v",)),
    VariableName("u100", "100m_u_component_of_wind", "m s**-1", ("100u",)),
    VariableName("v100", "100m_v_component_of_wind", "m s**-1", ("100v",)),
    VariableName("si10", "10m_wind_speed", "m s**-1", ("10si", "ws10")),
    VariableName("msl", "mean_sea_level_pressure", "Pa", ("prmsl", "air_pressure_at_mean_sea_level")),
    VariableName("sp", "surface_pressure", "Pa", ("surface_air_pressure",)),
    VariableName("tp", "total_precipitation", "m", ("precipitation_amount",)),
    VariableName("tcwv", "total_column_water_vapour", "kg m**-2", ()),
    VariableName("sst", "sea_surface_temperature", "K", ()),
    VariableName("skt", "skin_temperature", "K", ()),
    VariableName("tcc", "total_cloud_cover", "(0 - 1)", ()),
    VariableName("ssrd", "surface_solar_radiation_downwards", "J m**-2", ()),
    VariableName("lsm", "land_sea_mask", "(0 - 1)", ("land_binary_mask",)),
    VariableName("z_sfc", "geopotential_at_surface", "m**2 s**-2", ("orog_geopotential",)),
    # pressure-level variables (one gnnddm variable per level: t_850, z_500, ...)
    VariableName("z", "geopotential", "m**2 s**-2", ("gh_geopotential",)),
    VariableName("t", "temperature", "K", ("air_temperature",)),
    VariableName("u", "u_component_of_wind", "m s**-1", ("eastward_wind",)),
    VariableName("v", "v_component_of_wind", "m s**-1", ("northward_wind",)),
    VariableName("w", "vertical_velocity", "Pa s**-1", ("lagrangian_tendency_of_air_pressure",)),
    VariableName("q", "specific_humidity", "kg kg**-1", ()),
    VariableName("r", "relative_humidity", "%", ()),
    VariableName("vo", "vorticity", "s**-1", ()),
    VariableName("d", "divergence", "s**-1", ()),
)

_BY_SPELLING: dict[str, VariableName] = {}
for _v in VARIABLES:
    for _s in (_v.short, _v.long, *_v.aliases):
        _BY_SPELLING.setdefault(_s.lower(), _v)

# CF standard names (CF standard name table, version 84) of the variables that have one; written into
# forecast files (gnnddm predict). Pressure-level variables keep their base's name.
CF_STANDARD: dict[str, str] = {
    "t2m": "air_temperature", "d2m": "dew_point_temperature", "u10": "eastward_wind", "v10": "northward_wind",
    "u100": "eastward_wind", "v100": "northward_wind", "si10": "wind_speed",
    "msl": "air_pressure_at_mean_sea_level", "sp": "surface_air_pressure",
    "tp": "lwe_thickness_of_precipitation_amount", "tcwv": "atmosphere_mass_content_of_water_vapor",
    "sst": "sea_surface_temperature", "skt": "surface_temperature", "tcc": "cloud_area_fraction",
    "ssrd": "integral_wrt_time_of_surface_downwelling_shortwave_flux_in_air", "lsm": "land_binary_mask",
    "z_sfc": "surface_geopotential", "z": "geopotential", "t": "air_temperature", "u": "eastward_wind",
    "v": "northward_wind", "w": "lagrangian_tendency_of_air_pressure", "q": "specific_humidity",
    "r": "relative_humidity", "vo": "atmosphere_relative_vorticity", "d": "divergence_of_wind",
}

# Static fields a loader turns into static node features rather than dynamic variables.
STATIC_SHORT = ("lsm", "z_sfc")


def lookup(name: str) -> VariableName | None:
    """The table entry for any spelling of ``name`` (case-insensitive), or None if it is not known."""
    return _BY_SPELLING.get(str(name).lower())


def canonical(name: str) -> str:
    """The gnnddm name (CDS short name) of ``name``; unknown names are returned unchanged."""
    entry = lookup(name)
    return entry.short if entry is not None else str(name)


def long_name(name: str) -> str:
    """The WeatherBench2 long name of ``name`` ("" if unknown); a level suffix is kept: t_850 -> temperature_850."""
    base, level = split_level(name)
    entry = lookup(base)
    if entry is None:
        return ""
    return entry.long if level is None else f"{entry.long}_{level}"


def split_level(name: str) -> tuple[str, int | None]:
    """``"t_850"`` -> ``("t", 850)``; ``"temperature_850"`` -> ``("temperature", 850)``; others -> (name, None).

    A trailing ``_<integer>`` counts as a level only when the part before it is a known name, so that
    names like ``u100`` or unknown names ending in digits are left alone.
    """
    head, sep, tail = str(name).rpartition("_")
    if sep and tail.isdigit() and lookup(head) is not None:
        return head, int(tail)
    return str(name), None


def match_variable(requested: str, available) -> tuple[str, int | None] | None:
    """Which file variable (and pressure level) a requested name means.

    Parameters
    ----------
    requested : str
        A short name (``t2m``, ``t_850``), a long name (``2m_temperature``, ``temperature_850``) or an
        alias, or the file's own spelling of a variable.
    available : iterable of str
        The data-variable names the file holds.

    Returns
    -------
    (file_name, level_hPa or None), or None when no file variable matches.
    """
    available = list(available)
    if requested in available:
        return requested, None
    base, level = split_level(requested)
    if level is not None and base in available:
        return base, level
    entry = lookup(base)
    if entry is None:
        return None
    for name in available:
        if lookup(name) is entry:
            return name, level
    return None


def describe(file_names, levels=None) -> str:
    """``"t2m (2m_temperature), t_850 (temperature_850), ..."``: how a file's variables can be requested.

    ``levels`` maps file names of pressure-level variables to their levels in hPa.
    """
    levels = levels or {}
    parts = []
    for name in file_names:
        short = canonical(name)
        for lev in levels.get(name, [None]):
            gname = short if lev is None else f"{short}_{int(lev)}"
            lname = long_name(gname)
            parts.append(f"{gname} ({lname})" if lname and lname != gname else gname)
    return ", ".join(parts)


def standard_name(name: str) -> str:
    """The CF standard name of ``name`` ("" if it has none or is unknown); ``t_850`` -> ``air_temperature``."""
    base, _ = split_level(name)
    entry = lookup(base)
    return CF_STANDARD.get(entry.short, "") if entry is not None else ""
