"""``gnnddm predict output_dir=RUN init=DATE[,DATE...] [leads=N] [output=FILE.nc|.zarr]``: write forecasts.

Loads ``RUN/model.pt`` as ``gnnddm evaluate`` does (the same checks: no code runs from the file, the data
rebuilt from its configuration must be the data it was trained on), rolls the forecast model out from
each initial time (:class:`gnnddm.tasks.rollout.Rollout`) and writes the forecast fields, in physical units, as
a CF dataset (:mod:`gnnddm.data.forecast_file`) to ``output`` (default ``RUN/forecast.nc``; a ``.zarr``
path writes a zarr store).

Arguments (``key=value``): ``output_dir`` (required); ``init``: one or more initial times separated by
commas, each a time step of the data (ISO dates, ``2026-03-25T07:00``); ``leads``: how many lead times
(default: the most that every initial time allows within the data); ``output``; ``verbose``; and, as
for ``gnnddm evaluate``, overrides of the stored configuration under ``data.`` (another file or time
range), ``trainer.device`` and ``trainer.threads``.

An initial time that is not a time step of the data or lacks the history the model reads, more leads
than the data holds after an initial time, a run folder without ``model.pt`` and a model of another task
or data set are each one error naming the key or file (exit status 2); no output file is left behind.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gnnddm.errors import ConfigError, DataError

USAGE = ("usage: gnnddm predict output_dir=RUN init=DATE[,DATE...] [leads=N] [output=FILE.nc|FILE.zarr] "
         "[data.KEY=VALUE ...] [trainer.device=DEVICE] [verbose=true]")
OVERRIDABLE = ("data.", "trainer.device", "trainer.threads")


@dataclass(frozen=True)
class Request:
    output_dir: Path
    inits: tuple[str, ...]
    leads: int | None = None
    output: Path | None = None
    overrides: tuple[str, ...] = ()
    values: dict = field(default_factory=dict)


def main(argv: list[str]) -> int:
    """The command line's entry point: exit status 0, or 2 (1) after one line naming the error."""
    from gnnddm.commands.hydra_app import key_value_main

    def run(args: list[str]) -> str:
        path, ds = predict(parse_args(args))
        dims = ", ".join(f"{k} {v}" for k, v in ds.sizes.items())
        return f"written {path}: {', '.join(ds.data_vars)} ({dims})"

    return key_value_main(argv, USAGE, __doc__, run)


def parse_args(argv: list[str]) -> Request:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gnnddm.commands.hydra_app import key_values, overridable, parse_override

    out_dir, inits, leads, output, overrides, values = None, (), None, None, [], {}
    parser = OverridesParser.create()
    for arg, key, raw in key_values(argv, USAGE):
        if key == "output_dir":
            out_dir = Path(raw).expanduser()
        elif key == "init":
            inits = tuple(s.strip() for s in raw.split(",") if s.strip())
        elif key == "leads":
            if not (raw.isdigit() and int(raw) >= 1):
                raise ConfigError(f"leads={raw}: expected a number of lead times >= 1")
            leads = int(raw)
        elif key == "output":
            output = Path(raw).expanduser()
        elif key == "verbose":
            pass
        elif overridable(key.lstrip("+"), OVERRIDABLE):
            values.update([parse_override(parser, arg)])
            overrides.append(arg)
        else:
            raise ConfigError(f"{key}: not an option of gnnddm predict; valid: output_dir, init, leads, output, "
                              "verbose, data.*, trainer.device, trainer.threads")
    if out_dir is None:
        raise ConfigError(f"output_dir: required, the folder of a finished `gnnddm train` run; {USAGE}")
    if not inits:
        raise ConfigError(f"init: required, one or more initial times (init=2026-03-25T07:00[,...]); {USAGE}")
    return Request(out_dir, inits, leads, output, tuple(overrides), values)


def init_steps(data, task, inits) -> np.ndarray:
    """The time-step indices of the initial times ``inits`` (strings), each checked against the data."""
    times = np.asarray(data.times, dtype="datetime64[ns]")
    steps = []
    for text in inits:
        try:
            when = np.datetime64(text, "ns")
        except ValueError:
            raise ConfigError(f"init={text}: not a date; expected an ISO date such as "
                              f"{str(times[0])[:16]}") from None
        hit = np.flatnonzero(times == when)
        if not hit.size:
            raise ConfigError(f"init={text}: not a time step of {data.source} ({len(times)} steps, "
                              f"{str(times[0])[:16]} .. {str(times[-1])[:16]}); choose one of its time steps")
        back = (task.history - 1) * task.lead
        if hit[0] - back < 0:
            raise ConfigError(f"init={text}: the model reads {task.history} states {task.lead} step(s) apart, and "
                              f"the data starts too late for that; the first usable initial time is "
                              f"{str(times[back])[:16]}")
        steps.append(int(hit[0]))
    return np.asarray(steps, dtype=np.int64)


def predict(req: Request):
    """Roll out and write; returns the path written and the dataset."""
    import torch

    import gnnddm
    from gnnddm.bundle import load_model
    from gnnddm.commands.evaluate import apply_overrides, rebuild
    from gnnddm.data.forecast_file import check_output, forecast_dataset, write_forecast
    from gnnddm.schema.validate import validate_file
    from gnnddm.tasks.rollout import Rollout, lead_hours

    if not req.output_dir.is_dir():
        raise DataError(f"output_dir={req.output_dir}: no such folder; give the output folder of a finished "
                        "`gnnddm train` run")
    output = check_output(req.output or req.output_dir / "forecast.nc")
    bundle = load_model(req.output_dir / "model.pt")
    if bundle.task.get("name") != "forecast":
        raise ConfigError(f"{bundle.path}: a model of task={bundle.task.get('name')}; predict needs a forecast "
                          "model (task=forecast)")
    cfg = apply_overrides(bundle.cfg, req.values)
    validate_file(cfg, bundle.path)
    r = rebuild(cfg, bundle)
    data, task = r.data, r.task
    steps = init_steps(data, task, req.inits)
    latest = int(np.argmax(steps))  # the initial time with the fewest leads left in the data
    room = (data.num_times - 1 - int(steps[latest])) // task.lead  # leads every initial time has within the data
    if room < 1:
        raise ConfigError(f"init={req.inits[latest]}: no lead time of {task.lead} step(s) follows it in the data "
                          f"(its last time step is {str(data.times[-1])[:16]}); choose an earlier initial time")
    leads = room if req.leads is None else req.leads
    if leads > room:
        raise ConfigError(f"leads={leads}: the data holds at most {room} lead(s) of {task.lead} step(s) after "
                          f"init={req.inits[latest]}; choose leads <= {room}")
    rollout = Rollout(task, r.model, r.graph, device=r.device, batch_size=r.batch_size)
    parts = [rollout.forecast(steps[i:i + r.batch_size], leads).cpu() for i in range(0, len(steps), r.batch_size)]
    fields = data.to_physical(torch.cat(parts).double().numpy())
    hours = lead_hours(data, steps, task.lead, leads)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {
        "title": f"gnnddm forecast of {', '.join(data.variables)}",
        "source": f"gnnddm {gnnddm.__version__}, model {bundle.architecture.get('class', '?')} "
                  f"(iteration {bundle.iteration}) trained on {data.source}",
        "history": f"{now} gnnddm predict output_dir={req.output_dir} init={','.join(req.inits)} leads={leads}",
        "gnnddm_version": gnnddm.__version__,
        "gnnddm_run_id": bundle.run_id or "unknown",
        "gnnddm_model": str(bundle.path),
    }
    ds = forecast_dataset(data, fields, data.times[steps], hours, attrs)
    return write_forecast(ds, output), ds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
