"""Time to a common target of every training algorithm: two regimes, several seeds, two network models.

Regimes (docs/dd_benchmark.md):

- *shallow*: ``+experiment=dd_compare``: next-step forecasting on the synthetic 2.8125 deg reanalysis
  (8,192 nodes), GraphSAGE hidden 32, 2 layers (1,572 parameters), METIS parts, exact overlap 2.
- *deep*: ``+experiment=dd_deep``: the same task with a residual GraphSAGE of 8 layers, hidden 96
  (116k parameters); ``sync`` replicates the exact 8-hop overlap, ``halo_sync`` exchanges a one-hop halo
  before every layer, the domain-decomposition (DD) methods run on inexact subdomains (overlap δ < L).
  The shipped experiment is the 0.703125 deg grid (131,072 nodes); ``--deep-resolution`` picks the grid
  the benchmark trains on (default 2.8125 deg, what two cores can run for several methods and seeds).
- *mesh*: ``+experiment=era5_mesh``: the encoder-processor-decoder model (docs/mesh.md) on the ERA5 1 deg
  sample, the joint grid + mesh graph partitioned by its mesh (``partition=mesh``); ``sync`` replicates the
  exact overlap of processor_layers + 2 = 6 hops, ``halo_sync`` and the DD methods run with overlap 1, as in
  the deep regime. ``--mesh-resolution`` trains it on the synthetic grid of that spacing instead.

Procedure, per regime and p:

1. Learning rate of the baselines: ``global`` Adam for the iteration budget with each rate of
   ``--lrs`` (seed 0); the rate with the lowest best validation loss is used by ``global``, ``sync``,
   ``halo_sync`` and as the local-solver rate of the DD methods. The sweep is printed.
2. Per seed: the ``global`` reference for the budget; target = its best val_loss x (1 + tol). Every
   variant then trains until its first evaluation at or below the target (or its budget). ``global
   stopped at the target`` is read from the reference's own histories at its first crossing.
3. At the target step, from the MLflow histories: collectives (``rounds``), ``comm_bytes``,
   ``grad_evals``, ``model_time`` (default network model, ``accounting.alpha/beta``),
   ``model_time_multinode`` (α = 25 µs, ring all-reduce at 12.5 GB/s, halo message α + bytes/12.5e9),
   ``wall_time`` and the val RMSE of every variable. Medians and ranges over the seeds.
4. Goal, printed in the same run: the best DD method (lowest median multi-node time among those that
   reach the target for every seed) needs <= 1/10 of the collectives and <= 1/2 of the multi-node
   modelled time of the faster exact baseline (``sync`` or ``halo_sync``), with every variable's val RMSE
   within 2 % of ``global`` stopped at the same target.

Optional parts: ``--ranks 2`` measures the wall time to target of the baselines and the three best DD
methods with two gloo ranks (seed 0); ``--halo-table`` prints the replicated work of exact overlaps against
δ (= the depth L they make exact) for p = 8 and 64 on the 0.703125 deg grid, next to ``halo_sync``'s.

    python3 benchmarks/bench_dd.py --regime deep --output docs/dd_benchmark.md
    python3 benchmarks/bench_dd.py --regime shallow --parts 2,4,8,16 --seeds 0 --output docs/dd_benchmark.md
    python3 benchmarks/bench_dd.py --regime mesh --parts 4 --output docs/mesh.md
    python3 benchmarks/bench_dd.py --halo-table --regime none --output docs/dd_benchmark.md
    python3 benchmarks/bench_dd.py --quick          # smoke version (5.625 deg, one seed, a few methods)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks  # noqa: E402

KEYS = ("rounds", "comm_bytes", "grad_evals", "model_time", "model_time_multinode", "compute_time", "wall_time")
GOAL_ROUNDS, GOAL_TIME, GOAL_RMSE = 0.1, 0.5, 0.02
EXACT = ("sync", "halo_sync")
_TRAINING = ("gnnddm/ddm", "gnnddm/distributed", "gnnddm/models", "conf/ddm", "benchmarks/bench_dd.py")
# The files whose behaviour each kind of block measures; their fingerprint goes into the block's marker
# (benchmarks/results_blocks.py) so that benchmarks/check_results.py can tell when the block is stale.
SOURCES = {
    "shallow": (*_TRAINING, "conf/experiment/dd_compare.yaml"),
    "deep": (*_TRAINING, "conf/experiment/dd_deep.yaml"),
    "mesh": (*_TRAINING, "gnnddm/graph/icosahedral.py", "gnnddm/partition/mesh.py", "conf/experiment/era5_mesh.yaml"),
    "halo": ("gnnddm/partition", "gnnddm/graph", "benchmarks/bench_dd.py", "conf/experiment/dd_deep.yaml"),
}


@dataclass(frozen=True)
class Variant:
    """One row: an algorithm with its overrides and budget."""

    label: str
    ddm: str
    overrides: tuple[str, ...] = ()
    max_iterations: int = 200
    eval_every: int = 5

    @property
    def exact(self) -> bool:
        return self.ddm in ("global", *EXACT)


@dataclass
class Run:
    """One training run's outcome at the target."""

    variant: Variant
    seed: int
    iterations: int
    step: int | None
    at: dict = field(default_factory=dict)
    rmse: dict = field(default_factory=dict)
    best_val_loss: float = math.nan

    @property
    def reached(self) -> bool:
        return self.step is not None


# ------------------------------------------------------------------------------------ the variants
def variants(regime: str, budget: int, lr: float, quick: bool, extended: bool = False,
             apts: bool = False, tr_norms: bool = False) -> list[Variant]:
    """Baselines and DD methods of a regime; DD methods take ``m`` local Adam steps at the baselines' rate.

    The deep regime runs the three DD families (averaging, server correction, Schwarz) unless ``extended``
    (span combination, two-level and more local steps too): each deep DD run costs minutes here. ``apts``
    adds parameter-space Schwarz (``ddm=apts``, learning-rate free local trust-region steps in Adam's metric):
    blocks = layers and N = 2, 4 groups of layers; with N = 2 the three trust-region norms, the initial radius
    over a 100x range without any rate sweep, the non-monotone test (W = 5), the hybrid (block x part), and
    the radii shrinking by 0.5 instead of 0.9 on a rejection (``ddm.gamma_dec``) with the radius range again,
    γ_inc = 2, one local step, three times the budget, and each block's local loop starting where its previous
    one ended (``ddm.local_radius=last``) over the radius range. ``tr_norms`` adds ``asm`` with its ball in Adam's
    and AdaGrad's metric (``ddm.tr_norm``; the plain ``asm`` row is the Euclidean one).
    """
    local = f"ddm.local_solver.lr={lr}"
    if regime == "shallow":
        m, dd_overlap, dd_budget = 20, (), budget // 5
    else:
        m, dd_overlap, dd_budget = 10, ("partition.overlap=1",), budget // 4
    steps = (f"ddm.local_steps={m}", local)
    rows = [
        Variant("sync", "sync", max_iterations=budget),
        Variant("halo_sync", "halo_sync", ("partition.overlap=1",) if regime != "shallow" else (), budget),
        Variant(f"local_avg m={m}", "local_avg", (*steps, *dd_overlap), dd_budget, 1),
        Variant(f"llcg m={m}", "llcg", (*steps, *dd_overlap), dd_budget, 1),
        Variant(f"asm m={m}", "asm", (*steps, *dd_overlap), dd_budget, 1),
    ]
    if apts:
        def apts_row(label: str, *extra: str, blocks: int | str = 2, norm: str = "adam", local_steps: int = 3,
                     gamma_dec: float = 0.9, its: int = dd_budget) -> Variant:
            """``local_steps`` learning-rate free trust-region steps per block, the ball in ``norm``'s metric.
            N = 2 blocks is the cheapest layout, so the norms, the radius range, the non-monotone test and
            the hybrid use it. A row whose label names no gamma_dec shrinks its radii by 0.9 on a rejection,
            the factor it was first measured with; the default is now 0.5 (conf/ddm/apts.yaml), chosen by
            the gamma_dec rows below."""
            return Variant(label, "apts", (f"ddm.gamma_dec={gamma_dec}", f"ddm.blocks={blocks}", f"ddm.tr_norm={norm}",
                                           f"ddm.local_steps={local_steps}", *extra, *dd_overlap), its, 1)

        rows += [apts_row("apts layers adam", blocks="layers"), apts_row("apts N=2 adam"),
                 apts_row("apts N=4 adam", blocks=4), apts_row("apts N=2 euclidean", norm="euclidean"),
                 apts_row("apts N=2 adagrad", norm="adagrad"),
                 apts_row("apts N=2 adam radius0=0.01", "ddm.radius0=0.01"),
                 apts_row("apts N=2 adam radius0=1", "ddm.radius0=1.0"),
                 apts_row("apts N=2 adam W=5", "ddm.nonmonotone_window=5"),
                 apts_row("apts N=2 adam hybrid", "ddm.hybrid=true"),
                 apts_row("apts N=2 adam gamma_dec=0.5", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 radius0=0.01", "ddm.radius0=0.01", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 radius0=1", "ddm.radius0=1.0", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 gamma_inc=2", "ddm.gamma_inc=2.0", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 m=1", local_steps=1, gamma_dec=0.5),
                 apts_row(f"apts N=2 adam gamma_dec=0.5 {3 * dd_budget} its", gamma_dec=0.5, its=3 * dd_budget),
                 apts_row("apts N=2 adam gamma_dec=0.5 local_radius=last", "ddm.local_radius=last", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 local_radius=last radius0=0.01", "ddm.local_radius=last",
                          "ddm.radius0=0.01", gamma_dec=0.5),
                 apts_row("apts N=2 adam gamma_dec=0.5 local_radius=last radius0=1", "ddm.local_radius=last",
                          "ddm.radius0=1.0", gamma_dec=0.5)]
    if tr_norms:
        rows += [Variant(f"asm m={m} tr_norm={norm}", "asm", (*steps, f"ddm.tr_norm={norm}", *dd_overlap), dd_budget, 1)
                 for norm in ("adam", "adagrad")]
    if quick or (regime != "shallow" and not extended):
        return rows
    return rows + [
        Variant(f"asm span m={m}", "asm", (*steps, "ddm.combine=span", *dd_overlap), dd_budget, 1),
        Variant(f"asm separate trial m={m}", "asm", (*steps, "ddm.trial=separate", *dd_overlap), dd_budget, 1),
        Variant(f"two_level m={m}", "two_level", (*steps, f"ddm.coarse_steps={m}", *dd_overlap), dd_budget, 1),
        Variant(f"local_avg m={2 * m}", "local_avg", (f"ddm.local_steps={2 * m}", local, *dd_overlap),
                dd_budget, 1),
    ]


def overlap_sweep(regime: str, budget: int, lr: float) -> list[Variant]:
    """Accuracy and cost against δ for local_avg in the deep regime (δ < L = 8: inexact subdomains)."""
    return [Variant(f"local_avg m=10 overlap={d}", "local_avg", ("ddm.local_steps=10", f"ddm.local_solver.lr={lr}",
                                                                  f"partition.overlap={d}"), budget // 4, 1)
            for d in (0, 1, 2, 4, 8)]


# ------------------------------------------------------------------------------------ running
def base_overrides(args, regime: str, parts: int, seed: int, lr: float, uri: str, out: Path) -> list[str]:
    if regime == "shallow":
        res = ["data.resolution=5.625", "data.steps=120"] if args.quick else [f"data.resolution={args.resolution}"]
        exp = "dd_compare"
    elif regime == "deep":
        res = ["data.resolution=5.625", "data.steps=120"] if args.quick else [
            f"data.resolution={args.deep_resolution}"]
        exp = "dd_deep"
    else:
        res = [] if args.mesh_resolution is None else ["data=synthetic", f"data.resolution={args.mesh_resolution}"]
        exp = "era5_mesh"
    return [f"+experiment={exp}", f"partition.num_parts={parts}", f"seed={seed}", f"optimizer.lr={lr}",
            f"trainer.threads={args.threads}", "trainer.progress=false", f"tracking.uri={uri}",
            "tracking.experiment=bench_dd", *res, f"output_dir={out}"]


def histories(client, run_id: str, names) -> dict:
    """``{name: (steps, values)}`` for the loop's metric ``names`` (read under their MLflow names)."""
    from gnnddm.training.tracking import metric_name

    out = {}
    for name in names:
        h = client.get_metric_history(run_id, metric_name(name))
        if h:
            out[name] = ([m.step for m in h], [m.value for m in h])
    return out


def read_run(variant: Variant, seed: int, summary: dict, client, target: float | None) -> Run:
    """The run's accounting and val RMSEs at its first evaluation with val_loss <= target."""
    from gnnddm.report.metrics import first_crossing, value_at_step

    rmse_keys = [f"val_rmse/{v}" for v in summary["final"]["val_rmse"]]
    hist = histories(client, summary["mlflow_run_id"], ("val_loss", *KEYS, *rmse_keys))
    steps, values = hist["val_loss"]
    step = first_crossing(steps, values, target) if target is not None else None
    run = Run(variant, seed, summary["accounting"]["iterations"], step, best_val_loss=min(values))
    if step is not None:
        run.at = {k: value_at_step(*hist[k], step) for k in KEYS if k in hist}
        run.rmse = {k.split("/", 1)[1]: value_at_step(*hist[k], step) for k in rmse_keys}
    return run


def train_variant(variant: Variant, base: list[str], target: float | None, client, extra=()) -> tuple[dict, Run]:
    from gnnddm.config import compose
    from gnnddm.training import train

    overrides = [*base, f"ddm={variant.ddm}", f"trainer.max_iterations={variant.max_iterations}",
                 f"trainer.eval_every={variant.eval_every}", *variant.overrides, *extra]
    if target is not None:
        overrides.append(f"trainer.target_val_loss={target!r}")
    summary = train(compose(overrides))
    seed = int(next(o.split("=")[1] for o in base if o.startswith("seed=")))
    return summary, read_run(variant, seed, summary, client, target)


# ------------------------------------------------------------------------------------ statistics
def _fmt(v, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def median_range(values: list[float], spec: str) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return _fmt(vals[0], spec)
    return f"{_fmt(statistics.median(vals), spec)} [{_fmt(min(vals), spec)}, {_fmt(max(vals), spec)}]"


def median_of(runs: list[Run], key: str) -> float | None:
    vals = [r.at.get(key) for r in runs if r.reached and r.at.get(key) is not None]
    return statistics.median(vals) if vals else None


def rmse_deviation(runs: list[Run], globals_at: dict[int, Run]) -> dict[str, float]:
    """Median over seeds of each variable's val RMSE relative to global stopped at the same target."""
    out = {}
    for var in next(iter(globals_at.values())).rmse:
        devs = [r.rmse[var] / globals_at[r.seed].rmse[var] - 1 for r in runs
                if r.reached and globals_at[r.seed].reached and globals_at[r.seed].rmse.get(var)]
        if devs:
            out[var] = statistics.median(devs)
    return out


# ------------------------------------------------------------------------------------ reporting
def table(groups: dict[str, list[Run]], globals_at: dict[int, Run]) -> str:
    head = ["method", "reached", "collectives", "MB per rank", "epochs", "model time (s), default",
            "model time (s), multi-node", "compute (s)", "wall (s)", "best val_loss", "val RMSE Δ vs global at target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, runs in groups.items():
        ok = [r for r in runs if r.reached]

        def col(key, spec, scale=1.0, ok=ok):
            return median_range([r.at[key] * scale for r in ok if r.at.get(key) is not None], spec)

        dev = rmse_deviation(runs, globals_at) if label != "global" else {}
        lines.append("| " + " | ".join([
            label, f"{len(ok)}/{len(runs)}", col("rounds", ".0f"), col("comm_bytes", ".3g", 1e-6),
            col("grad_evals", ".1f"), col("model_time", ".2f"), col("model_time_multinode", ".2f"),
            col("compute_time", ".2f"), col("wall_time", ".1f"),
            median_range([r.best_val_loss for r in runs], ".4f"),
            ", ".join(f"{v} {100 * d:+.1f} %" for v, d in dev.items()) or "–"]) + " |")
    return "\n".join(lines)


def headline(groups: dict[str, list[Run]], globals_at: dict[int, Run]) -> list[str]:
    seeds = len(globals_at)
    exact = {k: g for k, g in groups.items() if k in EXACT and all(r.reached for r in g)}
    if not any(k in EXACT for k in groups):
        return ["no exact baseline in this run (--only): no ratios"]
    if not exact:
        return ["no exact baseline reached the target for every seed: no ratios (raise the budget)"]
    base_label = min(exact, key=lambda k: median_of(exact[k], "model_time_multinode"))
    base = exact[base_label]
    b_rounds, b_time = median_of(base, "rounds"), median_of(base, "model_time_multinode")
    out = [f"faster exact baseline (median multi-node modelled time): {base_label}: {b_rounds:.0f} collectives, "
           f"{b_time:.3f} s" + "".join(
               f"; {k}: {median_of(g, 'rounds'):.0f} collectives, {median_of(g, 'model_time_multinode'):.3f} s"
               for k, g in exact.items() if k != base_label)]
    dd = {k: g for k, g in groups.items() if k not in ("global", *EXACT)
          and len(g) == seeds and all(r.reached for r in g)}
    if not dd:
        missed = [k for k in groups if k not in ("global", *EXACT)]
        return [*out, "no domain-decomposition method reached the target for every seed: " + ", ".join(missed)]
    best = min(dd, key=lambda k: median_of(dd[k], "model_time_multinode"))
    for label in sorted(dd, key=lambda k: median_of(dd[k], "model_time_multinode")):
        g = dd[label]
        r_ratio = median_of(g, "rounds") / b_rounds
        t_ratio = median_of(g, "model_time_multinode") / b_time
        d_ratio = median_of(g, "model_time") / median_of(base, "model_time")
        dev = rmse_deviation(g, globals_at)
        worst = max(abs(d) for d in dev.values()) if dev else float("nan")
        ok = r_ratio <= GOAL_ROUNDS and t_ratio <= GOAL_TIME and worst <= GOAL_RMSE
        mark = "best DD method" if label == best else "  "
        out.append(f"{mark} {label}: collectives {r_ratio:.3f}x, multi-node time {t_ratio:.2f}x "
                   f"({noise(g, base, 'model_time_multinode')}), per epoch {per_epoch_ratio(g, base):.2f}x, "
                   f"default-network time {d_ratio:.2f}x of {base_label}; worst val RMSE Δ vs global at target "
                   f"{100 * worst:.1f} % -> goal (<= {GOAL_ROUNDS}, <= {GOAL_TIME}, <= {100 * GOAL_RMSE:.0f} %) "
                   f"{'MET' if ok else 'NOT met'}; {break_even(g, base)}")
    missed = [k for k in groups if k not in dd and k not in ("global", *EXACT)]
    if missed:
        out.append("not reached for every seed within their budgets: " + ", ".join(missed))
    return out


def seed_range(runs: list[Run], key: str) -> tuple[float, float] | None:
    vals = [r.at[key] for r in runs if r.reached and r.at.get(key) is not None]
    return (min(vals), max(vals)) if vals else None


def noise(runs: list[Run], base: list[Run], key: str) -> str:
    """The two seed ranges of ``key`` and whether they overlap: ``[3.60, 5.02] against [4.05, 4.60]:
    within noise``; one seed each: no noise estimate."""
    a, b = seed_range(runs, key), seed_range(base, key)
    if a is None or b is None:
        return "no range"
    ranges = f"[{a[0]:.3g}, {a[1]:.3g}] against [{b[0]:.3g}, {b[1]:.3g}]"
    if len(runs) < 2 or len(base) < 2:
        return f"{ranges}: one seed, no noise estimate"
    return f"{ranges}: {'within noise' if a[0] <= b[1] and b[0] <= a[1] else 'outside the seed ranges'}"


def per_epoch_ratio(runs: list[Run], base: list[Run]) -> float:
    """Multi-node time per epoch of node work, median over seeds, against the baseline's: the ratio per
    unit of work, apart from how many epochs each needs."""
    def rate(group):
        vals = [r.at["model_time_multinode"] / r.at["grad_evals"] for r in group
                if r.reached and r.at.get("grad_evals")]
        return statistics.median(vals) if vals else float("nan")

    return rate(runs) / rate(base)


def sweep_edge(sweep: Collection[float], lr: float) -> str:
    """Whether the chosen learning rate lies inside the swept grid ``sweep`` (its rates, or a mapping keyed by
    them) or at its edge."""
    if len(sweep) < 2:
        return "a grid of one value: not tuned"
    if lr in (min(sweep), max(sweep)):
        return f"at the {'lower' if lr == min(sweep) else 'upper'} edge of the grid: extend it (--lrs)"
    return "inside the grid"


def improvement(steps: list[int], values: list[float], spec: str = ".5g") -> str:
    """How much a reference's best val_loss improved over the last fifth of its evaluations (``steps``,
    ``values``): below 0.5 % it is taken as converged, above as well-trained, not converged."""
    if len(steps) < 5:
        return "too few evaluations to judge convergence"
    last = max(steps)
    before = min(v for s, v in zip(steps, values, strict=True) if s <= 0.8 * last)
    end = min(values)
    gain = 100 * (before - end) / before
    return (f"best val_loss {before:{spec}} at 4/5 of the budget, {end:{spec}} at its end ({gain:.2f} % better): "
            f"{'converged (< 0.5 %)' if gain < 0.5 else 'well-trained, not converged (>= 0.5 %)'}")


def convergence(client, summary: dict) -> str:
    """:func:`improvement` of the MLflow run of ``summary``."""
    hist = sorted(client.get_metric_history(summary["mlflow_run_id"], "val/loss"), key=lambda m: m.step)
    return improvement([h.step for h in hist], [h.value for h in hist], ".5f")


def break_even(dd: list[Run], base: list[Run]) -> str:
    """How much faster the compute would have to be for the DD method to need <= GOAL_TIME of the
    baseline's multi-node time (its communication time unchanged): the k with
    c_dd / k + n_dd <= GOAL_TIME · (c_base / k + n_base), c = compute, n = multi-node communication."""
    c_dd, c_b = median_of(dd, "compute_time"), median_of(base, "compute_time")
    t_dd, t_b = median_of(dd, "model_time_multinode"), median_of(base, "model_time_multinode")
    if None in (c_dd, c_b, t_dd, t_b):
        return "break-even unknown"
    n_dd, n_b = t_dd - c_dd, t_b - c_b
    if c_dd <= GOAL_TIME * c_b:
        return "within the time goal at this machine's compute speed"
    if n_dd >= GOAL_TIME * n_b:
        return "no compute speed-up reaches the time goal (it communicates too much)"
    k = (c_dd - GOAL_TIME * c_b) / (GOAL_TIME * n_b - n_dd)
    return f"the time goal would be met with compute >= {k:.3g}x faster than here"


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    import torch

    return (f"{platform.node() or 'host'}: {os.cpu_count()} CPUs (nproc), load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min), Python "
            f"{platform.python_version()}, torch {torch.__version__}, {platform.platform()}")


def session(script: str, argv: list[str] | None):
    """Start a benchmark: MLflow and library warnings silenced; returns (the command line as it ran, a
    logger that prefixes the seconds since now, the start time)."""
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    command = f"python3 benchmarks/{script} " + shlex.join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    return command, log, t0


# ------------------------------------------------------------------------------------ one regime
def _loss(v: float) -> str:
    return "diverged" if math.isinf(v) else f"{v:.5f}"


def lr_sweep(args, regime: str, parts: int, seed: int, budget: int, lrs: list[float], uri: str, tmp: Path, client,
             log) -> tuple[float, dict[float, float], dict[float, tuple[dict, Run]]]:
    """``global`` Adam at every rate of ``lrs`` (seed ``seed``): the rate with the lowest best val_loss, the
    best val_loss per rate and the runs that finished. A rate whose run diverges (TrainingDivergedError) is
    the worst of the grid (inf): a best rate next to it is inside the grid."""
    from gnnddm.errors import TrainingDivergedError

    sweep: dict[float, float] = {}
    ref_runs: dict[float, tuple[dict, Run]] = {}
    for lr in lrs:
        v = Variant(f"global lr={lr:g}", "global", max_iterations=budget)
        try:
            summary, r = train_variant(v, base_overrides(args, regime, parts, seed, lr, uri, tmp / f"lr{lr}"),
                                       None, client)
        except TrainingDivergedError as err:
            sweep[lr] = math.inf
            log(f"[{regime} p={parts}] lr sweep: global Adam lr {lr:g}: diverged ({err})")
            continue
        sweep[lr], ref_runs[lr] = r.best_val_loss, (summary, r)
        log(f"[{regime} p={parts}] lr sweep: global Adam lr {lr:g}: best val_loss {r.best_val_loss:.5f}")
    if not ref_runs:
        raise SystemExit(f"every rate of the sweep ({', '.join(f'{x:g}' for x in lrs)}) diverged: pass smaller --lrs")
    return min(sweep, key=sweep.get), sweep, ref_runs


def run_regime(args, regime: str, parts: int, client, uri: str, tmp: Path, log) -> list[str]:
    """Learning-rate sweep, references, variants and ranks for one regime and p; returns the markdown."""
    budget = args.reference_iterations or (60 if args.quick else (300 if regime == "shallow" else 150))
    default_lrs = {"shallow": "3e-3,1e-2,3e-2", "deep": "1e-3,3e-3", "mesh": "3e-3,1e-2"}[regime]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [float(x) for x in (args.lrs or default_lrs).split(",")]
    lr, sweep, ref_runs = lr_sweep(args, regime, parts, seeds[0], budget, lrs, uri, tmp, client, log)
    todo = variants(regime, budget, lr, args.quick, args.extended, args.apts, args.tr_norms)
    if args.only:
        keep = {s.strip() for s in args.only.split(",")}
        todo = [v for v in todo if v.label in keep or v.ddm in keep]
    groups: dict[str, list[Run]] = {"global": []}
    globals_at: dict[int, Run] = {}
    targets, converged = {}, {}
    for seed in seeds:
        ref = Variant("global", "global", max_iterations=budget)
        if seed == seeds[0]:
            summary, _ = ref_runs[lr]
        else:
            summary, _ = train_variant(ref, base_overrides(args, regime, parts, seed, lr, uri, tmp / f"ref{seed}"),
                                       None, client)
        best = min(h.value for h in client.get_metric_history(summary["mlflow_run_id"], "val/loss"))
        targets[seed] = best * (1 + args.tol)
        converged[seed] = convergence(client, summary)
        globals_at[seed] = read_run(ref, seed, summary, client, targets[seed])
        groups["global"].append(globals_at[seed])
        log(f"[{regime} p={parts}] seed {seed}: target val_loss {targets[seed]:.5f}")
        for i, v in enumerate(todo):
            _, r = train_variant(v, base_overrides(args, regime, parts, seed, lr, uri, tmp / f"s{seed}r{i}"),
                                 targets[seed], client)
            groups.setdefault(v.label, []).append(r)
            log(f"  {v.label:<28} seed {seed}: {'target' if r.reached else 'not reached':<11} its {r.iterations:4d} "
                f"collectives {_fmt(r.at.get('rounds'), '.0f'):>6}  "
                f"multi-node {_fmt(r.at.get('model_time_multinode'), '.2f'):>7} s"
                f"  best val {r.best_val_loss:.5f}")
    lines = headline(groups, globals_at)
    tab = table(groups, globals_at)
    md = [f"### {regime}, p = {parts}", "",
          "Learning-rate sweep of the baselines (global Adam, seed " + str(seeds[0]) + f", {budget} iterations, best "
          "val_loss): " + ", ".join(f"{k:g}: {_loss(v)}" for k, v in sweep.items()) + f" -> lr {lr:g}, "
          f"{sweep_edge(sweep, lr)}.",
          "", f"Targets (best global val_loss x (1 + {args.tol})): " + ", ".join(
              f"seed {s}: {t:.5f}" for s, t in targets.items()) + ".", "",
          "Convergence of the references: " + "; ".join(f"seed {s}: {c}" for s, c in converged.items()) + ".",
          "", tab, "", "```", *lines, "```"]
    if regime == "deep" and args.overlap_sweep:
        sweep_rows = {}
        for v in overlap_sweep(regime, budget, lr):
            out = tmp / "".join(c if c.isalnum() else "_" for c in v.label)  # no '=' in a Hydra override
            _, r = train_variant(v, base_overrides(args, regime, parts, seeds[0], lr, uri, out),
                                 targets[seeds[0]], client)
            sweep_rows[v.label] = [r]
            log(f"  {v.label:<28} {'target' if r.reached else 'not reached'} best val {r.best_val_loss:.5f}")
        md += ["", f"Cost and accuracy against the overlap δ (local_avg, seed {seeds[0]}; the model has L = 8 "
               "layers):", "",
               table(sweep_rows, {seeds[0]: globals_at[seeds[0]]})]
    if args.ranks:
        md += ["", *ranks_table(args, regime, parts, seeds[0], lr, targets[seeds[0]], groups, todo, uri, tmp, client,
                                log)]
    print("\n".join(md), flush=True)
    return md


def ranks_table(args, regime, parts, seed, lr, target, groups, todo, uri, tmp, client, log) -> list[str]:
    """Wall time to target with ``args.ranks`` gloo ranks for the baselines and the three best DD methods."""
    dd = [k for k, g in groups.items() if k not in ("global", *EXACT) and g and g[0].reached]
    dd = sorted(dd, key=lambda k: groups[k][0].at["model_time_multinode"])[:3]
    chosen = [v for v in todo if v.label in (*EXACT, *dd)]
    lines = [f"Wall time to target with {args.ranks} gloo ranks (seed {seed}, one process per rank, "
             f"{args.threads} thread each) against the one-process run of the same configuration:", "",
             "| method | one process: wall (s) | ranks: wall (s) | ranks: reached | ratio |", "|---|---|---|---|---|"]
    for v in chosen:
        extra = ("distributed.backend=gloo", f"distributed.nproc_per_node={args.ranks}")
        _, r = train_variant(v, base_overrides(args, regime, parts, seed, lr, uri, tmp / f"ranks_{v.ddm}"),
                             target, client, extra)
        one = groups[v.label][0].at.get("wall_time")
        got = r.at.get("wall_time")
        ratio = None if one is None or got is None else got / one
        lines.append(f"| {v.label} | {_fmt(one, '.1f')} | {_fmt(got, '.1f')} | {r.reached} | {_fmt(ratio, '.2f')} |")
        log(f"  ranks {v.label}: {_fmt(got, '.1f')} s vs {_fmt(one, '.1f')} s")
    return lines


# ------------------------------------------------------------------------------------ halo table
def halo_table(resolution: float, log) -> list[str]:
    """Replicated work of exact overlaps (δ = L) against the one-hop halo of halo_sync, p = 8 and 64.

    *Work* = Σ_k |V_k ∪ H_k| / N: the nodes computed per layer relative to one copy of the graph (1 = no
    redundancy); an exact overlap for L layers needs δ = L. halo_sync: one-hop halo, and the rows the
    busiest part sends per exchange.
    """
    import warnings

    from gnnddm.config import build, compose
    from gnnddm.data.pipeline import build_problem
    from gnnddm.partition.halo import halo_plan

    warnings.filterwarnings("ignore")
    cfg = compose(["+experiment=dd_deep", f"data.resolution={resolution}", "data.steps=8", "tracking.enabled=false"])
    data = build_problem(cfg).data
    lines = [f"Synthetic {resolution} deg grid, {data.num_nodes:,} nodes, METIS:", "",
             "| p | δ = 1 | δ = 2 | δ = 4 | δ = 8 | δ = 16 | halo_sync work "
             "| halo_sync rows sent per layer (max part) |",
             "|---|---|---|---|---|---|---|---|"]
    for p in (8, 64):
        cells = []
        plan = None
        for d in (1, 2, 4, 8, 16):
            part_cfg = compose(["+experiment=dd_deep", f"partition.num_parts={p}", f"partition.overlap={d}"]).partition
            partition = build(part_cfg, "partition")(data)
            work = sum(sd.num_local for sd in partition.subdomains) / data.num_nodes
            cells.append(f"{work:.2f}")
            if plan is None:
                plan = halo_plan(partition, data.edge_index, data.num_nodes, data.edge_weight)
            log(f"halo table p={p} δ={d}: work {work:.3f}")
        hwork = sum(len(plan.nodes[k]) for k in plan.nodes) / data.num_nodes
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {hwork:.2f} | {plan.rows_sent():,} |")
    return lines


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", choices=("shallow", "deep", "mesh", "both", "none"), default="both")
    parser.add_argument("--quick", action="store_true", help="smoke version: 5.625 deg, one seed, a few methods")
    parser.add_argument("--parts", default="8", help="comma-separated numbers of subdomains p (default 8)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--lrs", default=None,
                        help="learning rates of the baselines' sweep (default: shallow 3e-3,1e-2,3e-2; deep "
                        "1e-3,3e-3; mesh 3e-3,1e-2)")
    parser.add_argument("--resolution", type=float, default=2.8125, help="shallow regime grid spacing (deg)")
    parser.add_argument("--deep-resolution", type=float, default=2.8125, help="deep regime grid spacing (deg)")
    parser.add_argument("--mesh-resolution", type=float, default=None,
                        help="mesh regime: the synthetic grid of this spacing (deg) instead of the ERA5 1 deg sample")
    parser.add_argument("--reference-iterations", type=int, default=None,
                        help="budget of the global reference (default: shallow 300, deep 150, quick 60)")
    parser.add_argument("--tol", type=float, default=0.04, help="target = best reference val_loss * (1 + tol)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (per rank)")
    parser.add_argument("--only", default=None, help="comma-separated labels or ddm names of the variants to run")
    parser.add_argument("--extended", action="store_true", help="deep regime: every DD variant of the shallow one")
    parser.add_argument("--ranks", type=int, default=0, help="also measure wall time with this many gloo ranks")
    parser.add_argument("--apts", action="store_true",
                        help="also parameter-space Schwarz: blocks = layers, N = 2, 4; norms, radius over 100x, "
                             "W = 5, hybrid; gamma_dec = 0.5 with the radius range, gamma_inc = 2, m = 1, "
                             "3x the budget")
    parser.add_argument("--tr-norms", action="store_true",
                        help="also asm with its trust region in Adam's and AdaGrad's metric (ddm.tr_norm)")
    parser.add_argument("--overlap-sweep", action="store_true", help="deep regime: local_avg against δ")
    parser.add_argument("--halo-table", action="store_true", help="replicated work against δ for p = 8, 64")
    parser.add_argument("--halo-resolution", default="0.703125,2.8125", help="grids of the halo table (deg)")
    parser.add_argument("--block", default=None, help="suffix of the generated blocks' names (e.g. ranks)")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown page whose generated blocks are rewritten (e.g. docs/dd_benchmark.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds.split(",")[0]

    from mlflow.tracking import MlflowClient

    command, log, t0 = session("bench_dd.py", argv)
    regimes = {"both": ("shallow", "deep"), "none": ()}.get(args.regime, (args.regime,))
    # the sources are fingerprinted as the run starts: edits made while it runs are not what it measured
    stamps = {kind: results_blocks.stamp(SOURCES[kind], command)
              for kind in (*regimes, *(("halo",) if args.halo_table else ()))} if args.output else {}
    blocks: dict[str, tuple[str, list[str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(tracking_uri=uri)
        for regime in regimes:
            md = []
            for p in (int(x) for x in args.parts.split(",")):
                md += [*run_regime(args, regime, p, client, uri, Path(tmp) / f"{regime}{p}", log), ""]
            name = regime if args.parts == "8" else f"{regime}-p{args.parts.replace(',', '-')}"
            blocks[f"{name}-{args.block}" if args.block else name] = regime, md
    if args.halo_table:
        blocks["halo"] = "halo", [line for r in args.halo_resolution.split(",")
                                  for line in (*halo_table(float(r), log), "")]
        print("\n".join(blocks["halo"][1]))
    elapsed = time.perf_counter() - t0
    print(f"\ntotal {elapsed:.0f} s")
    if args.output is not None:
        for name, (kind, md) in blocks.items():
            header = [f"Command: `{command}`  ", f"Machine: {machine()}  ",
                      f"Total time of the command: {elapsed:.0f} s.", ""]
            results_blocks.write_block(args.output, "bench_dd", name, "\n".join(header + md).rstrip(), stamps[kind],
                                       title="# Training algorithms compared")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
