"""Lead-time skill of the shipped station forecast against persistence and climatology, on a real series.

Trains ``+experiment=stations_wind`` (daily mean wind speed at 12 Irish stations, 1961-1978; the test
split is its last 15 %, about 2.7 years) for each seed, rolls the model out from every initial time of the
test split to ``--leads`` days (:mod:`gnnddm.tasks.rollout`) and prints, per lead, the RMSE, bias and anomaly
correlation of the model (median and [min, max] over the seeds) beside persistence and the training
split's climatology (the same for every seed), then a verdict per lead: the model is better than a
baseline only where its largest RMSE over the seeds is below the baseline's.

Writes the table as a generated block into docs/forecasting.md (``--output``)::

    python3 benchmarks/bench_leads.py --seeds 0,1,2 --leads 7 --output docs/forecasting.md

With ``--rollout-experiment NAME`` it compares rollout training instead: for each seed it trains ``NAME``
as shipped (its ``task.rollout_schedule``) and the same experiment trained one step at a time
(``task.rollout=1``, everything else equal: model, iterations, learning rate, samples), and prints per lead
both RMSEs with their seed ranges, the baselines, and a verdict that says "within noise" where the ranges
overlap. ``--schedules`` adds one row per other schedule tried (``;``-separated), with the same seeds::

    python3 benchmarks/bench_leads.py --seeds 0,1,2,3,4 --leads 7 --rollout-experiment stations_wind_rollout \\
        --schedules "[[1,4]];[[1,2],[101,4]];[[1,1],[51,2],[101,4],[151,7]]" --output docs/forecasting.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks  # noqa: E402

SOURCES = ("gnnddm/tasks/rollout.py", "gnnddm/tasks", "gnnddm/training", "gnnddm/models", "gnnddm/ddm/global_.py",
           "gnnddm/data/stations.py", "conf/experiment/stations_wind.yaml", "benchmarks/bench_leads.py")
ROLLOUT_SOURCES = (*SOURCES, "gnnddm/tasks/rollout_training.py")


def run_seed(seed: int, leads: int, iterations: int | None, tmp: Path, experiment: str = "stations_wind",
             extra: tuple[str, ...] = (), name: str = "") -> dict:
    from gnnddm.config import compose
    from gnnddm.training import train

    out = tmp / f"{name or experiment}-seed{seed}"
    overrides = [f"+experiment={experiment}", f"seed={seed}", f"trainer.eval_leads={leads}",
                 "trainer.progress=false", "tracking.enabled=false", f"output_dir={out}", *extra]
    if iterations:
        overrides.append(f"trainer.max_iterations={iterations}")
    train(compose(overrides))
    return json.loads((out / "leads_test.json").read_text())


def lead_label(hours: float) -> str:
    """``1 d`` for whole days, ``6 h`` otherwise."""
    return f"{hours / 24:g} d" if hours % 24 == 0 else f"{hours:g} h"


def verdict(a: list[float], b: list[float], lower: str, higher: str) -> str:
    """``lower`` when every value of ``a`` is below every value of ``b``, ``higher`` when above, else
    "within noise" (the seed ranges overlap)."""
    if max(a) < min(b):
        return lower
    if min(a) > max(b):
        return higher
    return "within noise"


def schedules_table(one: list[dict], tried: dict[str, list[dict]]) -> list[str]:
    """Per schedule tried: RMSE at the first, second and longest lead, bias at the longest, the verdict there."""
    first = one[0]
    last = first["leads"] - 1
    days = [lead_label(first["lead_hours"][k]) for k in (0, 1, last)]
    rows = [f"| schedule | RMSE {days[0]} | RMSE {days[1]} | RMSE {days[2]} | bias {days[2]} "
            f"| vs one-step at {days[2]} |", "|---|---|---|---|---|---|"]
    for v, var in enumerate(first["variables"]):
        at = [r["scores"]["model"]["rmse"][last][v] for r in one]
        for name, runs in [("one-step", one), *tried.items()]:
            rmse = [[r["scores"]["model"]["rmse"][k][v] for r in runs] for k in (0, 1, last)]
            bias = [r["scores"]["model"]["bias"][last][v] for r in runs]
            rows.append(f"| {var} ({first['units'][v]}) `{name}` | {' | '.join(_range(x) for x in rmse)} "
                        f"| {_range(bias, '+.3f')} "
                        f"| {'–' if runs is one else verdict(rmse[2], at, 'lower', 'higher')} |")
    return rows


def rollout_table(one: list[dict], roll: list[dict], schedule: str) -> list[str]:
    """One-step against rollout training, per variable and lead (RMSE seed ranges, baselines, verdict)."""
    first = one[0]
    rows = ["| lead | one-step RMSE | rollout RMSE | persistence | climatology | one-step bias | rollout bias "
            "| rollout vs one-step |", "|---|---|---|---|---|---|---|---|"]
    goals = []
    for v, var in enumerate(first["variables"]):
        beats_pers, beats_clim = [], []
        for k in range(first["leads"]):
            a = [r["scores"]["model"]["rmse"][k][v] for r in one]
            b = [r["scores"]["model"]["rmse"][k][v] for r in roll]
            pers = first["scores"]["persistence"]["rmse"][k][v]
            clim = first["scores"]["climatology"]["rmse"][k][v]
            bias_one = [r["scores"]["model"]["bias"][k][v] for r in one]
            bias = [r["scores"]["model"]["bias"][k][v] for r in roll]
            lead = lead_label(first["lead_hours"][k])
            rows.append(f"| {var} {lead} | {_range(a)} | {_range(b)} | {pers:.3f} | {clim:.3f} "
                        f"| {_range(bias_one, '+.3f')} | {_range(bias, '+.3f')} | {verdict(b, a, 'lower', 'higher')} |")
            beats_pers.append(max(b) < pers)
            beats_clim.append(max(b) < clim)
        last = first["leads"] - 1
        a = [r["scores"]["model"]["rmse"][last][v] for r in one]
        b = [r["scores"]["model"]["rmse"][last][v] for r in roll]
        goals += [f"{var}: rollout training beats persistence at every lead: {'yes' if all(beats_pers) else 'no'} "
                  f"({sum(beats_pers)} of {len(beats_pers)} leads, every seed)",
                  f"{var}: beats climatology at the first two leads: {'yes' if all(beats_clim[:2]) else 'no'}; "
                  f"at leads {', '.join(str(i + 1) for i, ok in enumerate(beats_clim) if ok) or 'none'}",
                  f"{var}: RMSE at the longest lead against one-step training: "
                  f"{verdict(b, a, 'lower', 'higher')} ({_range(b)} against {_range(a)})"]
    units = ", ".join(f"{v} in {u}" for v, u in zip(first["variables"], first["units"], strict=True))
    return [f"RMSE and bias in the variables' units ({units}); median [min, max] over {len(one)} seeds; the same "
            f"iterations, model and samples for both; rollout schedule {schedule}.", "", *rows, "", "```", *goals,
            "```"]


def _range(values, spec=".3f") -> str:
    return f"{statistics.median(values):{spec}} [{min(values):{spec}}, {max(values):{spec}}]"


def table(results: list[dict]) -> list[str]:
    first = results[0]
    units = first["units"][0]
    rows = ["| lead | initial times | model RMSE | persistence RMSE | climatology RMSE | model bias | model ACC "
            "| persistence ACC |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for v, var in enumerate(first["variables"]):
        for k in range(first["leads"]):
            model = [r["scores"]["model"]["rmse"][k][v] for r in results]
            pers = first["scores"]["persistence"]["rmse"][k][v]
            clim = first["scores"]["climatology"]["rmse"][k][v]
            bias = [r["scores"]["model"]["bias"][k][v] for r in results]
            acc = [r["scores"]["model"]["acc"][k][v] for r in results]
            pacc = first["scores"]["persistence"]["acc"][k][v]
            lead = lead_label(first["lead_hours"][k])
            rows.append(f"| {var} {lead} | {first['per_lead_inits'][k]} | {_range(model)} | {pers:.3f} | {clim:.3f} "
                        f"| {_range(bias, '+.3f')} | {_range(acc)} | {pacc:.3f} |")
            beats = [name for name, ref in (("persistence", pers), ("climatology", clim)) if max(model) < ref]
            loses = [name for name, ref in (("persistence", pers), ("climatology", clim)) if min(model) > ref]
            verdicts.append(f"{var} {lead}: better than {' and '.join(beats) or 'neither'}"
                            + (f"; worse than {' and '.join(loses)}" if loses else "")
                            + (" (the seed range straddles a baseline)" if len(beats) + len(loses) < 2 else ""))
    return [f"RMSE and bias in {units}; median [min, max] over {len(results)} seeds; climatology "
            f"{first['climatology']}.", "", *rows, "", "```", *verdicts, "```"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--leads", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=None, help="trainer.max_iterations (default: the "
                        "experiment's)")
    parser.add_argument("--rollout-experiment", default=None, help="compare this experiment's rollout training "
                        "with its one-step training (block 'rollout') instead of scoring stations_wind")
    parser.add_argument("--schedules", default="", help="with --rollout-experiment: other task.rollout_schedule "
                        "values to try, ';'-separated (a row each)")
    parser.add_argument("--output", type=Path, default=None, help="page to write the block into")
    args = parser.parse_args(argv)
    command = shlex.join(["python3", "benchmarks/bench_leads.py", *(argv if argv is not None else sys.argv[1:])])
    experiment = args.rollout_experiment
    sources = SOURCES if experiment is None else (*ROLLOUT_SOURCES, f"conf/experiment/{experiment}.yaml")
    stamp = results_blocks.stamp(sources, command)
    t0 = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if experiment is None:
            lines = table([run_seed(s, args.leads, args.iterations, Path(tmp)) for s in seeds])
        else:
            one = [run_seed(s, args.leads, args.iterations, Path(tmp), experiment,
                            ("task.rollout_schedule=null", "task.rollout=1"), name="one-step") for s in seeds]
            roll = [run_seed(s, args.leads, args.iterations, Path(tmp), experiment, name="rollout") for s in seeds]
            lines = rollout_table(one, roll, _schedule(experiment))
            tried = {}
            for schedule in filter(None, args.schedules.split(";")):
                tried[schedule] = [run_seed(s, args.leads, args.iterations, Path(tmp), experiment,
                                            (f"task.rollout_schedule={schedule}",), name=f"tried{len(tried)}")
                                   for s in seeds]
            if tried:
                lines += ["", f"Other schedules, the same {len(seeds)} seeds (median [min, max]):", "",
                          *schedules_table(one, tried)]
    body = [f"Command: `{command}`  ", f"Total time of the command: {time.perf_counter() - t0:.0f} s.", "", *lines]
    print("\n".join(body))
    if args.output:
        name = "stations" if experiment is None else f"rollout-{experiment}"
        results_blocks.write_block(args.output, "bench_leads", name, "\n".join(body), stamp,
                                   "# Forecasts over lead times")
    return 0


def _schedule(experiment: str) -> str:
    from omegaconf import OmegaConf

    from gnnddm.config import compose

    task = compose([f"+experiment={experiment}"]).task
    schedule = task.get("rollout_schedule")
    if schedule:
        return ", ".join(f"{k} steps from iteration {i}" for i, k in sorted(OmegaConf.to_container(schedule)))
    return f"{task.rollout} steps throughout"


if __name__ == "__main__":
    sys.exit(main())
