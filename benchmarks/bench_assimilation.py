"""The assimilation study: background, optimal interpolation and the GNN analysis on the real ERA5 sample.

For each observation count (``--counts``) and observation-error level (``--errors``: factors on the
experiment's ``task.obs.error``), trains ``+experiment=era5_assimilate`` once per seed and scores, on the
test split, the latitude-weighted RMSE per variable of three analyses of the same innovations: the
background (no increment), optimal interpolation with the error statistics fitted on the training split
(the run's baseline, :mod:`gnnddm.assimilation.oi`), and the trained GNN, over all grid nodes and
separately at the observed nodes (read by an observation) and the unobserved ones. A verdict per variable
compares the GNN's seed range with OI. With ``--dd`` it also trains the shipped experiment with ``sync``
and ``halo_sync`` on 4 parts beside ``global`` (same iterations and seed) and prints each method's losses,
RMSE and wall time per iteration, measured one after the other in this run::

    python3 benchmarks/bench_assimilation.py --counts 100,1000,5000 --errors 1,2 --seeds 0 --main-seeds 0,1,2 \\
        --dd --output docs/assimilation.md

``--experiment era5_assimilate_hybrid`` trains the GNN that also reads OI's increment (``task.oi_input``)::

    python3 benchmarks/bench_assimilation.py --experiment era5_assimilate_hybrid --counts 1000 --errors 1 \\
        --seeds 0,1,2 --block hybrid --output docs/assimilation.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks  # noqa: E402

SOURCES = ("gnnddm/assimilation", "gnnddm/tasks", "gnnddm/training", "gnnddm/models", "gnnddm/ddm/global_.py",
           "gnnddm/ddm/sync.py", "gnnddm/ddm/halo_sync.py", "conf/task/assimilate.yaml",
           "conf/experiment/era5_assimilate.yaml", "benchmarks/bench_assimilation.py")
EXPERIMENT = "era5_assimilate"
GROUPS = ("all", "observed", "unobserved")


def obs_errors(factor: float, experiment: str) -> str:
    """The experiment's ``task.obs.error`` scaled by ``factor``, as an override."""
    from omegaconf import OmegaConf

    from gnnddm.config import compose

    errors = OmegaConf.to_container(compose([f"+experiment={experiment}"]).task.obs.error)
    return "task.obs.error={" + ",".join(f"{k}:{v * factor:g}" for k, v in errors.items()) + "}"


def train_run(tmp: Path, name: str, overrides: list[str], experiment: str) -> tuple[dict, object, float]:
    from gnnddm.config import compose
    from gnnddm.training import train

    out = tmp / name
    cfg = compose([f"+experiment={experiment}", "trainer.progress=false", "tracking.enabled=false",
                   f"output_dir={out}", *overrides])
    t0 = time.perf_counter()
    summary = train(cfg)
    return summary, cfg, time.perf_counter() - t0


@torch.no_grad()
def scores(cfg, out: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Test-split RMSE ``{analysis: {group: {variable: rmse}}}`` of background, OI and the trained model."""
    from gnnddm.bundle import load_model
    from gnnddm.commands.evaluate import rebuild
    from gnnddm.tasks import rmse_from_sums, squared_errors
    from gnnddm.training.validate import Evaluator

    r = rebuild(cfg, load_model(out / "model.pt"))
    task, data = r.task, r.task.data
    anchors = task.split_anchors(r.problem.split)
    evaluator = Evaluator(task, r.graph, {"test": anchors["test"]}, batch_size=r.batch_size, seed=int(cfg.seed))
    observed = torch.zeros(data.num_nodes, dtype=torch.bool)
    observed[torch.from_numpy(task.rows[task.observed])] = True
    masks = {"all": torch.ones_like(observed), "observed": observed, "unobserved": ~observed}
    predictors = {"background": lambda b: torch.zeros_like(b.y), "OI": task.baseline,
                  "GNN": lambda b: r.model(b.x, r.graph)}
    sums = {(a, g): 0.0 for a in predictors for g in GROUPS}
    r.model.eval()
    for batch in evaluator._batches("test"):
        for a, predict in predictors.items():
            out_ = predict(batch)
            for g, mask in masks.items():
                masked = type(batch)(x=batch.x, y=batch.y, w=batch.w, base=batch.base, truth=batch.truth,
                                     valid=batch.valid & mask[None, :, None])
                sums[(a, g)] = sums[(a, g)] + squared_errors(batch.base + out_, masked, data)
    return {a: {g: rmse_from_sums(sums[(a, g)], data) for g in GROUPS} for a in predictors}


def study(args, tmp: Path) -> list[str]:
    lines = []
    for count in args.counts:
        for factor in args.errors:
            runs = []
            main_config = count == 1000 and factor == 1.0
            for seed in (args.main_seeds if main_config and args.main_seeds else args.seeds):
                name = f"n{count}-e{factor:g}-s{seed}"
                summary, cfg, seconds = train_run(tmp, name, [f"task.obs.count={count}",
                                                              obs_errors(factor, args.experiment), f"seed={seed}",
                                                              *args.extra], args.experiment)
                runs.append((scores(cfg, tmp / name), summary, seconds))
                print(f"{name}: {seconds:.0f} s", flush=True)
            lines += table(count, factor, runs)
    return lines


def table(count: int, factor: float, runs) -> list[str]:
    first, summary, _ = runs[0]
    units = summary["units"]
    stats = summary["task"]["oi"]
    variables = list(units)
    lines = [f"### {count} observations, σ_o × {factor:g} ({summary['task']['observations']} sites, "
             f"{summary['task']['observed_grid_nodes']} of {summary['task']['grid_nodes']} grid nodes observed)", "",
             "OI's statistics fitted on the training split: " + "; ".join(
                 f"{v} σ_b {stats[v]['sigma_b']:.3g}, ℓ {stats[v]['length_km']:.0f} km, σ_o {stats[v]['sigma_o']:.3g}"
                 for v in variables) + ".", "",
             "| nodes | analysis | " + " | ".join(f"{v} ({units[v]})" for v in variables) + " |",
             "|---|---|" + "---|" * len(variables)]
    for g in GROUPS:
        for a in ("background", "OI"):
            lines.append(f"| {g} | {a} | " + " | ".join(f"{first[a][g][v]:.4g}" for v in variables) + " |")
        gnn = [[run[0]["GNN"][g][v] for run in runs] for v in variables]
        lines.append(f"| {g} | GNN | " + " | ".join(_spread(x) for x in gnn) + " |")
    verdict = []
    for v in variables:
        worst, best = max(run[0]["GNN"]["all"][v] for run in runs), min(run[0]["GNN"]["all"][v] for run in runs)
        oi = first["OI"]["all"][v]
        verdict.append(f"{v}: GNN {'below' if worst < oi else 'above' if best > oi else 'straddles'} OI "
                       f"({_spread([run[0]['GNN']['all'][v] for run in runs])} against {oi:.4g})")
    seconds = [run[2] for run in runs]
    return [*lines, "", f"Verdict over {len(runs)} seed(s), all grid nodes: " + "; ".join(verdict) + ".",
            f"Training and scoring time per seed: {min(seconds):.0f}-{max(seconds):.0f} s.", ""]


def _spread(values) -> str:
    values = sorted(values)
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{float(np.median(values)):.4g} [{values[0]:.4g}, {values[-1]:.4g}]"


def dd_table(args, tmp: Path) -> list[str]:
    parts = 4
    methods = {"global": ["ddm=global"],
               "sync": ["ddm=sync", f"partition.num_parts={parts}", f"partition.overlap={args.hops}"],
               "halo_sync": ["ddm=halo_sync", f"partition.num_parts={parts}", "partition.overlap=1"]}
    rows = ["| method | val loss | test RMSE (" + ", ".join(args.variables) + ") | s per iteration |",
            "|---|---|---|---|"]
    for name, overrides in methods.items():
        summary, _, _ = train_run(tmp, f"dd-{name}", [*overrides, f"seed={args.seeds[0]}",
                                                      f"trainer.max_iterations={args.dd_iterations}", *args.extra],
                                  args.experiment)
        final = summary["final"]
        rmse = ", ".join(f"{final['test_rmse'][v]:.4g}" for v in args.variables)
        per_it = summary["accounting"]["seconds_per_iteration"]
        rows.append(f"| {name} | {final['val_loss']:.6g} | {rmse} | {per_it:.2f} |")
    return ["### The decomposition on this task", "",
            f"`+experiment={args.experiment}`, seed {args.seeds[0]}, {args.dd_iterations} iterations, {parts} parts "
            "of the joint graph (grid, mesh and observation nodes; the experiment's partitioner); sync with an exact "
            f"overlap of the model's {args.hops} hops, halo_sync with one hop exchanged before every layer; all three "
            "in one process, one after the other.", "", *rows, ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default=EXPERIMENT, help="the experiment trained (era5_assimilate: the GNN "
                        "alone; era5_assimilate_hybrid: the GNN reading OI's increment too)")
    parser.add_argument("--counts", default="100,1000,5000")
    parser.add_argument("--errors", default="1,2", help="factors on the experiment's task.obs.error")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--main-seeds", default=None, help="seeds of the shipped configuration (1,000 observations, "
                        "σ_o × 1) when they differ from --seeds")
    parser.add_argument("--dd", action="store_true", help="also compare global, sync and halo_sync")
    parser.add_argument("--extra", default="", help="further overrides for every run, space-separated")
    parser.add_argument("--dd-iterations", type=int, default=100, help="trainer.max_iterations of the --dd runs")
    parser.add_argument("--block", default="study", help="name of the generated block")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    command = shlex.join(["python3", "benchmarks/bench_assimilation.py", *(argv if argv is not None else sys.argv[1:])])
    args.counts = [int(c) for c in args.counts.split(",")]
    args.errors = [float(e) for e in args.errors.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.main_seeds = [int(s) for s in args.main_seeds.split(",")] if args.main_seeds else None
    args.extra = args.extra.split()
    from gnnddm.config import compose

    cfg = compose([f"+experiment={args.experiment}", *args.extra])
    args.variables = list(cfg.data.variables)
    model = cfg.model
    args.hops = int(model.processor_layers) + 2 if "processor_layers" in model else int(model.layers)
    sources = SOURCES if args.experiment == EXPERIMENT else (*SOURCES, f"conf/experiment/{args.experiment}.yaml")
    stamp = results_blocks.stamp(sources, command)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lines = study(args, Path(tmp))
        if args.dd:
            lines += dd_table(args, Path(tmp))
    body = [f"Command: `{command}`  ", f"Total time of the command: {time.perf_counter() - t0:.0f} s.", "",
            "Test split, latitude-weighted RMSE in physical units; GNN: median [min, max] over the training seeds (the "
            "observations and backgrounds of a configuration are the same for every seed).", "",
            *lines]
    print("\n".join(body))
    if args.output:
        results_blocks.write_block(args.output, "bench_assimilation", args.block, "\n".join(body), stamp,
                                   "# Data assimilation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
