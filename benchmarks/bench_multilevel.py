"""Multilevel training against ``global`` (one process) and ``two_level`` on the grid hierarchy against ``sync``.

Problem (docs/multilevel.md): next-step forecasting on the synthetic reanalysis, GraphSAGE hidden 32,
2 layers (``+experiment=dd_compare``) on the 0.703125 deg grid (256 x 512 = 131,072 nodes) by default.

Procedure, in one run:

1. Learning rate of ``global`` Adam from a sweep over ``--lrs`` (seed 0, the lowest best val_loss within
   the budget); the winner is also every multilevel variant's fine-level (global optimizer) rate.
2. Per seed: ``global`` for ``--budget`` iterations (a well-trained, not converged, reference: nothing checks
   convergence); target = its best val_loss x (1 + ``--tol``). Every variant then trains until its first
   evaluation at or below the target.
3. At the target, from the MLflow histories: training time (``compute_time``: the algorithm's own
   measured work, evaluations excluded; same thread count for every run), wall time (evaluations
   included), fine-level gradient evaluations (``fine_grad_evals``; ``grad_evals`` for ``global``),
   gradient work over all levels (``grad_evals``, a level counting n_ℓ / n) and the val RMSE of every
   variable, compared with ``global`` stopped at the same target (same seed).
4. Goal, printed: the best multilevel variant reaches the target in <= 1/3 of ``global``'s training time
   and <= 1/4 of its fine gradient evaluations, every variable's RMSE within 2 % of ``global``'s.
5. ``--parts P``: ``sync`` and ``two_level ddm.coarsening=grid`` with P METIS parts (exact overlap), seed 0,
   to the same target; modelled time under the default and the multi-node network model. Goal:
   ``two_level`` <= 1/2 of ``sync``'s modelled time.
6. ``--level-costs RES``: seconds per step of every level of the grid hierarchy of the RES grid (e.g. 0.25
   deg, 1,038,240 nodes): a global step on each level's graph with the restricted batch.
7. ``--deep L``: the deep regime instead (``+experiment=dd_deep``: residual GraphSAGE of L layers, hidden 96):
   ``global``'s sweep covers ``--lrs`` x ``--schedules`` (constant, cosine over the budget), and the variants
   are multilevel in space, in depth and in both (L=3 levels each, ν₂ = (0, 4, 8)), then, with
   ``--coarse-scales``, the space cycle with coarse Adam at those multiples of the fine rate. With ``--parts P``:
   ``halo_sync`` against the fastest variant on P parts (one-hop halos) for every seed, multi-node modelled
   time, with the seed ranges and a per-variable RMSE comparison at the target.

    python3 benchmarks/bench_multilevel.py --output docs/multilevel.md
    python3 benchmarks/bench_multilevel.py --resolution 0.25 --steps 120 --seeds 0 --lrs 1e-2 --budget 200 \
        --only 0 --parts 0 --eval-every 20 --variant-eval-every 10 --block 0.25 --output docs/multilevel.md
    python3 benchmarks/bench_multilevel.py --level-costs 0.25 --seeds none --parts 0 --output docs/multilevel.md
    python3 benchmarks/bench_multilevel.py --deep 8 --resolution 2.8125 --lrs 1e-3,3e-3,1e-2 --budget 300 \
        --variant-budget 150 --parts 8 --block 2.8125 --output docs/multilevel.md
    python3 benchmarks/bench_multilevel.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks  # noqa: E402
from bench_dd import Run, _fmt, histories, improvement, machine, median_range, session, sweep_edge  # noqa: E402

GOAL_TIME, GOAL_GRADS, GOAL_RMSE, GOAL_TWO_LEVEL = 1 / 3, 1 / 4, 0.02, 0.5
# The files whose behaviour each block measures (fingerprinted into its marker: benchmarks/results_blocks.py);
# bench_dd.py holds the run reading and the statistics this benchmark shares.
_SHARED = ("benchmarks/bench_multilevel.py", "benchmarks/bench_dd.py", "conf/experiment/dd_compare.yaml")
SOURCES = {
    "study": ("gnnddm/ddm", "gnnddm/distributed", "gnnddm/models", "conf/ddm", "gnnddm/partition/hierarchy.py",
              *_SHARED),
    "two-level": ("gnnddm/ddm", "gnnddm/distributed", "gnnddm/models", "conf/ddm", "gnnddm/partition/hierarchy.py",
                  "gnnddm/partition/coarse.py", *_SHARED),
    "level-costs": ("gnnddm/models", "gnnddm/ddm/objective.py", "gnnddm/partition/hierarchy.py", *_SHARED),
}
_DEEP = ("gnnddm/ddm", "gnnddm/distributed", "gnnddm/models", "conf/ddm", "gnnddm/partition/hierarchy.py",
         "gnnddm/partition/halo.py", "gnnddm/training", "benchmarks/bench_multilevel.py", "benchmarks/bench_dd.py",
         "conf/experiment/dd_deep.yaml")
SOURCES.update({"deep": _DEEP, "deep-parts": _DEEP})
KEYS = ("compute_time", "wall_time", "grad_evals", "fine_grad_evals", "fine_loss_evals", "model_time",
        "model_time_multinode", "rounds")
#: a forward-only pass costs about a third of a forward and backward pass (fine passes in gradient units)
FORWARD_SHARE = 1 / 3


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: tuple[str, ...]
    max_iterations: int
    eval_every: int | None = None  # None: the command's --eval-every


def variants(budget: int, lr: float, every: int, deep: bool = False,
             coarse_scales: tuple[float, ...] = ()) -> list[Variant]:
    """The multilevel variants (fine rate ``lr``; coarse Adam at the same rate; no fine smoothing: the fine
    level supplies the coherent gradient and the trust-region test), in one piece (one part), as studied.
    ``deep``: in space, in depth and in both, for the residual model of the deep regime, then the space
    cycle with coarse Adam at ``s`` x ``lr`` for every ``s`` of ``coarse_scales`` (indices 3, 4, ...)."""
    ml = ("ddm=multilevel", "partition.num_parts=1", "ddm.pre_smooth=0")
    same = (*ml, f"ddm.coarse_solver.lr={lr}")
    if deep:
        three = (*same, "ddm.levels=3", "ddm.post_smooth=[0,4,8]")
        return [
            Variant("multilevel space L=3, ν₂=(0,4,8)", three, budget, every),
            Variant("multilevel depth L=3, ν₂=(0,4,8)", (*three, "ddm.depth_coarsening=true", "ddm.schedule=[depth]"),
                    budget, every),
            Variant("multilevel space x depth L=3, ν₂=(0,4,8)", (*three, "ddm.depth_coarsening=true",
                                                                 "ddm.schedule=[both]"), budget, every),
            *(Variant(f"multilevel space L=3, ν₂=(0,4,8), coarse lr {s:g}x", (
                *ml, f"ddm.coarse_solver.lr={s * lr:.6g}", "ddm.levels=3", "ddm.post_smooth=[0,4,8]"), budget, every)
              for s in coarse_scales),
        ]
    return [
        Variant("multilevel grid L=3, ν₂=(0,4,8)", (*same, "ddm.levels=3", "ddm.post_smooth=[0,4,8]"), budget, every),
        Variant("multilevel grid L=3, ν₂=(0,8,16)", (*same, "ddm.levels=3", "ddm.post_smooth=[0,8,16]"), budget, every),
        Variant("multilevel grid L=3, ν₂=(0,4,8), RB-AdaGrad box", (*same, "ddm.levels=3", "ddm.post_smooth=[0,4,8]",
                                                                   "ddm.globalization=offo"), budget, every),
        Variant("multilevel matching L=3, ν₂=(0,4,8)", (*same, "ddm.levels=3", "ddm.post_smooth=[0,4,8]",
                                                       "ddm.coarsening=matching"), budget, every),
    ]


def train_run(variant: Variant, base: list[str], seed: int, target: float | None, client) -> tuple[Run, dict]:
    """Train ``variant`` (stopping at ``target`` when given); the run read at ``target`` and its histories."""
    from gnnddm.config import compose
    from gnnddm.training import train

    overrides = [*base, f"seed={seed}", f"trainer.max_iterations={variant.max_iterations}", *variant.overrides]
    if variant.eval_every is not None:
        overrides.append(f"trainer.eval_every={variant.eval_every}")
    if target is not None:
        overrides.append(f"trainer.target_val_loss={target!r}")
    summary = train(compose(overrides))
    names = ("val_loss", *KEYS, *(f"val_rmse/{v}" for v in summary["final"]["val_rmse"]))
    hist = histories(client, summary["mlflow_run_id"], names)
    return read_at(variant, seed, hist, target), hist


def read_at(variant: Variant, seed: int, hist: dict, target: float | None) -> Run:
    """The run's counters and val RMSEs at its first evaluation with val_loss <= ``target``."""
    from gnnddm.report.metrics import first_crossing, value_at_step

    steps, values = hist["val_loss"]
    run = Run(variant, seed, int(max(steps)), None, best_val_loss=min(values))
    if target is not None:
        run.step = first_crossing(steps, values, target)
    if run.step is not None:
        run.at = {k: value_at_step(*hist[k], run.step) for k in KEYS if k in hist}
        if "fine_grad_evals" not in run.at:  # global and the DD methods: every gradient is a fine one
            run.at["fine_grad_evals"] = run.at.get("grad_evals")
        run.at.setdefault("fine_loss_evals", 0.0)  # global makes no forward-only pass
        # the fine work in gradient units: gradients, and the trust-region test's forwards at a third each
        run.at["fine_work"] = run.at["fine_grad_evals"] + FORWARD_SHARE * run.at["fine_loss_evals"]
        run.rmse = {k.split("/", 1)[1]: value_at_step(*v, run.step) for k, v in hist.items()
                    if k.startswith("val_rmse/")}
    return run


def rmse_devs(runs: list[Run], ref: dict[int, Run]) -> dict[str, float]:
    out = {}
    for var in next(iter(ref.values())).rmse:
        devs = [r.rmse[var] / ref[r.seed].rmse[var] - 1 for r in runs if r.reached and ref[r.seed].rmse.get(var)]
        if devs:
            out[var] = statistics.median(devs)
    return out


def ratio(runs: list[Run], ref: dict[int, Run], key: str) -> float | None:
    vals = [r.at[key] / ref[r.seed].at[key] for r in runs if r.reached and ref[r.seed].at.get(key)]
    return statistics.median(vals) if vals else None


def table(groups: dict[str, list[Run]], ref: dict[int, Run]) -> list[str]:
    head = ["method", "reached", "training time (s)", "x global", "wall (s)", "fine grads", "fine forwards",
            "fine work x global", "grad work (all levels)", "best val_loss", "val RMSE Δ vs global at target"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, runs in groups.items():
        ok = [r for r in runs if r.reached]
        devs = rmse_devs(runs, ref) if label != "global" else {}
        dev = ", ".join(f"{v} {d:+.1%}" for v, d in devs.items()) if devs else "–"
        rows.append("| " + " | ".join([
            label, f"{len(ok)}/{len(runs)}",
            median_range([r.at["compute_time"] for r in ok], ".1f"), _fmt(ratio(runs, ref, "compute_time"), ".2f"),
            median_range([r.at["wall_time"] for r in ok], ".1f"),
            median_range([r.at["fine_grad_evals"] for r in ok], ".0f"),
            median_range([r.at["fine_loss_evals"] for r in ok], ".0f"),
            _fmt(ratio(runs, ref, "fine_work"), ".2f"),
            median_range([r.at["grad_evals"] for r in ok], ".0f"),
            median_range([r.best_val_loss for r in runs], ".4g"), dev,
        ]) + " |")
    return rows


def verdict(groups: dict[str, list[Run]], ref: dict[int, Run]) -> list[str]:
    best, best_time = None, math.inf
    for label, runs in groups.items():
        if label == "global" or not all(r.reached for r in runs):
            continue
        t = ratio(runs, ref, "compute_time")
        if t is not None and t < best_time:
            best, best_time = label, t
    if best is None:
        return ["**Goal not met**: no multilevel variant reached the target for every seed."]
    grads = ratio(groups[best], ref, "fine_grad_evals")
    work = ratio(groups[best], ref, "fine_work")
    devs = rmse_devs(groups[best], ref)
    worst = max(devs.values(), key=abs) if devs else math.nan  # the deviation of largest magnitude, signed
    met = best_time <= GOAL_TIME and work <= GOAL_GRADS and abs(worst) <= GOAL_RMSE
    return [
        f"Best multilevel variant: **{best}**: training time {best_time:.2f}x of `global` (goal <= {GOAL_TIME:.2f}; "
        f"{noise(groups[best], groups['global'], 'compute_time')}), fine gradient evaluations {grads:.2f}x and "
        f"fine work with the trust-region test's forward passes {work:.2f}x (goal <= {GOAL_GRADS:.2f}), largest "
        f"variable RMSE deviation {worst:+.1%} from `global` at the same target (goal within ±{GOAL_RMSE:.0%}): "
        f"**goal {'met' if met else 'not met'}** (medians over the seeds).",
    ]


def noise(runs: list[Run], base: list[Run], key: str) -> str:
    """The seed ranges of ``key`` and whether they overlap (``within noise``); one seed: no estimate."""
    a = [r.at[key] for r in runs if r.reached and r.at.get(key) is not None]
    b = [r.at[key] for r in base if r.reached and r.at.get(key) is not None]
    if not a or not b:
        return "no range"
    ranges = f"[{min(a):.3g}, {max(a):.3g}] s against [{min(b):.3g}, {max(b):.3g}] s"
    if len(a) < 2 or len(b) < 2:
        return f"{ranges}: one seed, no noise estimate"
    return f"{ranges}: {'within noise' if min(a) <= max(b) and min(b) <= max(a) else 'outside the seed ranges'}"


def lr_sweep(args, base, seed, client, log) -> tuple[float, str, dict, list[str]]:
    """The rate and schedule of ``global`` with the lowest best val_loss (seed ``seed``) over ``--lrs`` x
    ``--schedules``, that run's histories, the table. A rate whose run diverges (TrainingDivergedError) is
    the worst of the grid: a best rate next to it is inside the grid."""
    from gnnddm.errors import TrainingDivergedError

    rows, best_lr, best_schedule, best, best_hist = [], None, None, math.inf, None
    schedules = args.schedules.split(",")
    for schedule in schedules:
        for lr in (float(x) for x in args.lrs.split(",")):
            try:
                run, hist = train_run(Variant(f"global lr {lr:g} {schedule}", ("ddm=global", f"optimizer.lr={lr}",
                                                                               f"trainer.lr_schedule={schedule}"),
                                              args.budget), base, seed, None, client)
            except TrainingDivergedError as err:  # a rate too large for the problem: the worst of the grid
                log(f"lr sweep: global lr={lr:g} {schedule}: diverged ({err})")
                rows.append(f"| {lr:g} | {schedule} | diverged |")
                continue
            log(f"lr sweep: global lr={lr:g} {schedule}: best val_loss {run.best_val_loss:.5g}")
            rows.append(f"| {lr:g} | {schedule} | {run.best_val_loss:.5g} |")
            if run.best_val_loss < best:
                best_lr, best_schedule, best, best_hist = lr, schedule, run.best_val_loss, hist
    if best_lr is None:
        raise SystemExit(f"every rate of the sweep ({args.lrs}) diverged: pass smaller --lrs")
    edge = sweep_edge([float(x) for x in args.lrs.split(",")], best_lr)
    md = [f"Learning-rate sweep of `global` Adam, seed {seed}, {args.budget} iterations:", "",
          "| lr | schedule | best val_loss |", "|---|---|---|", *rows, "",
          f"Chosen: lr = {best_lr:g}, {best_schedule} schedule; the rate is {edge}.",
          "", f"Convergence of that reference: {improvement(*best_hist['val_loss'])}.", ""]
    return best_lr, best_schedule, best_hist, md


def level_costs(resolution: float, steps: int, threads: int, log) -> list[str]:
    """Seconds per global-optimizer step on every level of the grid hierarchy of ``resolution``."""
    import numpy as np
    import torch

    from gnnddm.config import build_component, compose
    from gnnddm.data.pipeline import build_problem
    from gnnddm.ddm.objective import Objective
    from gnnddm.partition.hierarchy import build_hierarchy, grid_levels_allowed
    from gnnddm.partition.partitioners import partition_graph

    torch.set_num_threads(threads)
    # the fields in memory: a step on each level reads the whole batch (at 0.25 deg, 120 steps are 4.5 GB,
    # past data.eager_max_gb, so data.lazy=auto would leave them in their file)
    cfg = compose(["+experiment=dd_compare", f"data.resolution={resolution}", f"data.steps={steps}",
                   "data.lazy=false", "tracking.enabled=false"])
    t = time.perf_counter()
    problem = build_problem(cfg)
    data = problem.data
    log(f"level costs: {data.num_nodes} nodes loaded and graph built in {time.perf_counter() - t:.0f} s")
    levels = min(4, grid_levels_allowed(data.grid_shape))
    t = time.perf_counter()
    hierarchy = build_hierarchy(data, levels, "grid", rebuild=problem.rebuild)
    log(f"level costs: grid hierarchy of {levels} coarse levels in {time.perf_counter() - t:.1f} s")
    task = build_component(cfg.task, "task", data)
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, int(data.edge_attr.shape[1]))
    objective = Objective(data, partition_graph(data, num_parts=1, overlap=0), coarse_levels=hierarchy)
    rng = np.random.default_rng(0)
    losses = objective.on(task.batch(task.anchors(np.arange(data.times.shape[0]))[:4], rng))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows = []

    def timed(loss_fn, repeats: int = 3) -> float:
        best = math.inf
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            opt.zero_grad()
            loss_fn(model).backward()
            opt.step()
            best = min(best, time.perf_counter() - start)
        return best

    fine = timed(losses.global_loss)
    rows.append(f"| 0 | {data.grid_shape[0]} x {data.grid_shape[1]} | {data.num_nodes:,} | {fine * 1e3:.2f} | 1.00 |")
    shape = data.grid_shape
    for i, level in enumerate(hierarchy):
        shape = (-(-shape[0] // 2), -(-shape[1] // 2))
        losses.coarse_batch(i)  # restriction once, outside the timing
        sec = timed(lambda m, i=i: losses.coarse_loss(m, i))
        rows.append(f"| {i + 1} | {shape[0]} x {shape[1]} | {level.num_clusters:,} | {sec * 1e3:.2f} | "
                    f"{sec / fine:.3f} |")
        log(f"level costs: level {i + 1}: {level.num_clusters} nodes, {sec:.3f} s per step")
    return [f"Milliseconds per Adam step (forward + backward + update, best of 3, {threads} threads, batch 4) on "
            f"each level of the grid hierarchy of the {resolution} deg synthetic grid, GraphSAGE hidden 32, "
            "2 layers:", "", "| level | grid | nodes | ms per step | x level 0 |", "|---|---|---|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=0.703125, help="grid spacing of the study (deg)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, or none")
    parser.add_argument("--lrs", default="3e-3,1e-2,3e-2", help="learning rates of global's sweep")
    parser.add_argument("--budget", type=int, default=400, help="iterations of global (the reference)")
    parser.add_argument("--variant-budget", type=int, default=120, help="outer iterations of a multilevel run")
    parser.add_argument("--tol", type=float, default=0.02, help="target = best global val_loss * (1 + tol)")
    parser.add_argument("--eval-every", type=int, default=10, help="iterations between evaluations of global, sync")
    parser.add_argument("--variant-eval-every", type=int, default=5,
                        help="outer iterations between evaluations of the multilevel and two_level runs (costlier)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every run")
    parser.add_argument("--only", default=None, help="comma-separated indices of the variants to run")
    parser.add_argument("--parts", type=int, default=8, help="sync vs two_level with this many parts (0: skip)")
    parser.add_argument("--level-costs", type=float, default=None, help="grid (deg) of the per-level step costs")
    parser.add_argument("--level-steps", type=int, default=12, help="time steps of the level-costs data")
    parser.add_argument("--steps", type=int, default=None, help="time steps of the synthetic data (default 240)")
    parser.add_argument("--block", default=None, help="suffix of the generated blocks' names (e.g. 0.25)")
    parser.add_argument("--quick", action="store_true", help="smoke version: 5.625 deg, one seed, short budgets")
    parser.add_argument("--deep", type=int, default=None, help="the deep regime: residual GraphSAGE of L layers")
    parser.add_argument("--schedules", default="constant", help="learning-rate schedules of global's sweep")
    parser.add_argument("--coarse-scales", default="",
                        help="--deep: also the space cycle with coarse Adam at these multiples of global's rate "
                             "(comma-separated; variants 3, 4, ...)")
    parser.add_argument("--output", type=Path, default=None, help="markdown page whose generated blocks are rewritten")
    args = parser.parse_args(argv)
    if args.quick:
        args.resolution, args.seeds, args.lrs, args.budget, args.variant_budget = 5.625, "0", "1e-2", 30, 20

    from mlflow.tracking import MlflowClient

    command, log, t0 = session("bench_multilevel.py", argv)
    # fingerprinted as the run starts: edits made while it runs are not what it measured
    stamps = {kind: results_blocks.stamp(sources, command) for kind, sources in SOURCES.items()} if args.output else {}
    blocks: dict[str, list[str]] = {}
    seeds = [] if args.seeds == "none" else [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(tracking_uri=uri)
        # the fields in memory for every method alike: the grid hierarchy restricts them all at set-up, and
        # at 0.25 deg (4.5 GB) data.lazy=auto would leave them in their file
        experiment = "dd_deep" if args.deep else "dd_compare"
        base = [f"+experiment={experiment}", f"data.resolution={args.resolution}", f"trainer.threads={args.threads}",
                "trainer.progress=false", f"trainer.eval_every={args.eval_every}", f"tracking.uri={uri}",
                "tracking.experiment=bench_multilevel", f"output_dir={tmp}/run", "data.lazy=false"]
        if args.deep:
            base.append(f"model.layers={args.deep}")
        if args.quick:
            base.append("data.steps=60")
        elif args.steps is not None:
            base.append(f"data.steps={args.steps}")
        if seeds:
            lr, schedule, sweep_hist, md = lr_sweep(args, base, seeds[0], client, log)
            if args.deep:
                md = [f"Deep regime: `+experiment=dd_deep model.layers={args.deep}` (residual GraphSAGE, hidden 96) on "
                      f"the synthetic {args.resolution:g} deg grid, one process, {args.threads} torch thread(s); "
                      "multilevel variants at `global`'s chosen rate with a constant schedule.", "", *md]
            chosen = variants(args.variant_budget, lr, args.variant_eval_every, deep=bool(args.deep),
                              coarse_scales=tuple(float(x) for x in args.coarse_scales.split(",") if x))
            if args.only:
                chosen = [chosen[int(i)] for i in args.only.split(",")]
            groups: dict[str, list[Run]] = {"global": []}
            ref: dict[int, Run] = {}
            targets: dict[int, float] = {}
            for seed in seeds:
                glob = Variant("global", ("ddm=global", f"optimizer.lr={lr}", f"trainer.lr_schedule={schedule}"),
                               args.budget)
                if seed == seeds[0]:  # the sweep's run at the chosen rate is this seed's reference
                    hist = sweep_hist
                    reference = read_at(glob, seed, hist, None)
                else:
                    reference, hist = train_run(glob, base, seed, None, client)
                targets[seed] = reference.best_val_loss * (1 + args.tol)
                ref[seed] = read_at(glob, seed, hist, targets[seed])
                groups["global"].append(ref[seed])
                log(f"seed {seed}: global best {reference.best_val_loss:.5g}, target {targets[seed]:.5g}, reached at "
                    f"iteration {ref[seed].step}, {ref[seed].at.get('compute_time', math.nan):.1f} s")
                for v in chosen:
                    run, _ = train_run(Variant(v.label, (*v.overrides, f"optimizer.lr={lr}"), v.max_iterations,
                                               v.eval_every), base, seed, targets[seed], client)
                    groups.setdefault(v.label, []).append(run)
                    log(f"seed {seed}: {v.label}: step {run.step}, "
                        f"{run.at.get('compute_time', math.nan):.1f} s, fine grads {run.at.get('fine_grad_evals')}")
            md += [f"Target per seed: best `global` val_loss within {args.budget} iterations x {1 + args.tol:g} "
                   f"({', '.join(f'seed {s}: {t:.5g}' for s, t in targets.items())}). Medians [min, max] over "
                   f"{len(seeds)} seeds; ratios are per-seed ratios to `global`, medians over the seeds.", "",
                   *table(groups, ref), "", *verdict(groups, ref)]
            blocks["deep" if args.deep else "study"] = md
            print("\n".join(md))
            if args.parts and args.deep:
                fastest = min((v for v in chosen if all(r.reached for r in groups[v.label])),
                              key=lambda v: ratio(groups[v.label], ref, "compute_time"), default=None)
                blocks["deep-parts"] = deep_parts_block(args, base, lr, targets, fastest, client, log)
                print("\n".join(blocks["deep-parts"]))
            elif args.parts:
                blocks["two-level"] = two_level_block(args, base, lr, targets[seeds[0]], seeds[0], client, log)
                print("\n".join(blocks["two-level"]))
    if args.level_costs is not None:
        blocks["level-costs"] = level_costs(args.level_costs, args.level_steps, args.threads, log)
        print("\n".join(blocks["level-costs"]))
    elapsed = time.perf_counter() - t0
    print(f"\ntotal {elapsed:.0f} s")
    if args.output is not None:
        for kind, md in blocks.items():
            name = f"{kind}-{args.block}" if args.block else kind
            header = [f"Command: `{command}`  ", f"Machine: {machine()}  ",
                      f"Total time of the command: {elapsed:.0f} s.", ""]
            results_blocks.write_block(args.output, "bench_multilevel", name, "\n".join(header + md).rstrip(),
                                       stamps[kind], title="# Multilevel training")
        print(f"wrote {args.output}")
    return 0


def deep_parts_block(args, base, lr, targets, variant, client, log) -> list[str]:
    """``halo_sync`` against multilevel variant ``variant`` on ``args.parts`` METIS parts with one-hop halos
    (the exact data path of both), for every seed of ``targets`` (seed -> the study's target): modelled
    times, medians [min, max] over the seeds, per-seed ratios and whether the seed ranges overlap."""
    p = args.parts
    common = (f"partition.num_parts={p}", "partition.overlap=1", f"optimizer.lr={lr}")
    entries = [("halo_sync", ("ddm=halo_sync",), args.budget, None)]
    if variant is not None:
        overrides = tuple(o for o in variant.overrides if not o.startswith("partition.num_parts"))
        entries.append((f"{variant.label}, p = {p}", overrides, variant.max_iterations, variant.eval_every))
    groups: dict[str, list[Run]] = {}
    for seed, target in targets.items():
        for label, overrides, its, every in entries:
            run, _ = train_run(Variant(label, (*overrides, *common), its, every), base, seed, target, client)
            groups.setdefault(label, []).append(run)
            log(f"p={p}: seed {seed}: {label}: step {run.step}, multi-node model time "
                f"{run.at.get('model_time_multinode')}")
    head = ["method", "reached", "reached at", "collectives", "model time (s), multi-node", "x halo_sync",
            "compute (s)", "grad work", "best val_loss", "val RMSE Δ vs halo_sync at target"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = {r.seed: r for r in groups["halo_sync"] if r.reached}
    for label, runs in groups.items():
        ok = [r for r in runs if r.reached]
        devs = rmse_devs(runs, ref) if label != "halo_sync" and ref else {}
        rows.append("| " + " | ".join([
            label, f"{len(ok)}/{len(runs)}", median_range([r.step for r in ok], ".0f"),
            median_range([r.at.get("rounds") for r in ok], ".0f"),
            median_range([r.at.get("model_time_multinode") for r in ok], ".1f"),
            _fmt(ratio(runs, ref, "model_time_multinode") if ref else None, ".2f"),
            median_range([r.at.get("compute_time") for r in ok], ".1f"),
            median_range([r.at.get("grad_evals") for r in ok], ".0f"),
            median_range([r.best_val_loss for r in runs], ".5g"),
            ", ".join(f"{v} {d:+.1%}" for v, d in devs.items()) if devs else "–",
        ]) + " |")
    halo = groups["halo_sync"]
    if variant is None:
        line = "No multilevel variant reached the target for every seed: nothing to run on parts."
    elif not all(r.reached for runs in groups.values() for r in runs):
        line = "One of the two did not reach the target within its budget for every seed: no verdict."
    else:
        mine = groups[entries[1][0]]
        x = ratio(mine, ref, "model_time_multinode")
        line = (f"{variant.label} on {p} parts: {x:.2f}x of `halo_sync`'s multi-node modelled time (goal <= "
                f"{GOAL_TIME:.2f}; median of the per-seed ratios; {noise(mine, halo, 'model_time_multinode')}): "
                f"**goal {'met' if x <= GOAL_TIME else 'not met'}**.")
    seeds = ", ".join(f"seed {s}: {t:.5g}" for s, t in targets.items())
    return [f"p = {p} METIS parts with one-hop halos, the targets of the study above ({seeds}); the fastest "
            f"variant of the study, its coarse levels on the restricted partition. Medians [min, max] over "
            f"{len(targets)} seed(s). Modelled time: per "
            "phase the slowest part's measured compute plus, per collective, the multi-node network model (α = 25 µs, "
            "12.5 GB/s links, ring all-reduce 2(p−1)/p·b; halo messages α + b / 12.5 GB/s; docs/algorithms.md, "
            "*Accounting*). All parts computed in one process, one after the other.", "", *rows, "", line]


def two_level_block(args, base, lr, target, seed, client, log) -> list[str]:
    """``sync`` against ``two_level`` with the grid hierarchy at p = ``args.parts``, seed ``seed``."""
    p = args.parts
    common = (f"partition.num_parts={p}", "partition.overlap=2", f"optimizer.lr={lr}")
    runs = {}
    budget = args.variant_budget
    for label, overrides, its, every in (
        ("sync", ("ddm=sync",), args.budget, None),
        ("two_level, grid hierarchy L=3", ("ddm=two_level", "ddm.coarsening=grid", "ddm.coarse_levels=2",
                                           f"ddm.local_solver.lr={lr}"), budget, args.variant_eval_every),
        ("two_level, METIS clusters (64)", ("ddm=two_level", f"ddm.local_solver.lr={lr}"), budget,
         args.variant_eval_every),
    ):
        run, _ = train_run(Variant(label, (*overrides, *common), its, every), base, seed, target, client)
        runs[label] = run
        log(f"p={p}: {label}: step {run.step}, model time {run.at.get('model_time')}")
    head = ["method", "reached at", "collectives", "model time (s), default", "x sync", "model time (s), multi-node",
            "x sync", "training time (s)", "best val_loss"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    s = runs["sync"]
    for label, r in runs.items():
        def x(key, r=r):
            return _fmt(r.at[key] / s.at[key], ".2f") if r.reached and s.reached and s.at.get(key) else "–"
        rows.append("| " + " | ".join([
            label, str(r.step) if r.reached else "not reached", _fmt(r.at.get("rounds"), ".0f"),
            _fmt(r.at.get("model_time"), ".1f"), x("model_time"), _fmt(r.at.get("model_time_multinode"), ".1f"),
            x("model_time_multinode"), _fmt(r.at.get("compute_time"), ".1f"), f"{r.best_val_loss:.5g}",
        ]) + " |")
    grid = runs["two_level, grid hierarchy L=3"]
    if not s.reached:
        verdict_line = "`sync` did not reach the target within its budget: no ratio."
    elif not grid.reached:
        verdict_line = "**Goal not met**: `two_level` with the grid hierarchy did not reach the target."
    else:
        x = grid.at["model_time_multinode"] / s.at["model_time_multinode"]
        verdict_line = (f"`two_level` with the grid hierarchy: {x:.2f}x of `sync`'s multi-node modelled time "
                        f"(goal <= {GOAL_TWO_LEVEL}): **goal {'met' if x <= GOAL_TWO_LEVEL else 'not met'}**.")
    return [f"p = {p} METIS parts with the exact overlap 2, seed {seed}, the target of the study above "
            f"({target:.5g}); budgets: `sync` {args.budget}, `two_level` {budget} outer iterations. Modelled "
            "time: per phase the slowest subdomain's measured compute plus, per collective, α + bytes·β "
            "(default: α = 10 µs, β = 1 ns/byte; multi-node: α = 25 µs, ring all-reduce 2(p−1)/p·b / 12.5 GB/s; "
            "docs/algorithms.md, *Accounting*).", "",
            *rows, "", verdict_line]


if __name__ == "__main__":
    sys.exit(main())
