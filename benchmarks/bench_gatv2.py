"""GATv2 against PyG's ``GATv2Conv`` on ``edge_index``, one training step each, in one process.

One training step (forward, MSE loss, backward, Adam) of gnnddm's ``GATv2`` (3 layers, hidden 64 in 4 heads,
the last layer one head; 9 input channels, 4 outputs; the grid's edge features ``(dx, dy, distance)``; one
sample) on the 8-neighbour global grid at ``--resolution`` degrees, against the reference: the same
``GATv2Conv`` modules (deep copies, the same weights) applied as PyG users apply them, ``conv(h, edge_index,
edge_attr)`` with ELU in between. Steps interleaved after a warm-up, medians, 2 threads; prints both, the
ratio against the 0.5x goal, and the largest difference of the two networks' outputs (they compute the
same function). Then each step's dense-product floor (``benchmarks/floor.py``: its products at the product
rate measured in the same run, float32 and bf16) and its ratio to it, as a table; ``--output`` writes that
table into a page as the generated block ``bench_gatv2:<device>-<resolution>deg``.

    python3 benchmarks/bench_gatv2.py                   # 1 deg (65,160 nodes)
    python3 benchmarks/bench_gatv2.py --output docs/performance.md       # and write the floor table
    python3 benchmarks/bench_gatv2.py --resolution 0.5 --iters 3 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_blocks  # noqa: E402
from floor import instrument, measure_rates, print_and_write  # noqa: E402
from side_by_side import adam_step, interleave, report  # noqa: E402

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does

F_IN, F_OUT, HIDDEN, HEADS, LAYERS, GOAL = 9, 4, 64, 4, 3, 0.5
# What the floor table measures (fingerprinted into its block's marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/models", "benchmarks/bench_gatv2.py", "benchmarks/floor.py", "benchmarks/side_by_side.py")


def grid_graph(resolution: float):
    """The 8-neighbour global grid (latitudes -90..90 inclusive) with its edge features, as a Graph."""
    import numpy as np

    from gnnddm.graph.features import edge_features
    from gnnddm.graph.grid import grid_edges
    from gnnddm.models.graph import prepare_graph

    nlat, nlon = int(round(180 / resolution)) + 1, int(round(360 / resolution))
    lat = np.repeat(np.linspace(90.0, -90.0, nlat), nlon)
    lon = np.tile(np.arange(nlon) * 360.0 / nlon, nlat)
    edges = grid_edges(nlat, nlon)
    return prepare_graph(edges, nlat * nlon, edge_attr=edge_features(lat, lon, edges))


def reference(model):
    """The same network applied through ``GATv2Conv.forward`` (own copies of the weights)."""
    import torch
    import torch.nn.functional as F

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = copy.deepcopy(model.convs)

        def forward(self, x, edge_index, edge_attr):
            h = x
            for k, conv in enumerate(self.convs):
                h = conv(h, edge_index, edge_attr)
                if k < len(self.convs) - 1:
                    h = F.elu(h)
            return h

    return Net()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=1.0, help="grid spacing in degrees")
    ap.add_argument("--iters", type=int, default=5, help="timed steps of each network after the warm-up")
    ap.add_argument("--device", default="cpu", help="torch device of both networks (default cpu)")
    ap.add_argument("--output", type=Path, help="page to write the floor table into (docs/performance.md)")
    args = ap.parse_args(argv)
    command = shlex.join(["python3", "benchmarks/bench_gatv2.py", *(argv if argv is not None else sys.argv[1:])])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts

    import torch

    from gnnddm.models.gatv2 import GATv2

    torch.set_num_threads(2)
    torch.manual_seed(0)
    device = torch.device(args.device)
    graph = grid_graph(args.resolution).to(device)
    ours = GATv2(F_IN, F_OUT, edge_dim=3, hidden=HIDDEN, layers=LAYERS, heads=HEADS).to(device)
    ref = reference(ours)
    edge_index, edge_attr = graph.edge_index, graph.edge_attr
    x = torch.randn(1, graph.num_nodes, F_IN, device=device)
    y = torch.randn(1, graph.num_nodes, F_OUT, device=device)
    with torch.no_grad():
        diff = float((ours(x, graph)[0] - ref(x[0], edge_index, edge_attr)).abs().max())

    steps, flops = instrument({"gnnddm": adam_step(ours, lambda: ours(x, graph), y),
                               "pyg GATv2Conv": adam_step(ref, lambda: ref(x[0], edge_index, edge_attr).unsqueeze(0),
                                                          y)}, device)
    times = interleave(steps, args.iters)
    setup = (f"GATv2, {args.resolution:g} deg ({graph.num_nodes} nodes, {graph.num_edges} edges + self loops), "
             f"hidden {HIDDEN} in {HEADS} heads, {LAYERS} layers, edge features, one sample, 2 threads, "
             f"THP allocations {'on' if os.environ['THP_MEM_ALLOC_ENABLE'] == '1' else 'off'}, {device}")
    print(f"{setup}; outputs differ by at most {diff:.2e}")
    report(times, "gnnddm", "pyg GATv2Conv", GOAL, width=14)
    rates = measure_rates(graph.num_nodes, HIDDEN, device)
    print_and_write(times, flops, rates, "pyg GATv2Conv", setup, args,
                    ("bench_gatv2", f"{device.type}-{args.resolution:g}deg", stamp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
