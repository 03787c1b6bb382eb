"""``gnnddm evaluate output_dir=PATH [split=test|val] [key=value ...]``: score a trained model.

Loads ``PATH/model.pt`` (:mod:`gnnddm.bundle`), rebuilds the problem from the configuration stored in it
(:func:`gnnddm.data.pipeline.build_problem`), checks that the rebuilt data is the data the model was trained
on (variables, normalisation statistics, graph), and scores the split with
:class:`gnnddm.training.validate.Evaluator` against the task's baseline (persistence for forecasting, inverse
distance for interpolation), with the samples and batches of the training run's own evaluation, so the
numbers are those the run reports.

The arguments are ``key=value`` tokens (values in Hydra's override syntax): ``output_dir`` (required),
``split``, ``leads`` (a number of lead times or ``max``: roll a forecast model out from every initial
time of the split and score each lead against persistence and the training split's climatology, see
:mod:`gnnddm.tasks.rollout`), ``plots`` (with ``leads``: scores against lead time and maps as PNG files; ``map_var``,
``map_lead`` and ``map_init`` choose the maps' variable, lead and initial time), ``verbose``, and overrides of
the stored configuration under ``data.`` (another file or time range, ``+data.key=`` to add a key),
``tracking.`` and ``trainer.device`` / ``trainer.threads``.
The stored configuration is not recomposed from ``conf/``: a run is evaluated as it was trained.
Loading never runs code from the file: it is read with ``torch.load(weights_only=True)``, and its
configuration, with the overrides, may name only gnnddm's components and must pass the schema
(:func:`gnnddm.schema.validate.validate_file`) before anything is built from it.

Outputs: a table on stdout, ``PATH/evaluate_<split>.json``, and an MLflow run (tag
``gnnddm.command=evaluate``) in the training run's store, a child of the training run when that run is
there, ending FINISHED or FAILED.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gnnddm.errors import ConfigError, DataError

log = logging.getLogger("gnnddm.evaluate")

SPLITS = ("test", "val")
#: config keys (and prefixes) that may be overridden: what the data is read from, where runs are logged,
#: where the model runs; the rest of the stored configuration defines the model and its samples
OVERRIDABLE = ("data.", "tracking.", "trainer.device", "trainer.threads")
USAGE = ("usage: gnnddm evaluate output_dir=PATH [split=test|val] [leads=N|max [plots=true [map_var=NAME] "
         "[map_lead=K] [map_init=DATE]]] [data.KEY=VALUE ...] [tracking.uri=URI] [trainer.device=DEVICE] "
         "[verbose=true]")
MAP_KEYS = ("map_var", "map_lead", "map_init")


@dataclass(frozen=True)
class Request:
    """What the command line asks for."""

    output_dir: Path
    split: str = "test"
    overrides: tuple[str, ...] = ()
    verbose: bool = False
    leads: int | str | None = None  # lead-time scores: a number of leads, "max", or None (one step only)
    plots: bool = False  # with leads: scores against lead time, and maps, as PNG files in the run folder
    values: dict = field(default_factory=dict)  # override key -> (value, adds a key)
    #: the maps' variable (None: each), lead (1-based; None: the longest) and initial time (None: the split's
    #: first that reaches the lead)
    map_var: str | None = None
    map_lead: int | None = None
    map_init: str | None = None


def main(argv: list[str]) -> int:
    """The command line's entry point: exit status 0, or 2 (1) after one line naming the error."""
    from gnnddm.commands.hydra_app import key_value_main

    return key_value_main(argv, USAGE, __doc__, lambda args: format_table(evaluate(parse_args(args))))


def parse_args(argv: list[str]) -> Request:
    """A :class:`Request` from ``key=value`` tokens; a :class:`ConfigError` naming a bad token."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gnnddm.commands.hydra_app import key_values, overridable, parse_override

    out_dir, split, verbose, overrides, values, leads, plots = None, "test", False, [], {}, None, False
    maps: dict = {}
    parser = OverridesParser.create()
    for arg, key, raw in key_values(argv, USAGE):
        if key == "output_dir":
            out_dir = Path(raw).expanduser()
        elif key == "split":
            if raw not in SPLITS:
                raise ConfigError(f"split={raw}: expected one of {', '.join(SPLITS)}")
            split = raw
        elif key == "verbose":
            verbose = raw.lower() in ("true", "1")
        elif key == "plots":
            plots = raw.lower() in ("true", "1")
        elif key == "leads":
            if raw != "max" and not (raw.isdigit() and int(raw) >= 1):
                raise ConfigError(f"leads={raw}: expected a number of leads >= 1, or max (the longest the split "
                                  "allows)")
            leads = raw if raw == "max" else int(raw)
        elif key in MAP_KEYS:
            if key == "map_lead" and not (raw.isdigit() and int(raw) >= 1):
                raise ConfigError(f"map_lead={raw}: expected a lead number >= 1 (1 is the first lead)")
            maps[key] = int(raw) if key == "map_lead" else raw
        elif overridable(key.lstrip("+"), OVERRIDABLE):
            values.update([parse_override(parser, arg)])
            overrides.append(arg)
        else:
            keys = ", ".join(k + ("*" if k.endswith(".") else "") for k in OVERRIDABLE)
            raise ConfigError(f"{key}: not an option of gnnddm evaluate; valid: output_dir, split, leads, plots, "
                              f"{', '.join(MAP_KEYS)}, verbose, and overrides of {keys}")
    if out_dir is None:
        raise ConfigError(f"output_dir: required, the folder of a finished `gnnddm train` run; {USAGE}")
    if plots and leads is None:
        raise ConfigError("plots=true: the pictures are of lead-time scores; add leads=N or leads=max")
    if maps and not plots:
        raise ConfigError(f"{next(iter(maps))}: chooses what the maps of plots=true show; add plots=true")
    return Request(out_dir, split, tuple(overrides), verbose, leads=leads, plots=plots, values=values, **maps)


def apply_overrides(cfg: DictConfig, values: dict) -> DictConfig:
    """Set each ``key: (value, adds)`` in ``cfg``; a key not in ``cfg`` needs ``+`` (as with Hydra)."""
    for key, (value, adds) in values.items():
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING and not adds:
            parent = key.rsplit(".", 1)[0]
            keys = OmegaConf.select(cfg, parent)
            valid = sorted(keys) if isinstance(keys, DictConfig) else []
            raise ConfigError(f"{key}: not a key of the model's stored configuration (use +{key}=... to add "
                              f"one); {parent} holds: {', '.join(valid)}")
        OmegaConf.update(cfg, key, value, merge=True, force_add=adds)
    return cfg


_MISSING = object()


def evaluate(req: Request) -> dict:
    """Score the model of ``req.output_dir`` on ``req.split``; the result (also ``evaluate_<split>.json``)."""
    from gnnddm.bundle import load_model
    from gnnddm.outputs import write_json
    from gnnddm.schema.validate import validate_file
    from gnnddm.tasks.rollout import metrics as lead_metrics
    from gnnddm.training.tracking import metric_name

    if not req.output_dir.is_dir():
        raise DataError(f"output_dir={req.output_dir}: no such folder; give the output folder of a finished "
                        "`gnnddm train` run")
    bundle = load_model(req.output_dir / "model.pt")  # refuses a configuration that names other than gnnddm's
    cfg = apply_overrides(bundle.cfg, req.values)
    validate_file(cfg, bundle.path)  # the same check with the overrides, before anything is built or logged
    if req.leads is not None and bundle.task.get("name") != "forecast":
        raise ConfigError(f"leads={req.leads}: lead-time scores need a forecast model; {bundle.path} was trained "
                          f"for task={bundle.task.get('name')}")
    json_path = req.output_dir / f"evaluate_{req.split}.json"
    result = {"status": "running", "split": req.split, "model": str(bundle.path), "iteration": bundle.iteration,
              "evaluated_run_id": bundle.run_id, "overrides": list(req.overrides), "mlflow_run_id": None}
    tracker = _start_run(cfg, bundle, req)
    result["mlflow_run_id"] = tracker.run_id
    try:
        scores, baseline, rebuilt = _score(cfg, bundle, req.split)
        result.update(_summarise(scores, bundle, req.split, baseline))
        if req.leads is not None:
            result["leads"] = _lead_scores(rebuilt, req.split, req.leads)
            scores = {**scores, **lead_metrics(result["leads"])}
            if req.plots:
                result["plots"] = [str(p) for p in _plots(rebuilt, result["leads"], req, req.output_dir)]
        result["status"] = "finished"
        write_json(json_path, result)
        tracker.log_metrics({metric_name(k): v for k, v in scores.items()}, step=bundle.iteration)
        tracker.log_artifact(json_path)
        tracker.end("FINISHED")
        return result
    except BaseException as exc:
        result.update(status="failed", error=str(exc))
        try:
            write_json(json_path, result)
        except OSError:
            log.warning("could not write %s", json_path)
        if tracker.run_id:
            tracker.set_tags({"gnnddm.error": str(exc)[:5000] or type(exc).__name__})
        tracker.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise


@dataclass(frozen=True)
class Rebuilt:
    """What :func:`_score` rebuilt from the stored configuration, for the lead-time scores."""

    problem: object
    task: object
    model: object
    graph: object
    device: object
    batch_size: int

    @property
    def data(self):
        return self.task.data


def _score(cfg: DictConfig, bundle, split: str) -> tuple[dict[str, float], str, Rebuilt]:
    """Rebuild data, task and model as in training; the :meth:`Evaluator.scores` of ``split``, the name of
    the task's baseline and what was rebuilt."""
    from gnnddm.training.validate import Evaluator

    r = rebuild(cfg, bundle)
    anchors = r.task.split_anchors(r.problem.split)[split]
    if not len(anchors):
        raise ConfigError(f"data.split.{split}: no {split} sample in {r.data.source} ({r.data.num_times} time "
                          f"steps); choose a data.split.{split} or data.time range that holds samples")
    evaluator = Evaluator(r.task, r.graph, {split: anchors}, batch_size=r.batch_size, seed=cfg.seed,
                          device=r.device)
    return evaluator.scores(r.model, split), r.task.baseline_name, r


def rebuild(cfg: DictConfig, bundle) -> Rebuilt:
    """Data, task, model (with the bundle's weights) and graph, built from ``cfg`` as in training; a
    :class:`DataError` when the data is not the data the model was trained on."""
    import torch

    from gnnddm.config import build_component
    from gnnddm.data.pipeline import build_problem
    from gnnddm.models.graph import prepare_graph
    from gnnddm.schema import validate

    # no seeding: building the problem draws nothing at random, the weights are loaded, and the evaluator's
    # draws come from its own generators (seeded from cfg.seed)
    trainer = validate(cfg).trainer
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    device = torch.device(trainer.device)
    problem = build_problem(cfg)
    task = build_component(cfg.task, "task", problem.data)
    data = task.data  # the graph trained on (assimilation's joint graph with the observation nodes)
    diffs = bundle.differences(data)
    if diffs:
        more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise DataError(f"{bundle.path}: the data rebuilt from its configuration is not the data the model was "
                        f"trained on: {'; '.join(diffs[:4])}{more}; use it on data with the training split's "
                        "variables, normalisation and graph")
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, int(bundle.graph["edge_dim"]))
    try:
        model.load_state_dict(bundle.state_dict)
    except RuntimeError as exc:
        raise DataError(f"{bundle.path}: the weights do not fit the model built from its configuration "
                        f"({str(exc).strip().splitlines()[0]})") from None
    model.to(device)
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight).to(device)
    return Rebuilt(problem, task, model, graph, device, trainer.batch_size)


def _plots(r: Rebuilt, leads: dict, req: Request, out_dir: Path) -> list[Path]:
    """Per variable: scores against lead time (``leads_<split>_<var>.png``); and a map of truth, forecast and
    error (``map_<split>_<var>.png``) of ``req.map_var`` (each variable when None) at lead ``req.map_lead``
    (the longest scored when None) from ``req.map_init`` (the split's first initial time that reaches it)."""
    import numpy as np

    from gnnddm.outputs import save_figure
    from gnnddm.report.forecast_plots import lead_figure, map_figure, pyplot
    from gnnddm.tasks.rollout import Rollout

    split, variables = req.split, list(r.data.variables)
    if req.map_var is not None and req.map_var not in variables:
        raise ConfigError(f"map_var={req.map_var}: not a variable of the model; valid: {', '.join(variables)}")
    k = leads["leads"] if req.map_lead is None else req.map_lead
    if k > leads["leads"]:
        raise ConfigError(f"map_lead={k}: the scores go to lead {leads['leads']}; choose 1 .. {leads['leads']}")
    init = _map_init(r, split, k, req.map_init)
    plt, paths = pyplot(), []
    forecast = Rollout(r.task, r.model, r.graph, device=r.device).forecast([init], k)[0, -1].cpu().double().numpy()
    truth, valid = (a[0].double().numpy() for a in r.task.fields([init + k * r.task.lead]))
    forecast, truth = r.data.to_physical(forecast), r.data.to_physical(truth)
    truth[valid == 0] = np.nan
    hours = (r.data.times[init + k * r.task.lead] - r.data.times[init]) / np.timedelta64(1, "h")
    when = f"{str(r.data.times[init])[:16]} + {hours:g} h"
    for v, var in enumerate(variables):
        figures = [(f"leads_{split}_{var}.png", lambda var=var: lead_figure(leads, var))]
        if req.map_var in (None, var):
            figures.append((f"map_{split}_{var}.png",
                            lambda v=v, var=var: map_figure(r.data, truth[:, v], forecast[:, v], var, when)))
        for name, draw in figures:
            fig = draw()
            save_figure(fig, out_dir / name, dpi=100)
            plt.close(fig)
            paths.append(out_dir / name)
    return paths


def _map_init(r: Rebuilt, split: str, k: int, wanted: str | None) -> int:
    """The time step of the maps' initial time: ``wanted`` (a date), or the split's first that reaches lead k."""
    import numpy as np

    from gnnddm.tasks.rollout import reach

    steps = [int(t) for t in getattr(r.problem.split, split)]
    step_set = set(steps)
    usable = [t for t in steps if reach(r.task, t, step_set) >= k]
    if wanted is None:
        return usable[0]
    try:
        when = np.datetime64(wanted, "ns")
    except ValueError:
        raise ConfigError(f"map_init={wanted}: not a date; expected an ISO date such as "
                          f"{str(r.data.times[usable[0]])[:16]}") from None
    hit = [t for t in usable if r.data.times[t] == when]
    if not hit:
        first, last = (str(r.data.times[t])[:16] for t in (usable[0], usable[-1]))
        raise ConfigError(f"map_init={wanted}: not an initial time of the {split} split that reaches lead {k}; "
                          f"choose a time step from {first} to {last}")
    return hit[0]


def _lead_scores(r: Rebuilt, split: str, leads) -> dict:
    """:func:`gnnddm.tasks.rollout.score_leads` of ``split``, with the training split's climatology."""
    from gnnddm.tasks.rollout import Climatology, Rollout, score_leads

    rollout = Rollout(r.task, r.model, r.graph, device=r.device, batch_size=r.batch_size)
    climatology = Climatology.from_steps(r.task, r.problem.split.train)
    return score_leads(rollout, climatology, getattr(r.problem.split, split), None if leads == "max" else leads)


def _summarise(scores: dict, bundle, split: str, baseline: str) -> dict:
    """The result's numbers: loss, samples, and per variable RMSE, baseline RMSE and skill."""
    return {
        "samples": int(scores[f"data/samples/{split}"]),
        "loss": scores[f"{split}_loss"],
        "baseline": baseline,
        "task": str(bundle.task["name"]),
        "variables": {
            var: {"units": unit, "rmse": scores[f"{split}_rmse/{var}"],
                  "baseline_rmse": scores[f"{split}_baseline_rmse/{var}"], "skill": scores[f"{split}_skill/{var}"]}
            for var, unit in zip(bundle.variables, bundle.units, strict=True)
        },
    }


def _start_run(cfg: DictConfig, bundle, req: Request):
    """Open the evaluate run in the training run's store (its config's ``tracking`` section, overridden)."""
    from gnnddm.training.tracking import config_params, environment_tags, tracker_from_config

    tracker = tracker_from_config(cfg.tracking, run_name=f"evaluate-{req.split}")
    tags = {**environment_tags(), "gnnddm.command": "evaluate", "gnnddm.split": req.split,
            "gnnddm.evaluated_run_id": bundle.run_id or "unknown", "gnnddm.model_path": str(bundle.path)}
    try:
        tracker.start(tags=tags)
    except OSError as exc:
        raise ConfigError(f"tracking.uri={tracker.uri}: the store cannot be opened ({exc.strerror or exc}); "
                          "give a writable store with tracking.uri=..., or tracking.enabled=false") from None
    if tracker.run_id is None:
        return tracker
    try:
        if bundle.run_id and tracker.has_run(bundle.run_id):
            tracker.set_tags({"mlflow.parentRunId": bundle.run_id})
        tracker.log_params({"evaluate": {"split": req.split, "output_dir": str(req.output_dir),
                                         "iteration": bundle.iteration, "overrides": list(req.overrides)},
                            **config_params(OmegaConf.to_container(cfg, resolve=True))})
    except BaseException as exc:
        tracker.set_tags({"gnnddm.error": str(exc)[:5000]})
        tracker.end("FAILED")
        raise
    return tracker


def format_table(result: dict) -> str:
    """The terminal report: what was scored, then one row per variable."""
    split, base = result["split"], result["baseline"]
    lines = [f"model  {result['model']} (iteration {result['iteration']}"
             + (f", run {result['evaluated_run_id']})" if result.get("evaluated_run_id") else ")"),
             f"{split:5}  {result['samples']} samples, loss {result['loss']:.6g} (normalised units)", ""]
    rows = [("variable", "units", "rmse", f"{base} rmse", "skill %")]
    for var, v in result["variables"].items():
        rows.append((var, v["units"] or "-", _num(v["rmse"]), _num(v["baseline_rmse"]), _num(v["skill"], ".1f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True))))
    if result.get("leads"):
        from gnnddm.tasks.rollout import format_table as format_leads

        lines += ["", format_leads(result["leads"])]
    where = f"; MLflow run {result['mlflow_run_id']}" if result.get("mlflow_run_id") else ""
    lines += ["", f"written {Path(result['model']).parent / ('evaluate_' + split + '.json')}{where}"]
    return "\n".join(lines)


def _num(v, fmt: str = ".5g") -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
