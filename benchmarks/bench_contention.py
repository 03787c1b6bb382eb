"""How much slower one rank's work gets while the other core computes too (no communication at all).

One outer iteration of a rank of a 2-rank run (p = 2, ``asm``: assemble the mini-batch rows of its
subdomain, slice them, one algorithm step on that subdomain alone) is timed twice in the same run:

- ``alone``      : this process computes, the other core is idle;
- ``side by side``: a second process computes the other subdomain's iterations at the same time.

No collective is involved (each process sums only its own subdomain), so the ratio isolates what the two
cores share (memory system, caches) from synchronisation. It is the ceiling a 2-rank run can reach here.
Rounds alternate the two set-ups; each prints the median seconds per iteration.

    python3 benchmarks/bench_contention.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as `gnnddm` itself runs (gnnddm/cli.py)


def _worker(resolution: str, part: int, iterations: int, start, result) -> None:
    """Build the problem, wait for ``start``, time ``iterations`` outer iterations of subdomain ``part``."""
    warnings.filterwarnings("ignore")
    import numpy as np
    import torch

    from gnnddm.config import build, build_component, compose
    from gnnddm.data.pipeline import build_problem
    from gnnddm.ddm import build_algorithm
    from gnnddm.ddm.objective import Objective
    from gnnddm.distributed.accounting import Accounting
    from gnnddm.distributed.comm import LocalComm

    torch.set_num_threads(1)
    cfg = compose(["data=synthetic", f"data.resolution={resolution}", "data.steps=120", "model=sage",
                   "model.hidden=32", "model.layers=2", "partition.overlap=2", "partition.num_parts=2",
                   "ddm=asm", "trainer.batch_size=4"])
    problem = build_problem(cfg)
    data = problem.data
    task = build_component(cfg.task, "task", data)
    anchors = task.anchors(problem.split.train)
    torch.manual_seed(0)
    edge_dim = 0 if data.edge_attr is None else data.edge_attr.shape[1]
    model = build_component(cfg.model, "model", task.in_channels, task.out_channels, edge_dim)
    partition = build(cfg.partition, "partition")(data)
    accounting = Accounting()
    comm = LocalComm(2, accounting=accounting)
    comm.parts_of_rank = (part,)  # what a rank of a 2-rank run computes, without its collectives
    objective = Objective(data, partition, parts=comm.parts_of_rank)
    algorithm = build_algorithm(cfg.ddm, cfg.optimizer, model, objective, comm)
    rng = np.random.default_rng(part)

    def iteration() -> float:
        t0 = time.perf_counter()
        batch = task.batch(rng.choice(anchors, size=4, replace=False), rng, nodes=objective.local_nodes)
        algorithm.step(batch)
        return time.perf_counter() - t0

    iteration()  # warm-up
    if start is not None:
        start.wait()
    result.put((part, statistics.median(iteration() for _ in range(iterations))))


def _measure(resolution: str, iterations: int, together: bool) -> float:
    """Median seconds per iteration of subdomain 0, alone or beside subdomain 1 in another process."""
    ctx = mp.get_context("spawn")
    start, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(resolution, k, iterations, start, result))
             for k in ((0, 1) if together else (0,))]
    for p in procs:
        p.start()
    start.set()
    times = dict(result.get() for _ in procs)
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"worker failed with exit code {p.exitcode}")
    return times[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", default="0.703125", help="synthetic grid spacing in degrees")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"# bench_contention: synthetic {args.resolution} deg, sage hidden 32, asm, p = 2, one subdomain's "
          f"outer iteration; nproc={os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    ratios = []
    for r in range(args.rounds):
        alone = _measure(args.resolution, args.iterations, together=False)
        beside = _measure(args.resolution, args.iterations, together=True)
        ratios.append(beside / alone)
        print(f"  round {r + 1}: s/iter alone {alone:.4f}, side by side {beside:.4f}: "
              f"{100 * (beside / alone - 1):+.0f} %", flush=True)
    print(f"\nside by side / alone: median {statistics.median(ratios):.2f}x "
          f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}); the 2-rank speedup ceiling here is "
          f"about 2 / that = {2 / statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
