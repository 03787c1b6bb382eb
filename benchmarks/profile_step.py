"""Where one training step of a gnnddm model spends its time: the torch profiler's operator table.

One training step (forward, MSE loss, backward, Adam) of a 3-layer model (hidden 64, 9 input channels, 4
outputs, one sample) on the 8-neighbour global grid at ``--resolution`` degrees, after ``--warmup`` steps,
profiled with ``torch.profiler`` on the CPU (2 threads, huge-page allocations as ``gnnddm`` runs). Prints
the ``--rows`` operators with the most self time, grouped by input shapes, as a markdown table
(operator, shapes, calls, self seconds, share of the step) and the step's wall time with and without the profiler.

    python3 benchmarks/profile_step.py                      # GraphSAGE, 0.25 deg (1,038,240 nodes)
    python3 benchmarks/profile_step.py --model gcn --resolution 1.0
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does

F_IN, F_OUT, HIDDEN, LAYERS = 9, 4, 64, 3
MODELS = {"sage": "gnnddm.models.sage.GraphSAGE", "gcn": "gnnddm.models.gcn.GCN",
          "interaction": "gnnddm.models.interaction.InteractionNetwork", "gatv2": "gnnddm.models.gatv2.GATv2"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="sage")
    ap.add_argument("--resolution", type=float, default=0.25)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=14)
    args = ap.parse_args(argv)

    import importlib

    import torch
    from torch.profiler import ProfilerActivity, profile

    from gnnddm.graph.grid import grid_edges
    from gnnddm.models.graph import prepare_graph

    torch.set_num_threads(2)
    torch.manual_seed(0)
    nlat, nlon = int(round(180 / args.resolution)) + 1, int(round(360 / args.resolution))
    n = nlat * nlon
    graph = prepare_graph(grid_edges(nlat, nlon), n)
    module, name = MODELS[args.model].rsplit(".", 1)
    model = getattr(importlib.import_module(module), name)(F_IN, F_OUT, hidden=HIDDEN, layers=LAYERS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(1, n, F_IN), torch.randn(1, n, F_OUT)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x, graph), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    step()
    plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        step()
        profiled = time.perf_counter() - t0
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    print(f"{args.model}, {args.resolution:g} deg ({n} nodes, {graph.num_edges} edges): one step {plain:.3f} s "
          f"({profiled:.3f} s profiled; {total:.3f} s of operator self time over the threads)")
    print("\n| operator | input shapes | calls | self s | share |\n|---|---|---|---|---|")
    for e in events[: args.rows]:
        s = e.self_cpu_time_total / 1e6
        shapes = ", ".join(str(list(sh)) for sh in e.input_shapes if sh) or "-"
        print(f"| `{e.key}` | {shapes} | {e.count} | {s:.3f} | {100 * s / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
