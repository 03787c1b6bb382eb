"""Training on data larger than memory: peak memory, seconds per iteration and the wait for data, against
the same run on a small data set held in memory, measured in one run of this script.

1. The store: a synthetic 0.25 deg series (721 x 1440 = 1,038,240 nodes, 4 variables) of ``--steps`` time
   steps as a chunked zarr store (``gnnddm data synth ... --output x.zarr``, written first when missing):
   1,460 steps are 24 GB of float32 fields, more than this machine's memory.
2. ``lazy``: ``gnnddm train`` on the whole store with ``data.lazy=true``: GraphSAGE hidden 64, 3 layers, one
   sample per batch, ``ddm=global`` with Adam, 2 threads, split 98 / 1 / 1 % (at least 3 steps held out),
   one evaluation at the end.
3. ``in memory``: the same run on the store's first 24 steps with ``data.lazy=false`` (the fields in
   memory; split 70 / 15 / 15 %).
4. ``2 ranks``: the lazy run decomposed on 2 gloo ranks (``ddm=sync``, ``--partition`` with 2 parts and
   overlap 3, exact for 3 layers), each rank a process of its own: its peak memory and the grid points a
   training batch reads of each time step (the latitude rows holding its subdomains with their overlap)
   against the nodes it holds.

Every run is a separate process (its peak resident memory is its own, ``ru_maxrss``). Seconds per
iteration: the median increment of ``cost/wall_time`` over the iterations without an evaluation, the first
left out. Prints each measurement against the goal (peak <= 6 GB per process, lazy <= 1.3x the in-memory
seconds per iteration, a rank's reads within its rows).

Usage::

    python3 benchmarks/bench_data.py                              # 1,460 steps at 0.25 deg (about 16 GB on disk)
    python3 benchmarks/bench_data.py --resolution 1.0 --steps 200 --iterations 6 --skip-ranks   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEAK_GOAL_GB, RATIO_GOAL = 6.0, 1.3


def common(store: Path, iterations: int, folder: Path, name: str) -> list[str]:
    return ["data=era5", f"data.path={store}", "data.variables=null", "graph=grid8", "model=sage",
            "model.hidden=64", "model.layers=3", "optimizer=adam", "trainer.batch_size=1",
            f"trainer.max_iterations={iterations}", f"trainer.eval_every={iterations}",
            "trainer.eval_train_samples=1", "trainer.threads=2", "trainer.progress=false",
            f"tracking.uri=sqlite:///{folder}/mlflow.db", "tracking.flush_seconds=5", f"output_dir={folder}/{name}"]


def child(overrides: list[str]) -> None:
    """One training in this process; prints its measurements as one JSON line."""
    import statistics as st

    from mlflow.tracking import MlflowClient

    from gnnddm.config import compose
    from gnnddm.training import train

    cfg = compose(overrides)
    summary = train(cfg)
    last = int(summary["accounting"]["iterations"])
    out = {"peak_gb": summary["peak_memory_gb"], "data": summary.get("data", {}),
           "wait": summary["accounting"].get("data_wait_seconds"), "loop": summary["accounting"]["wall_time"],
           "iterations": last, "val_loss": summary["final"]["val_loss"], "nodes": summary["graph"]["num_nodes"],
           "seconds_per_iteration": summary["accounting"]["seconds_per_iteration"]}  # all, if not in MLflow
    if summary.get("mlflow_run_id"):
        history = MlflowClient(tracking_uri=str(cfg.tracking.uri)).get_metric_history(
            summary["mlflow_run_id"], "cost/wall_time")
        points = sorted((m.step, m.value) for m in history)
        steps = [b - a for (s0, a), (s1, b) in zip(points, points[1:], strict=False)
                 if s1 == s0 + 1 and s1 not in (1, last)]
        out["seconds_per_iteration"] = st.median(steps)
    print("BENCH " + json.dumps(out), flush=True)


def run_child(overrides: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(overrides)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def result(proc: subprocess.Popen, label: str) -> dict:
    out, _ = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{label}: exit {proc.returncode}\n{out[-4000:]}")
    return json.loads(lines[-1][6:])


def ensure_store(path: Path, resolution: float, steps: int, log) -> None:
    if path.exists():
        log(f"store: {path} (exists)")
        return
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gnnddm", "data", "synth", "--resolution", str(resolution), "--steps",
                    str(steps), "--output", str(path)], check=True)
    log(f"store: {path} written in {time.perf_counter() - start:.0f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=1460)
    ap.add_argument("--store", type=Path, default=None, help="zarr store (default: in ~/.cache/gnnddm/bench)")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--rank-iterations", type=int, default=8)
    ap.add_argument("--partition", default="metis", help="partitioner of the 2-rank run")
    ap.add_argument("--skip-ranks", action="store_true")
    ap.add_argument("--ranks-only", action="store_true", help="only the 2-rank run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0

    def log(msg: str) -> None:
        print(msg, flush=True)

    store = args.store or Path(f"~/.cache/gnnddm/bench/synthetic_{args.resolution:g}deg_{args.steps}.zarr").expanduser()
    store.parent.mkdir(parents=True, exist_ok=True)
    ensure_store(store, args.resolution, args.steps, log)
    log(f"memory of this machine: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.1f} GB")
    held = max(0.01, round(3 / args.steps, 4))  # validation and test: at least 3 steps (2 forecast samples)
    split = [f"data.split.train={1 - 2 * held:.4f}", f"data.split.val={held}", f"data.split.test={held}"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.ranks_only:
            base = common(store, args.iterations, folder, "lazy")
            lazy = result(run_child([*base, "data.lazy=true", "ddm=global", "partition.num_parts=1",
                                     "partition.overlap=0", *split]), "lazy")
            nodes = lazy["nodes"]
            log(f"fields: {args.steps} steps x {nodes} nodes x 4 variables = {args.steps * nodes * 16 / 1e9:.1f} GB "
                "as float32")
            log(f"lazy:      {lazy['seconds_per_iteration']:.3f} s/iteration, peak {lazy['peak_gb']:.2f} GB, "
                f"waiting for data {lazy['wait']:.2f} s of {lazy['loop']:.1f} s in the loop "
                f"({100 * lazy['wait'] / lazy['loop']:.1f} %); {lazy['data'].get('reading')}")
            memory = common(store, args.iterations, folder, "memory")
            eager = result(run_child([*memory, "data.lazy=false", "data.time=[2000-01-01,2000-01-06T18]", "ddm=global",
                                      "partition.num_parts=1", "partition.overlap=0"]), "in memory")
            log(f"in memory: {eager['seconds_per_iteration']:.3f} s/iteration, peak {eager['peak_gb']:.2f} GB "
                f"(24 steps); {eager['data'].get('reading')}")
            ratio = lazy["seconds_per_iteration"] / eager["seconds_per_iteration"]
            log(f"lazy / in memory: {ratio:.2f}x per iteration (goal <= {RATIO_GOAL}x: "
                f"{'met' if ratio <= RATIO_GOAL else 'NOT met'}); lazy peak {lazy['peak_gb']:.2f} GB "
                f"(goal <= {PEAK_GOAL_GB} GB: {'met' if lazy['peak_gb'] <= PEAK_GOAL_GB else 'NOT met'})")
        if args.skip_ranks:
            return 0
        ranks = common(store, args.rank_iterations, folder, "ranks")
        port = str(29600 + os.getpid() % 1000)
        procs = [run_child([*ranks, "data.lazy=true", "ddm=sync", f"partition={args.partition}",
                            "partition.num_parts=2", "partition.overlap=3", "distributed.backend=gloo",
                            "trainer.threads=1", *split],
                           env={"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",
                                "MASTER_PORT": port})
                 for r in range(2)]
        for r, proc in enumerate(procs):
            got = result(proc, f"rank {r}")
            d = got["data"]
            nodes = got["nodes"]
            share = d["points_per_step"] / nodes
            log(f"rank {r} ({args.partition}, p=2, overlap 3): peak {got['peak_gb']:.2f} GB; a batch reads "
                f"{d['points_per_step']} of {nodes} grid points per step and variable ({100 * share:.1f} %), "
                f"holding {d['rows']} nodes ({100 * d['rows'] / nodes:.1f} %: its subdomain and overlap); "
                f"{got['seconds_per_iteration']:.3f} s/iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
