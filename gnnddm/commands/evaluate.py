"""``gnnddm evaluate output_dir=PATH [split=test|val] [key=value ...]``: score a trained model.

Loads ``PATH/model.pt`` (:mod:`gnnddm.bundle`), rebuilds the problem from the configuration stored in it
(:func:`gnnddm.pipeline.build_problem`), checks that the rebuilt data is the data the model was trained
on (variables, normalisation statistics, graph), and scores the split with
:class:`gnnddm.evaluate.Evaluator` against the task's baseline (persistence for forecasting, inverse
distance for interpolation), with the samples and batches of the training run's own evaluation, so the
numbers are those the run reports.

The arguments are ``key=value`` tokens (values in Hydra's override syntax): ``output_dir`` (required),
``split``, ``verbose``, and overrides of the stored configuration under ``data.`` (another file or
time range, ``+data.key=`` to add a key), ``tracking.`` and ``trainer.device`` / ``trainer.threads``.
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
BASELINES = {"forecast": "persistence", "interpolate": "inverse_distance"}
USAGE = ("usage: gnnddm evaluate output_dir=PATH [split=test|val] [data.KEY=VALUE ...] [tracking.uri=URI] "
         "[trainer.device=DEVICE] [verbose=true]")


@dataclass(frozen=True)
class Request:
    """What the command line asks for."""

    output_dir: Path
    split: str = "test"
    overrides: tuple[str, ...] = ()
    verbose: bool = False
    values: dict = field(default_factory=dict)  # override key -> (value, adds a key)


def main(argv: list[str]) -> int:
    """The command line's entry point: exit status 0, or 2 (1) after one line naming the error."""
    from gnnddm.commands.hydra_app import report_error

    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE + "\n\n" + __doc__.split("\n", 2)[2])
        return 0
    verbose = any(a.lower() in ("verbose=true", "verbose=1") for a in argv)
    try:
        result = evaluate(parse_args(argv))
    except Exception as exc:  # noqa: BLE001 - reported as one line and an exit status
        return report_error(exc, verbose)
    print(format_table(result))
    return 0


def parse_args(argv: list[str]) -> Request:
    """A :class:`Request` from ``key=value`` tokens; a :class:`ConfigError` naming a bad token."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    out_dir, split, verbose, overrides, values = None, "test", False, [], {}
    parser = OverridesParser.create()
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"{arg!r}: expected key=value; {USAGE}")
        if key == "output_dir":
            out_dir = Path(raw).expanduser()
        elif key == "split":
            if raw not in SPLITS:
                raise ConfigError(f"split={raw}: expected one of {', '.join(SPLITS)}")
            split = raw
        elif key == "verbose":
            verbose = raw.lower() in ("true", "1")
        elif _overridable(key.lstrip("+")):
            try:
                value = parser.parse_override(arg).value()
            except HydraException as exc:
                raise ConfigError(f"{arg}: not a valid override ({str(exc).strip().splitlines()[0]})") from None
            values[key.lstrip("+")] = (value, key.startswith("+"))
            overrides.append(arg)
        else:
            raise ConfigError(f"{key}: not an option of gnnddm evaluate; valid: output_dir, split, verbose, and "
                              f"overrides of {', '.join(k + ('*' if k.endswith('.') else '') for k in OVERRIDABLE)}")
    if out_dir is None:
        raise ConfigError(f"output_dir: required, the folder of a finished `gnnddm train` run; {USAGE}")
    return Request(out_dir, split, tuple(overrides), verbose, values)


def _overridable(key: str) -> bool:
    return any(key.startswith(k) if k.endswith(".") else key == k for k in OVERRIDABLE)


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
    from gnnddm.tracking import metric_name

    if not req.output_dir.is_dir():
        raise DataError(f"output_dir={req.output_dir}: no such folder; give the output folder of a finished "
                        "`gnnddm train` run")
    bundle = load_model(req.output_dir / "model.pt")  # refuses a configuration that names other than gnnddm's
    cfg = apply_overrides(bundle.cfg, req.values)
    validate_file(cfg, bundle.path)  # the same check with the overrides, before anything is built or logged
    json_path = req.output_dir / f"evaluate_{req.split}.json"
    result = {"status": "running", "split": req.split, "model": str(bundle.path), "iteration": bundle.iteration,
              "evaluated_run_id": bundle.run_id, "overrides": list(req.overrides), "mlflow_run_id": None}
    tracker = _start_run(cfg, bundle, req)
    result["mlflow_run_id"] = tracker.run_id
    try:
        scores, baseline = _score(cfg, bundle, req.split)
        result.update(_summarise(scores, bundle, req.split, baseline))
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


def _score(cfg: DictConfig, bundle, split: str) -> tuple[dict[str, float], str]:
    """Rebuild data, task and model as in training; the :meth:`Evaluator.scores` of ``split`` and the name of
    the task's baseline."""
    import torch

    from gnnddm.config import build
    from gnnddm.evaluate import Evaluator
    from gnnddm.models.graph import prepare_graph
    from gnnddm.pipeline import build_problem

    # no seeding: building the problem draws nothing at random, the weights are loaded, and the evaluator's
    # draws come from its own generators (seeded from cfg.seed)
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    device = torch.device(str(cfg.trainer.device))
    problem = build_problem(cfg)
    data = problem.data
    diffs = bundle.differences(data)
    if diffs:
        more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise DataError(f"{bundle.path}: the data rebuilt from its configuration is not the data the model was "
                        f"trained on: {'; '.join(diffs[:4])}{more}; evaluate it on data with the training split's "
                        "variables, normalisation and graph")
    task = build(cfg.task, "task")(data)
    anchors = task.split_anchors(problem.split)[split]
    if not len(anchors):
        raise ConfigError(f"data.split.{split}: no {split} sample in {data.source} ({data.num_times} time steps); "
                          f"choose a data.split.{split} or data.time range that holds samples")
    model = build(cfg.model, "model")(in_channels=task.in_channels, out_channels=task.out_channels,
                                      edge_dim=int(bundle.graph["edge_dim"]))
    try:
        model.load_state_dict(bundle.state_dict)
    except RuntimeError as exc:
        raise DataError(f"{bundle.path}: the weights do not fit the model built from its configuration "
                        f"({str(exc).strip().splitlines()[0]})") from None
    model.to(device)
    graph = prepare_graph(data.edge_index, data.num_nodes, data.edge_attr, data.edge_weight).to(device)
    evaluator = Evaluator(task, graph, {split: anchors}, batch_size=int(cfg.trainer.batch_size),
                          seed=int(cfg.seed), device=device)
    baseline = getattr(task, "baseline_name", None) or BASELINES.get(task.name, "baseline")
    return evaluator.scores(model, split), baseline


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
    from gnnddm.tracking import config_params, environment_tags, tracker_from_config

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
    where = f"; MLflow run {result['mlflow_run_id']}" if result.get("mlflow_run_id") else ""
    lines += ["", f"written {Path(result['model']).parent / ('evaluate_' + split + '.json')}{where}"]
    return "\n".join(lines)


def _num(v, fmt: str = ".5g") -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
