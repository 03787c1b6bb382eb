"""Learning tasks: what a model is trained to do on a :class:`~gnnddm.data.weather_graph.WeatherGraphData`,
as mini-batches ``(input, target, loss weights)``.

- :mod:`~gnnddm.tasks.base`: :class:`Batch`, the loss and the :class:`Task` every task derives from;
- :mod:`~gnnddm.tasks.forecast`: ``task=forecast`` (:class:`ForecastTask`);
- :mod:`~gnnddm.tasks.interpolate`: ``task=interpolate`` (:class:`InterpolateTask`);
- :mod:`~gnnddm.tasks.rollout`: autoregressive forecasts and their scores per lead time;
- :mod:`~gnnddm.tasks.rollout_training`: training on rollouts of several steps.

The data-assimilation task is :mod:`gnnddm.assimilation`. The classes are named here, so a configuration's
``_target_: gnnddm.tasks.ForecastTask`` (and a ``model.pt`` that stores one) builds them.
"""

from gnnddm.tasks.base import Batch, Task, loss, rmse_from_sums, rmse_per_variable, squared_errors, weighted_sq_error
from gnnddm.tasks.forecast import ForecastTask, rollout_phases
from gnnddm.tasks.interpolate import InterpolateTask

__all__ = ["Batch", "ForecastTask", "InterpolateTask", "Task", "loss", "rmse_from_sums", "rmse_per_variable",
           "rollout_phases", "squared_errors", "weighted_sq_error"]
