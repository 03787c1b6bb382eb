"""Training in bf16 against float32: the same runs, the same iterations, several seeds; the accuracy and the
time per iteration of ``trainer.precision=bf16`` beside float32's.

For each experiment of ``--experiments`` (shipped, as they are: ``quickstart``, GraphSAGE on the ERA5 sample;
``era5_mesh``, the encoder-processor-decoder on it) and each seed of ``--seeds``, ``gnnddm train`` runs once
in float32 and once with bf16 products, one process at a time, the order alternating by seed. Printed per
experiment: every variable's test RMSE in each precision (median [min, max] over the seeds), the largest
per-seed relative difference bf16 against float32 with the goal (within 1 %), and the seconds per iteration
(median [min, max]) with their ratio. ``--output`` writes the table into a page as the generated block
``bench_precision:cpu``.

    python3 benchmarks/bench_precision.py                       # quickstart and era5_mesh, seeds 0 1 2
    python3 benchmarks/bench_precision.py --experiments quickstart --seeds 0 --iterations 10   # a quick check
    python3 benchmarks/bench_precision.py --output docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_blocks  # noqa: E402

#: a bf16 run's test RMSE against float32's, per variable and seed (goal: at most this relative difference)
GOAL = 0.01
#: a bf16 step against float32's (goal: at most)
TIME_GOAL = 0.6
PRECISIONS = ("float32", "bf16")
SOURCES = ("gnnddm/models", "gnnddm/training", "gnnddm/ddm/global_.py", "benchmarks/bench_precision.py",
           "conf/experiment/quickstart.yaml", "conf/experiment/era5_mesh.yaml")


def train(experiment: str, seed: int, precision: str, iterations: int | None, folder: Path) -> dict:
    out = folder / f"{experiment}-{seed}-{precision}"
    overrides = [f"+experiment={experiment}", f"seed={seed}", f"trainer.precision={precision}",
                 "trainer.progress=false", "tracking.enabled=false", f"output_dir={out}"]
    if iterations:
        overrides.append(f"trainer.max_iterations={iterations}")
    done = subprocess.run([sys.executable, "-m", "gnnddm", "train", *overrides], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{experiment} seed {seed} {precision} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"rmse": summary["final"]["test_rmse"], "seconds": summary["accounting"]["seconds_per_iteration"],
            "iterations": summary["accounting"]["iterations"]}


def spread(values) -> str:
    values = list(values)
    return f"{statistics.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


def table(experiment: str, runs: dict) -> list[str]:
    """``runs[(seed, precision)]``: the rows of ``experiment``'s table and its verdict lines."""
    seeds = sorted({s for s, _ in runs})
    variables = list(runs[(seeds[0], "float32")]["rmse"])
    rows = [f"**{experiment}** ({runs[(seeds[0], 'float32')]['iterations']} iterations, seeds "
            f"{', '.join(map(str, seeds))}): test RMSE, median [min, max] over the seeds", "",
            "| variable | float32 | bf16 | largest per-seed difference |", "|---|---|---|---:|"]
    worst = 0.0
    for v in variables:
        diffs = [runs[(s, "bf16")]["rmse"][v] / runs[(s, "float32")]["rmse"][v] - 1 for s in seeds]
        largest = max(diffs, key=abs)
        worst = max(worst, abs(largest))
        rows.append(f"| {v} | {spread(runs[(s, 'float32')]['rmse'][v] for s in seeds)} | "
                    f"{spread(runs[(s, 'bf16')]['rmse'][v] for s in seeds)} | {100 * largest:+.2f} % |")
    f32 = [runs[(s, "float32")]["seconds"] for s in seeds]
    low = [runs[(s, "bf16")]["seconds"] for s in seeds]
    speed = statistics.median(low) / statistics.median(f32)
    noise = "; within noise: the seed ranges overlap" if min(f32) <= max(low) and min(low) <= max(f32) else ""
    rows += ["", f"- accuracy: every variable within {100 * worst:.2f} % of float32 in every seed (goal <= "
                 f"{100 * GOAL:.0f} %: {'met' if worst <= GOAL else 'NOT met'})",
             f"- seconds per iteration (whole run, evaluations included): float32 {spread(f32)}, bf16 {spread(low)}; "
             f"bf16 / float32 {speed:.2f}x (goal <= {TIME_GOAL}x: {'met' if speed <= TIME_GOAL else 'NOT met'}"
             f"{noise})"]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", nargs="+", default=["quickstart", "era5_mesh"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=None, help="cut each run to this many (default: as shipped)")
    ap.add_argument("--output", type=Path, help="page to write the table into (docs/performance.md)")
    args = ap.parse_args(argv)
    command = shlex.join(["python3", "benchmarks/bench_precision.py", *(argv if argv is not None else sys.argv[1:])])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts
    body = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            runs = {}
            for i, seed in enumerate(args.seeds):
                for precision in (PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]):
                    runs[(seed, precision)] = got = train(experiment, seed, precision, args.iterations, Path(tmp))
                    print(f"  {experiment} seed {seed} {precision}: {got['seconds']:.3f} s per iteration, test RMSE "
                          + ", ".join(f"{k} {v:.4g}" for k, v in got["rmse"].items()), flush=True)
            rows = table(experiment, runs)
            print("\n".join(rows), flush=True)
            body += [*rows, ""]
    if args.output:
        import torch

        setup = (f"`gnnddm train +experiment=<name> seed=<s> trainer.precision=<float32|bf16>`, torch "
                 f"{torch.__version__}, {torch.get_num_threads()} threads")
        results_blocks.write_block(args.output, "bench_precision", "cpu", "\n".join([setup, "", *body]), stamp,
                                   "# Performance")
        print(f"  wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
