"""Two gloo ranks against one process on the same decomposed problem (p = 2 and p = 8).

For each p the same problem (data, graph, partition, model, algorithm, seed) is trained three ways:

- ``1 proc, 1 thread``  : one process computes all p subdomains in turn, torch intra-op threads = 1;
- ``1 proc, 2 threads`` : the same with 2 threads (it may use both cores through intra-op parallelism);
  the speedup target is checked against the faster of the two single-process variants;
- ``2 ranks``           : ``distributed.backend=gloo distributed.nproc_per_node=2``, 1 thread per rank,
  each rank computing p/2 subdomains.

Measured in the same run: wall time per outer iteration (median of the per-iteration increments of
``wall_time``, evaluation iterations excluded), time to the target validation loss (the single-process
run's final val_loss x 1.02, evaluated every ``--eval-every`` iterations), and the per-rank compute /
wait / communicate split of the 2-rank run. The speedup target is 1.6x per outer iteration.

    python3 benchmarks/bench_distributed.py             # about 5 minutes on 2 cores
    python3 benchmarks/bench_distributed.py --quick     # a one-minute smoke run
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as `gnnddm` itself runs (gnnddm/cli.py)
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET_SPEEDUP = 1.6


def run(overrides: list[str], store: Path, out: Path) -> tuple[dict, dict[int, dict]]:
    """Train and return (summary, {iteration: metrics}) read back from MLflow."""
    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.train import train

    cfg = compose([*overrides, f"tracking.uri=sqlite:///{store}", f"output_dir={out}", "trainer.progress=false",
                   "tracking.experiment=bench_distributed"])
    summary = train(cfg)
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    hist: dict[int, dict] = {}
    for key in ("wall_time", "val_loss"):
        for m in client.get_metric_history(summary["mlflow_run_id"], key):
            hist.setdefault(m.step, {})[key] = m.value
    return summary, hist


def per_iteration(hist: dict[int, dict]) -> float:
    """Median wall-time increment over iterations without an evaluation (and not the first)."""
    steps = sorted(hist)
    inc = [hist[b]["wall_time"] - hist[a]["wall_time"] for a, b in zip(steps, steps[1:], strict=False)
           if "val_loss" not in hist[b] and "val_loss" not in hist[a]]
    return statistics.median(inc[1:] if len(inc) > 2 else inc)


def time_to(hist: dict[int, dict], target: float) -> float | None:
    for step in sorted(hist):
        if hist[step].get("val_loss", float("inf")) <= target:
            return hist[step]["wall_time"]
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small problem, few iterations")
    ap.add_argument("--parts", default="2,8", help="comma-separated p values")
    ap.add_argument("--ddm", default="asm", help="algorithm (conf/ddm option)")
    ap.add_argument("--eval-every", type=int, default=5)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    res, iters, hidden = ("5.625", 12, 16) if args.quick else ("1.40625", 30, 32)
    problem = ["data=synthetic", f"data.resolution={res}", "data.steps=120", "model=sage",
               f"model.hidden={hidden}", "model.layers=2", "partition.overlap=2", f"ddm={args.ddm}",
               f"trainer.max_iterations={iters}", f"trainer.eval_every={args.eval_every}",
               "trainer.batch_size=4"]
    print(f"# bench_distributed: synthetic {res} deg, sage hidden {hidden}, {args.ddm}, {iters} outer "
          f"iterations; nproc={os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "mlflow.db"
        for p in (int(x) for x in args.parts.split(",")):
            base = [*problem, f"partition.num_parts={p}"]
            s1, h1 = run([*base, "trainer.threads=1"], store, tmp / f"p{p}-1t")
            s2, h2 = run([*base, "trainer.threads=2"], store, tmp / f"p{p}-2t")
            sr, hr = run([*base, "trainer.threads=1", "distributed.backend=gloo",
                          "distributed.nproc_per_node=2"], store, tmp / f"p{p}-ranks")
            target = s1["final"]["val_loss"] * 1.02
            t1, t2, tr = per_iteration(h1), per_iteration(h2), per_iteration(hr)
            split = sr.get("rank_times", [])
            rows.append((p, t1, t2, tr, time_to(h1, target), time_to(h2, target), time_to(hr, target), split,
                         s1["final"]["val_loss"], sr["final"]["val_loss"]))
    print("\n| p | s/iter 1 proc 1 thr | s/iter 1 proc 2 thr | s/iter 2 ranks | speedup vs 1 thr | "
          "speedup vs 2 thr | time-to-target 1p1t / 1p2t / 2 ranks (s) | rank compute / wait / comm (s) |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for p, t1, t2, tr, a, b, c, split, v1, vr in rows:
        fmt = lambda x: "not reached" if x is None else f"{x:.2f}"  # noqa: E731
        sp = " ; ".join(f"r{r}: {d['compute']:.2f} / {d['wait']:.2f} / {d['communicate']:.2f}"
                        for r, d in enumerate(split))
        print(f"| {p} | {t1:.4f} | {t2:.4f} | {tr:.4f} | {t1 / tr:.2f}x | {t2 / tr:.2f}x | "
              f"{fmt(a)} / {fmt(b)} / {fmt(c)} | {sp} |")
        ok &= min(t1, t2) / tr >= TARGET_SPEEDUP
        if abs(v1 - vr) > 1e-4 * abs(v1):
            print(f"  note: p={p}: final val_loss 1 process {v1:.6f} vs 2 ranks {vr:.6f}")
    print(f"\ntarget: 2 ranks at least {TARGET_SPEEDUP}x faster per outer iteration than the faster single-process "
          f"variant: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
