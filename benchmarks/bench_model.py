"""Speed and memory of one GraphSAGE training step on global lat-lon grids, against plain PyG.

One training iteration = forward, MSE loss, backward, Adam step of a 3-layer GraphSAGE (hidden 64, 9 input
channels, 4 outputs, one sample) on an 8-neighbour grid periodic in longitude. Measured:

1. at 0.25 deg (721 x 1440 = 1,038,240 nodes): the gnnddm model (CSR fast path) and the references, the same
   network built from ``torch_geometric.nn.SAGEConv`` fed ``edge_index`` and fed the transposed adjacency as
   a torch CSR tensor (PyG's sparse path, ``pyg-csr``). All run in one process, their
   steps interleaved, so that load from other processes hits both alike; reported as medians after a
   warm-up step and as the speed ratio against the 4x target.
2. peak memory (``ru_maxrss``) of a fresh process per variant running two steps, against 8 GB.
3. the step time of the gnnddm model at several resolutions and the fitted exponent ``t ~ N^k`` (log-log
   least squares; target k <= 1.1).

Every timed step (1 and 3) is shown beside its dense-product floor (``benchmarks/floor.py``): the time its
products (counted in its warm-up step) take at the product rate of ``[N, 64]`` activations measured in the
same process, in float32 and in bf16, and the step's ratio to it. ``--output`` writes both tables into a
page as the generated block ``bench_model:<device>-<resolution>deg`` (``-thp`` with ``--thp``).

Every measurement runs in its own subprocess with ``torch.set_num_threads(2)``.

Usage::

    python3 benchmarks/bench_model.py            # full run (about 5-10 min on 2 cores)
    python3 benchmarks/bench_model.py --output docs/performance.md    # and write the tables
    python3 benchmarks/bench_model.py --quick    # 0.5 deg instead of 0.25 deg for the comparison
    python3 benchmarks/bench_model.py --thp      # both variants with PyTorch's huge-page allocations
    python3 benchmarks/bench_model.py --device cuda   # on a GPU (peak memory: the device's)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_blocks  # noqa: E402
from floor import HEADER, Rates, floor_row, instrument, measure_rates  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# What the tables measure (fingerprinted into their block's marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/models", "gnnddm/graph/grid.py", "benchmarks/bench_model.py", "benchmarks/floor.py")
RESOLUTIONS = [2.8125, 1.40625, 1.0, 0.703125, 0.5, 0.25]
F_IN, F_OUT, HIDDEN, LAYERS = 9, 4, 64, 3
SPEED_TARGET, MEMORY_TARGET_GB, SCALING_TARGET = 4.0, 8.0, 1.1
EDGE_INDEX_GOAL, CSR_GOAL = 0.15, 0.4  # gnnddm's step time over PyG's


def grid_shape(res: float) -> tuple[int, int]:
    """Latitudes -90..90 inclusive and longitudes 0..360 exclusive at ``res`` degrees."""
    return int(round(180 / res)) + 1, int(round(360 / res))


# ---------------------------------------------------------------- worker side (one subprocess each)


def _setup(res: float, device: str):
    import torch

    from gnnddm.graph.grid import grid_edges
    from gnnddm.models.graph import prepare_graph

    torch.set_num_threads(2)
    torch.manual_seed(0)
    nlat, nlon = grid_shape(res)
    n = nlat * nlon
    graph = prepare_graph(grid_edges(nlat, nlon), n).to(device)
    x, y = torch.randn(1, n, F_IN, device=device), torch.randn(1, n, F_OUT, device=device)
    return graph, x, y


def _make(variant: str, graph):
    """A training-step closure for ``variant`` in {"gnnddm", "pyg", "pyg-csr"}, on the graph's device."""
    import torch
    from torch_geometric.nn import SAGEConv

    from gnnddm.models.sage import GraphSAGE

    device = graph.edge_index.device
    if variant == "gnnddm":
        model = GraphSAGE(F_IN, F_OUT, hidden=HIDDEN, layers=LAYERS).to(device)

        def forward(x):
            return model(x, graph)
    else:
        dims = [F_IN] + [HIDDEN] * (LAYERS - 1) + [F_OUT]
        model = torch.nn.ModuleList(SAGEConv(dims[k], dims[k + 1]) for k in range(LAYERS)).to(device)
        edge_index = graph.edge_index
        if variant == "pyg-csr":  # PyG's sparse path: the transposed adjacency as a torch CSR tensor
            n = graph.num_nodes
            edge_index = torch.sparse_coo_tensor(edge_index.flip(0), torch.ones(edge_index.shape[1], device=device),
                                                 (n, n)).coalesce().to_sparse_csr()

        def forward(x):
            h = x[0]
            for k, conv in enumerate(model):
                h = conv(h, edge_index)
                if k < LAYERS - 1:
                    h = h.relu()
            return h.unsqueeze(0)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(x), y)
        loss.backward()
        opt.step()

    return step


def _timed(step) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def _peak_gb(device: str) -> float:
    """This process's peak memory: resident (``ru_maxrss``) on a CPU, allocated on a GPU."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def _steps(graph, x, y, variants, device: str) -> tuple[dict, dict]:
    """Steps of ``variants`` that wait for the device, and the FLOP counts their first calls fill
    (:func:`floor.instrument`)."""
    def bound(step):
        return lambda: step(x, y)

    return instrument({v: bound(_make(v, graph)) for v in variants}, device)


def worker(args) -> dict:
    graph, x, y = _setup(args.res, args.device)
    if args.worker == "compare":
        steps, flops = _steps(graph, x, y, ("gnnddm", "pyg", "pyg-csr"), args.device)
        times = {v: [] for v in steps}
        for it in range(args.iters + 1):
            order = list(steps) if it % 2 == 0 else list(steps)[::-1]
            for v in order:
                t = _timed(steps[v])
                if it > 0:  # the first round is warm-up
                    times[v].append(t)
        rates = measure_rates(graph.num_nodes, HIDDEN, args.device)
        return {"nodes": graph.num_nodes, "edges": graph.num_edges, "times": times, "flops": flops,
                "rates": dataclasses.asdict(rates)}
    if args.worker == "memory":
        graph_gb = _peak_gb(args.device)
        step = _make(args.variant, graph)
        for _ in range(2):
            step(x, y)
        return {"graph_gb": graph_gb, "peak_gb": _peak_gb(args.device)}
    steps, flops = _steps(graph, x, y, ("gnnddm",), args.device)
    steps["gnnddm"]()  # warm-up, counted
    iters = max(args.iters, min(20, 1_000_000 // graph.num_nodes))  # small grids are cheap: more samples
    times = [_timed(steps["gnnddm"]) for _ in range(iters)]
    return {"nodes": graph.num_nodes, "times": times, "flops": flops["gnnddm"],
            "rates": dataclasses.asdict(measure_rates(graph.num_nodes, HIDDEN, args.device))}


# ---------------------------------------------------------------- driver


def run(env, **kw) -> dict:
    cmd = [sys.executable, __file__] + [f"--{k}={v}" for k, v in kw.items()]
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(args, argv) -> None:
    command = shlex.join(["python3", "benchmarks/bench_model.py", *argv])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.thp:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    res = 0.5 if args.quick else 0.25
    nlat, nlon = grid_shape(res)
    setup = (f"GraphSAGE {LAYERS} layers, hidden {HIDDEN}, {F_IN} -> {F_OUT} channels, batch 1, 2 threads, "
             f"Adam; THP allocations {'on' if args.thp else 'off'}; {args.device}")
    print(setup)

    cmp_ = run(env, worker="compare", res=res, iters=args.iters, device=args.device)
    med = {v: statistics.median(t) for v, t in cmp_["times"].items()}
    ratios = [p / f for f, p in zip(cmp_["times"]["gnnddm"], cmp_["times"]["pyg"], strict=True)]
    print(f"\n[speed] {res} deg grid {nlat}x{nlon}: {cmp_['nodes']:,} nodes, {cmp_['edges']:,} edges; "
          f"{args.iters} interleaved steps each after warm-up")
    for v in ("gnnddm", "pyg", "pyg-csr"):
        ts = ", ".join(f"{t:.2f}" for t in cmp_["times"][v])
        print(f"  {v:8s} median {med[v]:7.3f} s/step   ({ts})")
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= SPEED_TARGET else "misses"
    print(f"  speed-up over PyG: {ratio:.2f}x (median of per-round ratios; target {SPEED_TARGET}x: {verdict})")
    for v, goal in (("pyg", EDGE_INDEX_GOAL), ("pyg-csr", CSR_GOAL)):
        r = statistics.median(f / p for f, p in zip(cmp_["times"]["gnnddm"], cmp_["times"][v], strict=True))
        print(f"  gnnddm / {v}: {r:.2f}x of its time (median of per-round ratios; goal <= {goal}x: "
              f"{'met' if r <= goal else 'NOT met'})")
    rates = Rates(**cmp_["rates"])
    speed = [rates.line() + ".", "", *HEADER]
    speed += [floor_row(v, med[v], cmp_["flops"][v], rates, med["pyg"]) for v in ("gnnddm", "pyg", "pyg-csr")]
    print("\n".join(speed))

    kind = "peak memory allocated on the device" if args.device.startswith("cuda") else "peak RSS"
    print(f"\n[memory] {kind} of a fresh process, two training steps")
    for v in ("gnnddm", "pyg"):
        m = run(env, worker="memory", res=res, variant=v, device=args.device)
        ok = "ok" if m["peak_gb"] <= MEMORY_TARGET_GB else "over"
        print(f"  {v:8s} peak {m['peak_gb']:5.2f} GB (graph and runtime alone {m['graph_gb']:.2f} GB; "
              f"target {MEMORY_TARGET_GB} GB: {ok})")

    print("\n[scaling] gnnddm step time against resolution (median and minimum of the steps; the fit uses the\n"
          "  minimum, the step least disturbed by other load on the machine)")
    nodes, times = [], []
    scaling = ["| grid | nodes | median s | min s | ns/node (min) | dense GFLOP | float32 GFLOP/s | float32 floor s "
               "| median / floor | bf16 GFLOP/s | bf16 floor s | median / bf16 floor |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in RESOLUTIONS if not args.quick else RESOLUTIONS[:-1]:
        s = run(env, worker="scale", res=r, iters=args.iters, device=args.device)
        nodes.append(s["nodes"])
        times.append(min(s["times"]))
        median, rates = statistics.median(s["times"]), Rates(**s["rates"])
        f32, bf16 = rates.floor(s["flops"]), rates.floor(s["flops"], "bfloat16")
        print(f"  {r:9.6f} deg {s['nodes']:>10,} nodes  median {median:8.4f} s/step  "
              f"min {times[-1]:8.4f} s/step  {1e9 * times[-1] / s['nodes']:7.1f} ns/node  "
              f"float32 floor {f32:.4f} s ({median / f32:.2f}x)")
        bf16_cells = ["-", "-", "-"] if bf16 is None else [f"{rates.bfloat16:.0f}", f"{bf16:.3g}",
                                                           f"{median / bf16:.2f}x"]
        cells = [f"{r:g}", f"{s['nodes']:,}", f"{median:.3g}", f"{times[-1]:.3g}",
                 f"{1e9 * times[-1] / s['nodes']:.0f}", f"{s['flops'] / 1e9:.3g}", f"{rates.float32:.0f}",
                 f"{f32:.3g}", f"{median / f32:.2f}x", *bf16_cells]
        scaling.append("| " + " | ".join(cells) + " |")
    k_all = np.polyfit(np.log(nodes), np.log(times), 1)[0]
    big = [i for i, n in enumerate(nodes) if n >= 60_000]
    k_big = np.polyfit(np.log([nodes[i] for i in big]), np.log([times[i] for i in big]), 1)[0]
    verdict = "meets" if k_big <= SCALING_TARGET else "misses"
    fit = (f"fitted exponent t ~ N^k: k = {k_all:.2f} (all sizes), k = {k_big:.2f} (>= 60k nodes; "
           f"target <= {SCALING_TARGET}: {verdict})")
    print(f"  {fit}")
    print("\n".join(scaling))
    if args.output:
        body = [f"{setup}; medians of {args.iters} interleaved steps after a warm-up.", "",
                f"Speed at {res:g} deg ({cmp_['nodes']:,} nodes, {cmp_['edges']:,} edges), the last column against "
                "PyG `SAGEConv` on `edge_index` (pyg; pyg-csr: on a torch CSR `adj_t`):", "", *speed, "",
                f"Scaling of the gnnddm step (rates measured at each size; {fit}):", "", *scaling]
        name = f"{args.device.split(':')[0]}-{res:g}deg" + ("-thp" if args.thp else "")
        results_blocks.write_block(args.output, "bench_model", name, "\n".join(body), stamp, "# Performance")
        print(f"  wrote {args.output}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3, help="timed steps per variant and size")
    p.add_argument("--quick", action="store_true", help="compare at 0.5 deg, skip the 0.25 deg scaling point")
    p.add_argument("--thp", action="store_true", help="set THP_MEM_ALLOC_ENABLE=1 for both variants")
    p.add_argument("--device", default="cpu", help="torch device of every step (default cpu)")
    p.add_argument("--output", type=Path, help="page to write the tables into (docs/performance.md)")
    p.add_argument("--worker", choices=["compare", "memory", "scale"], help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=["gnnddm", "pyg"], help=argparse.SUPPRESS)
    p.add_argument("--res", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    a = parse()
    if a.worker:
        print(json.dumps(worker(a)))
    else:
        main(a, sys.argv[1:])
