"""Loaders that turn gridded, unstructured and station data into :class:`WeatherGraphData`."""

from gnnddm.data.normalise import TimeSplit, normalise, split_times
from gnnddm.data.weather_graph import WeatherGraphData

__all__ = ["WeatherGraphData", "TimeSplit", "normalise", "split_times"]
