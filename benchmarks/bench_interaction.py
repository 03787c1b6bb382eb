"""The interaction network against the same network written with PyG's ``MessagePassing``, in one process.

One training step (forward, MSE loss, backward, Adam) of gnnddm's ``InteractionNetwork`` (hidden 64, 3
processor blocks, 2-layer MLPs with LayerNorm, no edge features: one learned edge latent; 9 input channels,
4 outputs, one sample) on the 8-neighbour global grid at ``--resolution`` degrees, against the reference:
the same modules (deep copies, the same weights) with each processor block written as PyG users write it,
``MessagePassing.edge_updater`` computing ``e + MLP_e([e, h_j, h_i])`` on the concatenated ``[E, 3*hidden]``
edge inputs and ``propagate`` summing the new edge latents into their targets. Steps interleaved after a
warm-up, medians, 2 threads; prints both, the ratio against the 0.5x goal, and the largest difference of the
two networks' outputs (they compute the same function). Then each step's dense-product floor
(``benchmarks/floor.py``: its products at the product rate of ``[E, 64]`` activations measured in the same run,
float32 and bf16) and its ratio to it, as a table; ``--output`` writes that table into a page as the generated
block ``bench_interaction:<device>-<resolution>deg``. ``--twins bf16,compiled`` also times gnnddm's step with
bf16 products and compiled (``trainer.precision``, ``trainer.compile``), each against the float32 step.

    python3 benchmarks/bench_interaction.py                   # 1 deg (65,160 nodes)
    python3 benchmarks/bench_interaction.py --output docs/performance.md      # and write the floor table
    python3 benchmarks/bench_interaction.py --resolution 0.5 --iters 3 --device cuda
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
from side_by_side import TWINS, adam_step, interleave, pyg_interaction, ratio, report, twin_steps  # noqa: E402

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does

F_IN, F_OUT, HIDDEN, LAYERS, GOAL = 9, 4, 64, 3, 0.5
# What the floor table measures (fingerprinted into its block's marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/models", "benchmarks/bench_interaction.py", "benchmarks/floor.py", "benchmarks/side_by_side.py")


def reference(model):
    """The same network, its processor blocks as PyG ``MessagePassing`` layers (own copies of the weights)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.node_encoder = copy.deepcopy(model.node_encoder)
            self.edge_latent = copy.deepcopy(model.edge_latent)
            self.blocks = torch.nn.ModuleList(pyg_interaction(b) for b in model.blocks)
            self.decoder = copy.deepcopy(model.decoder)

        def forward(self, x, edge_index):
            h = self.node_encoder(x)
            e = self.edge_latent.expand(edge_index.shape[1], -1)
            for block in self.blocks:
                h, e = block(h, e, edge_index)
            return self.decoder(h)

    return Net()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=1.0)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="torch device of both networks (default cpu)")
    ap.add_argument("--output", type=Path, help="page to write the floor table into (docs/performance.md)")
    ap.add_argument("--twins", default="", help=f"comma-separated, of {', '.join(TWINS)}: gnnddm's step also "
                    "with bf16 products, compiled (default: none)")
    args = ap.parse_args(argv)
    twins = [t.strip() for t in args.twins.split(",") if t.strip()]
    if any(t not in TWINS for t in twins):
        ap.error(f"--twins: expected names among {', '.join(TWINS)}, got {args.twins!r}")
    command = shlex.join(["python3", "benchmarks/bench_interaction.py", *(argv if argv is not None else sys.argv[1:])])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts

    import torch

    from gnnddm.graph.grid import grid_edges
    from gnnddm.models.graph import prepare_graph
    from gnnddm.models.interaction import InteractionNetwork

    torch.set_num_threads(2)
    torch.manual_seed(0)
    device = torch.device(args.device)
    nlat, nlon = int(round(180 / args.resolution)) + 1, int(round(360 / args.resolution))
    n = nlat * nlon
    graph = prepare_graph(grid_edges(nlat, nlon), n).to(device)
    ours = InteractionNetwork(F_IN, F_OUT, hidden=HIDDEN, layers=LAYERS).to(device)
    ref = reference(ours)
    edge_index = graph.edge_index
    x, y = torch.randn(1, n, F_IN, device=device), torch.randn(1, n, F_OUT, device=device)
    with torch.no_grad():
        diff = float((ours(x, graph)[0] - ref(x[0], edge_index)).abs().max())

    extra, uncounted = twin_steps(ours, lambda m: m(x, graph), y, twins, device)
    counted = {k: v for k, v in extra.items() if k not in uncounted}
    steps, flops = instrument({"gnnddm": adam_step(ours, lambda: ours(x, graph), y), **counted,
                               "pyg MessagePassing": adam_step(ref, lambda: ref(x[0], edge_index).unsqueeze(0), y)},
                              device)
    steps.update({k: v for k, v in extra.items() if k in uncounted})
    times = interleave(steps, args.iters)
    flops.update({k: flops["gnnddm"] for k in uncounted})
    setup = (f"interaction network, {args.resolution:g} deg ({n} nodes, {graph.num_edges} edges), hidden {HIDDEN}, "
             f"{LAYERS} blocks, one sample, 2 threads, {device}")
    print(f"{setup}; outputs differ by at most {diff:.2e}")
    report(times, "gnnddm", "pyg MessagePassing", GOAL)
    for name in extra:
        print(f"  {name} / gnnddm: {ratio(times, name, 'gnnddm'):.2f}x (median of per-round ratios)")
    rates = measure_rates(graph.num_edges, HIDDEN, device)  # the edge MLPs' products dominate
    print_and_write(times, flops, rates, "pyg MessagePassing", setup, args,
                    ("bench_interaction", f"{device.type}-{args.resolution:g}deg", stamp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
