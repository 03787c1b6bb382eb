"""The decomposed run at scale: ``sync`` and ``asm`` with p = 64 exact subdomains against ``global`` on the
0.25 deg grid (1,038,240 nodes), in one process: seconds per outer iteration and peak memory.

Each variant is ``gnnddm train`` in a process of its own (its peak resident memory is its own), one after the
other in one run of this script: synthetic data (``--steps`` time steps, in memory), the 8-neighbour grid,
GraphSAGE hidden 64 with 3 layers, one sample per batch, 2 threads, METIS with p = ``--parts`` and overlap 3
(exact for 3 layers: ``sync`` is then ``global`` computed by subdomains), one evaluation at the end.
Seconds per outer iteration: the median increment of ``cost/wall_time`` over the iterations without an
evaluation (the first left out).

Variants: ``global`` (Adam), ``global`` with its step over cache-sized blocks (``trainer.blocks``: auto, 64,
16, with the overlap of the model's hops or one-hop halos per layer, ``trainer.block_halo``; the same loss
and gradient, goal <= 0.7x the whole-graph step), ``global`` and 64 blocks with bf16 products
(``trainer.precision=bf16``, goal <= 0.6x the same variant in float32), ``global`` with its sparse products
computed as MKL does out of place (the same values; the kernel before ``gnnddm.models.graph.sparse_product``),
``sync`` (the subdomain gradients
summed, one Adam step: the redundant work of
the overlap and the per-subdomain overhead, nothing else), ``asm`` with one local Adam step per outer
iteration and no trust region (``ddm.local_steps=1 ddm.foc=false ddm.globalization=none``: one subdomain
step each, averaged), and ``asm`` as shipped (3 local steps, first-order consistency, trust region: what
one of its outer iterations costs). Prints each against ``global`` and the goals (an outer iteration of
``asm`` <= 1.5x ``global``'s, peak memory <= 2x).

``--output PAGE`` writes the printed lines into the page as the generated block ``bench_scale:<resolution>deg``.

    python3 benchmarks/bench_scale.py                        # 0.25 deg, p = 64
    python3 benchmarks/bench_scale.py --only "global;global, bf16" --output docs/performance.md
    python3 benchmarks/bench_scale.py --resolution 2.8125 --parts 8 --iterations 4   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_blocks  # noqa: E402

TIME_GOAL, MEMORY_GOAL = 1.5, 2.0
# What the block measures (fingerprinted into its marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/models", "gnnddm/ddm/blocked.py", "gnnddm/ddm/global_.py", "gnnddm/ddm/sync.py",
           "gnnddm/ddm/asm.py", "gnnddm/training/trainer.py", "benchmarks/bench_scale.py")

GLOBAL = ["ddm=global", "partition.num_parts=1", "partition.overlap=0"]
#: not an override: the child computes every sparse product as ``a @ x`` (gnnddm.models.graph.sparse_product)
OUT_OF_PLACE = "bench:out-of-place-products"
BEFORE = "global, out-of-place products"
#: ``global``'s step in cache-sized blocks against the whole-graph step (goal: at most this ratio)
BLOCKS_GOAL = 0.7
#: a step with bf16 products (``trainer.precision=bf16``) against the same step in float32 (goal: at most)
BF16_GOAL = 0.6
VARIANTS = {
    "global": GLOBAL,
    "global, blocks auto": [*GLOBAL, "trainer.blocks=auto"],
    "global, 64 blocks": [*GLOBAL, "trainer.blocks=64"],
    "global, 16 blocks": [*GLOBAL, "trainer.blocks=16"],
    "global, 16 blocks, layer halos": [*GLOBAL, "trainer.blocks=16", "trainer.block_halo=layer"],
    "global, 64 blocks, layer halos": [*GLOBAL, "trainer.blocks=64", "trainer.block_halo=layer"],
    # the sparse products as MKL computes them out of place (bitwise the same; before sparse_product)
    BEFORE: [*GLOBAL, OUT_OF_PLACE],
    "global, bf16": [*GLOBAL, "trainer.precision=bf16"],
    "global, 64 blocks, bf16": [*GLOBAL, "trainer.blocks=64", "trainer.precision=bf16"],
    "sync": ["ddm=sync"],
    "asm, 1 local step": ["ddm=asm", "ddm.local_steps=1", "ddm.foc=false", "ddm.globalization=none"],
    "asm (shipped)": ["ddm=asm"],
}


def overrides(res: float, steps: int, iterations: int, parts: int, folder: Path, name: str) -> list[str]:
    return ["data=synthetic", f"data.resolution={res}", f"data.steps={steps}", "graph=grid8", "model=sage",
            "model.hidden=64", "model.layers=3", "optimizer=adam", "partition=metis",
            f"partition.num_parts={parts}", "partition.overlap=3", "trainer.batch_size=1",
            f"trainer.max_iterations={iterations}", f"trainer.eval_every={iterations}",
            "trainer.eval_train_samples=1", "trainer.threads=2", "trainer.progress=false",
            f"tracking.uri=sqlite:///{folder}/mlflow.db", "tracking.flush_seconds=5", f"output_dir={folder}/{name}"]


def child(args: list[str]) -> None:
    import statistics

    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train

    if OUT_OF_PLACE in args:
        import gnnddm.models.common
        import gnnddm.models.encode_process_decode
        import gnnddm.models.sage

        args = [a for a in args if a != OUT_OF_PLACE]
        for module in (gnnddm.models.common, gnnddm.models.sage, gnnddm.models.encode_process_decode):
            module.sparse_product = lambda a, x: a @ x
    cfg = compose(args)
    summary = train(cfg)
    last = int(summary["accounting"]["iterations"])
    history = MlflowClient(tracking_uri=str(cfg.tracking.uri)).get_metric_history(summary["mlflow_run_id"],
                                                                                   "cost/wall_time")
    points = sorted((m.step, m.value) for m in history)
    steps = [b - a for (s0, a), (s1, b) in zip(points, points[1:], strict=False)
             if s1 == s0 + 1 and s1 not in (1, last)]
    part = summary.get("partition", {})
    print("BENCH " + json.dumps({
        "seconds": statistics.median(steps), "peak_gb": summary["peak_memory_gb"], "iterations": last,
        "halo_ratio": part.get("halo_ratio"), "redundancy": part.get("redundancy"),
        "grad_evals": summary["accounting"].get("grad_evals"), "val_loss": summary["final"]["val_loss"],
        "blocks": summary.get("blocks")}), flush=True)


def run(args: list[str], label: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode or not lines:
        sys.exit(f"{label}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][6:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--only", default=None, help="variants separated by ';' (default: all)")
    ap.add_argument("--output", type=Path, help="page to write the printed lines into (docs/performance.md)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    command = shlex.join(["python3", "benchmarks/bench_scale.py", *(argv if argv is not None else sys.argv[1:])])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
    chosen = list(VARIANTS) if args.only is None else [v.strip() for v in args.only.split(";")]
    say(f"{args.resolution:g} deg, p = {args.parts}, overlap 3, GraphSAGE h64 x 3, one sample, 2 threads, "
        f"{args.iterations} outer iterations per variant (machine: {os.cpu_count()} cores)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(chosen):
            got = run([*overrides(args.resolution, args.steps, args.iterations, args.parts, Path(tmp), f"v{i}"),
                       *VARIANTS[name]], name)
            results[name] = got
            partitioned = got.get("halo_ratio") is not None and not name.startswith("global")
            extra = f", halo ratio {got['halo_ratio']:.3f}" if partitioned else ""
            say(f"{name:<18} {got['seconds']:.3f} s per outer iteration, peak {got['peak_gb']:.2f} GB{extra}")
    if "global" in results:
        ref = results["global"]
        for name, got in results.items():
            if name in ("global", "global, bf16", BEFORE):  # those are printed against their references below
                continue
            t, m = got["seconds"] / ref["seconds"], got["peak_gb"] / ref["peak_gb"]
            verdict = ""
            if name.startswith("asm"):
                verdict = (f" (goal <= {TIME_GOAL}x: {'met' if t <= TIME_GOAL else 'NOT met'}; "
                           f"memory <= {MEMORY_GOAL}x: {'met' if m <= MEMORY_GOAL else 'NOT met'})")
            elif name.startswith("global,") and "bf16" not in name:
                met = "met" if t <= BLOCKS_GOAL else "NOT met"
                verdict = f" ({got.get('blocks')} blocks; goal <= {BLOCKS_GOAL}x: {met})"
            say(f"{name} / global: {t:.2f}x per outer iteration, {m:.2f}x peak memory{verdict}")
        for name, got in results.items():  # bf16 against the same variant in float32
            f32 = name.replace(", bf16", "").replace(" bf16", "")
            if "bf16" in name and f32 in results:
                t, m = got["seconds"] / results[f32]["seconds"], got["peak_gb"] / results[f32]["peak_gb"]
                say(f"{name} / {f32}: {t:.2f}x per outer iteration, {m:.2f}x peak memory "
                    f"(goal <= {BF16_GOAL}x: {'met' if t <= BF16_GOAL else 'NOT met'})")
    if BEFORE in results:  # the step before sparse_product, and every float32 variant against it
        ref = results[BEFORE]
        for name, got in results.items():
            if name.startswith("global") and name != BEFORE and "bf16" not in name:
                t = got["seconds"] / ref["seconds"]
                say(f"{name} / {BEFORE}: {t:.2f}x per outer iteration (goal for a float32 step <= {BLOCKS_GOAL}x "
                    f"of the whole-graph step before: {'met' if t <= BLOCKS_GOAL else 'NOT met'})")
    if args.output:
        results_blocks.write_block(args.output, "bench_scale", f"{args.resolution:g}deg",
                                   "```\n" + "\n".join(lines) + "\n```", stamp, "# Performance")
        print(f"  wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
