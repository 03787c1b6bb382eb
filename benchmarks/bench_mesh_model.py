"""The encoder-processor-decoder against the same network written with PyG's ``MessagePassing``.

One training step (forward, MSE loss, backward, Adam) of gnnddm's ``EncodeProcessDecode`` (hidden 64, 4
processor layers, 2-layer MLPs with LayerNorm, 9 input channels, 4 outputs, one sample) on the joint graph
of ``graph=icosahedral`` (a global grid at ``--resolution`` degrees and an icosahedral multimesh refined
``--refinement`` times; encoder radius 0.6), against the reference: the same modules (deep copies, the same
weights) with each stage written as PyG users write it, a bipartite ``MessagePassing`` layer whose
``edge_updater`` computes ``e + MLP_e([e, x_j, x_i])`` on the concatenated ``[E, 3*hidden]`` edge inputs and
whose ``propagate`` sums the new edge latents into their targets, fed each kind's ``edge_index`` (the
processor's relabelled to the mesh nodes, on which it runs). Steps interleaved after a warm-up, medians,
2 threads; prints both, the ratio against the goal 1/3 (also that of the fastest steps, the least
disturbed on a shared machine) and the largest difference of the two networks' outputs (they compute the
same function). Then the peak memory (``ru_maxrss``) of a fresh process per variant running one step
(after loading the same graph; the high-water mark before the step is printed too).

Three variants: ``gnnddm``, ``gnnddm recompute`` (``model.recompute=true``: the encoder and decoder run by
blocks of rows recomputed in the backward pass) and the reference. Each memory measurement runs in a
process limited to ``--memory-limit`` GB of address space; a variant that does not fit is reported so and
left out of the timing.

    python3 benchmarks/bench_mesh_model.py                    # 0.25 deg (1,038,240 grid nodes), refinement 5
    python3 benchmarks/bench_mesh_model.py --resolution 1 --iters 3
    python3 benchmarks/bench_mesh_model.py --no-timing --variants "gnnddm,gnnddm recompute"  # memory alone
    python3 benchmarks/bench_mesh_model.py --resolution 5.625 --refinement 2 --iters 1   # a quick check
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import adam_step, interleave, print_medians, pyg_interaction, ratio  # noqa: E402

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does

F_IN, F_OUT, HIDDEN, PROCESSOR_LAYERS, GOAL = 9, 4, 64, 4, 1 / 3
KINDS = ("encoder", "processor", "decoder")
VARIANTS = ("gnnddm", "gnnddm recompute", "pyg MessagePassing")


def build_graph(resolution: float, refinement: int) -> dict:
    """The joint graph's ``edge_index`` [2, E] and ``edge_attr`` [E, 6] as tensors, and its node count."""
    import torch

    from gnnddm.data.synthetic import load_synthetic
    from gnnddm.graph.icosahedral import icosahedral_graph

    data = icosahedral_graph(load_synthetic(resolution=resolution, steps=2), refinement=refinement,
                             multimesh=True, radius=0.6)
    return {"edge_index": torch.as_tensor(data.edge_index), "edge_attr": torch.as_tensor(data.edge_attr),
            "num_nodes": int(data.num_nodes), "num_grid": int((data.static[:, -1] == 0).sum())}


def pyg_edges(g: dict, samples: int = 1) -> dict:
    """Per kind: the ``edge_index`` and geometric features a PyG user would hold; the mesh nodes. With
    ``samples`` > 1, of the disjoint union of that many copies of the graph, as PyG's ``Batch`` builds a
    mini-batch (node rows of copy k offset by k N, the processor's mesh rows by k M)."""
    import torch

    ei, attr, n = g["edge_index"], g["edge_attr"], g["num_nodes"]
    out = {}
    for k, kind in enumerate(KINDS):
        sel = attr[:, 3 + k] > 0.5
        out[kind] = (ei[:, sel].contiguous(), attr[sel, :3].contiguous())
    proc = out["processor"][0]
    mesh = torch.unique(proc)
    out["processor"] = (torch.searchsorted(mesh, proc), out["processor"][1])
    out["mesh"] = mesh
    if samples > 1:
        for kind in KINDS:
            index, feats = out[kind]
            rows = len(mesh) if kind == "processor" else n
            out[kind] = (torch.cat([index + c * rows for c in range(samples)], dim=1), feats.repeat(samples, 1))
        out["mesh"] = torch.cat([mesh + c * n for c in range(samples)])
    return out


def reference(model):
    """The same network, its stages as PyG ``MessagePassing`` layers (own copies of the weights)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.node_embedder = copy.deepcopy(model.node_embedder)
            self.edge_embedders = copy.deepcopy(model.edge_embedders)
            self.encoder = pyg_interaction(model.encoder)
            self.processor = torch.nn.ModuleList(pyg_interaction(layer) for layer in model.processor)
            self.decoder = pyg_interaction(model.decoder)
            self.output = copy.deepcopy(model.output)

        def forward(self, x, edges):
            h = self.node_embedder(x)
            e = {kind: self.edge_embedders[kind](edges[kind][1]) for kind in KINDS}
            h, _ = self.encoder((h, h), e["encoder"], edges["encoder"][0])
            mesh = edges["mesh"]
            h_mesh, e_proc = h[mesh], e["processor"]
            for layer in self.processor:
                h_mesh, e_proc = layer((h_mesh, h_mesh), e_proc, edges["processor"][0])
            h = h.index_copy(0, mesh, h_mesh)
            h, _ = self.decoder((h, h), e["decoder"], edges["decoder"][0])
            return self.output(h)

    return Net()


def setup(g: dict, variants=VARIANTS, samples: int = 1):
    """The networks (the same weights), their inputs (``samples`` time samples), and one training step of
    each of ``variants``. gnnddm takes the samples as a batch on one graph; the reference as PyG's
    mini-batch, the disjoint union of ``samples`` copies."""
    import torch

    from gnnddm.models.encode_process_decode import EncodeProcessDecode
    from gnnddm.models.graph import prepare_graph

    torch.set_num_threads(2)
    torch.manual_seed(0)
    n = g["num_nodes"]
    graph = prepare_graph(g["edge_index"], n, edge_attr=g["edge_attr"])
    ours = EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                               processor_layers=PROCESSOR_LAYERS)
    x, y = torch.randn(samples, n, F_IN), torch.randn(samples, n, F_OUT)
    steps, forwards = {}, {}
    if VARIANTS[0] in variants:
        steps[VARIANTS[0]] = adam_step(ours, lambda: ours(x, graph), y)
        forwards[VARIANTS[0]] = lambda: ours(x, graph)
    if VARIANTS[1] in variants:
        light = EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                                    processor_layers=PROCESSOR_LAYERS, recompute=True)
        light.load_state_dict(ours.state_dict())
        steps[VARIANTS[1]] = adam_step(light, lambda: light(x, graph), y)
        forwards[VARIANTS[1]] = lambda: light(x, graph)
    if VARIANTS[2] in variants:
        ref, edges = reference(ours), pyg_edges(g, samples)

        def run_ref():
            return ref(x.reshape(samples * n, F_IN), edges).view(samples, n, F_OUT)

        steps[VARIANTS[2]] = adam_step(ref, run_ref, y)
        forwards[VARIANTS[2]] = run_ref
    return steps, forwards


def product_flops(g: dict, samples: int = 1) -> dict[str, float]:
    """Floating-point operations of one step's dense products (forward and backward), per variant, counted
    from the graph: a linear layer ``[R, a] -> [R, b]`` costs ``2 R a b`` forward and as much again for
    each of its weight's and its input's gradients (no input gradient for the layers that read the data or
    the edge features). The rest of a step (gathers, sums into nodes, elementwise passes) is not counted:
    this is the part of the work that no implementation of the same function in float32 avoids, and its
    ratio the floor of the time ratio on products. gnnddm embeds the edges once for all ``samples`` and
    computes ``W_e e`` once where ``e`` is still the embedding (the encoder, the decoder and the first
    processor layer); the reference's mini-batch does everything once per copy."""
    import torch

    attr, ei, n, b = g["edge_attr"], g["edge_index"], g["num_nodes"], samples
    h, layers = HIDDEN, PROCESSOR_LAYERS
    kinds = {}
    for k, kind in enumerate(KINDS):
        sel = attr[:, 3 + k] > 0.5
        src, dst = ei[0, sel], ei[1, sel]
        kinds[kind] = (int(sel.sum()), len(torch.unique(src)), len(torch.unique(dst)))
    mesh = len(torch.unique(ei[:, attr[:, 4] > 0.5]))

    def linear(rows, a, c, input_grad=True):
        return 2 * rows * a * c * (3 if input_grad else 2)

    nodes = linear(n, F_IN, h, False) + linear(n, h, h) + linear(n, h, h) + linear(n, h, F_OUT)
    embed = sum(linear(e, 3, h, False) + linear(e, h, h) for e, _, _ in kinds.values())
    ours, theirs = b * nodes + embed, b * (nodes + embed)
    for kind in KINDS:
        e, senders, receivers = kinds[kind]
        frame = mesh if kind == "processor" else n
        repeat = layers if kind == "processor" else 1
        per_sample = (linear(senders, h, h) + linear(receivers, h, h) + linear(e, h, h)
                      + linear(frame, h, h) + linear(receivers, h, h) + linear(frame, h, h))
        ours += repeat * b * per_sample + linear(e, h, h) + (repeat - 1) * b * linear(e, h, h)  # W_e e
        theirs += repeat * b * (linear(e, 3 * h, h) + linear(e, h, h) + linear(frame, 2 * h, h)
                                + linear(frame, h, h))
    return {VARIANTS[0]: ours, VARIANTS[2]: theirs}


def gemm_rate(rows: int = 1 << 19, repeats: int = 5) -> float:
    """GFLOP/s of this machine's float32 products of the shapes a step is made of (2 threads): a tall
    ``[rows, 64] @ [64, 64]`` (forward, input gradient) and a weight gradient ``[64, rows] @ [rows, 64]``,
    the median of ``repeats`` of each, averaged."""
    import torch

    torch.set_num_threads(2)
    a, w, g = torch.randn(rows, HIDDEN), torch.randn(HIDDEN, HIDDEN), torch.randn(rows, HIDDEN)
    flops = 2 * rows * HIDDEN * HIDDEN
    rates = []
    for product in (lambda: a @ w, lambda: g.t() @ a):
        product()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            product()
            times.append(time.perf_counter() - t0)
        rates.append(flops / statistics.median(times) / 1e9)
    return statistics.mean(rates)


def torch_load(path: str) -> dict:
    import torch

    return torch.load(path)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB


def save_graph(path: str, resolution: float, refinement: int) -> int:
    """Build the joint graph and save it to ``path``; print what it holds."""
    import torch

    t0 = time.perf_counter()
    g = build_graph(resolution, refinement)
    torch.save(g, path)
    counts = [int((g["edge_attr"][:, 3 + k] > 0.5).sum()) for k in range(3)]
    print(f"joint graph: {resolution:g} deg, refinement {refinement}: {g['num_grid']:,} grid + "
          f"{g['num_nodes'] - g['num_grid']:,} mesh nodes; {counts[0]:,} encoder, {counts[1]:,} processor, "
          f"{counts[2]:,} decoder edges (built in {time.perf_counter() - t0:.1f} s)")
    return 0


def measure_memory(path: str, variant: str, samples: int) -> int:
    """Load the graph, build the network, run one step of ``variant``; print the peaks before and after."""
    import torch

    steps, _ = setup(torch.load(path), (variant,), samples)
    before = peak_gb()
    steps[variant]()
    print(f"{before:.3f} {peak_gb():.3f}")
    return 0


def child(*args: str) -> str:
    """Run this script with ``args`` in a fresh process. Started from this process before it imports torch:
    Linux carries a process's peak memory over to the children it forks."""
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True).stdout


def memory_child(path: str, variant: str, limit_gb: float, samples: int) -> tuple[float, float] | str:
    """Peak memory before and after one step of ``variant`` in a fresh process whose address space is
    limited to ``limit_gb`` (a step that needs more fails there instead of taking the machine down)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 1e9),) * 2)

    r = subprocess.run([sys.executable, __file__, "--memory", path, variant, "--samples", str(samples)],
                       capture_output=True, text=True, preexec_fn=limit)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"did not fit in {limit_gb:g} GB of address space ({last[:120]})"
    before, peak = (float(v) for v in r.stdout.split()[-2:])
    return before, peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=float, default=0.25)
    ap.add_argument("--refinement", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--samples", type=int, default=1,
                    help="time samples per step (default 1; +experiment=era5_mesh trains with 4)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    ap.add_argument("--memory-limit", type=float, default=None, metavar="GB",
                    help="address-space limit of each memory measurement (default: 90%% of the machine's memory)")
    ap.add_argument("--no-timing", action="store_true", help="the peak memory alone (no side-by-side steps)")
    ap.add_argument("--save-graph", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs=2, metavar=("GRAPH", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.save_graph:
        return save_graph(args.save_graph, args.resolution, args.refinement)
    if args.memory:
        return measure_memory(*args.memory, args.samples)
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose among {list(VARIANTS)}")
    limit = args.memory_limit or 0.9 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.pt")
        print(child("--save-graph", path, "--resolution", str(args.resolution), "--refinement",
                    str(args.refinement)), end="", flush=True)
        flops = product_flops(torch_load(path), args.samples)
        floor = flops[VARIANTS[0]] / flops[VARIANTS[2]]
        print(f"  dense products per step: gnnddm {flops[VARIANTS[0]] / 1e9:.1f} GFLOP, PyG "
              f"{flops[VARIANTS[2]] / 1e9:.1f} GFLOP: {floor:.2f}x (the floor of the ratio on products; "
              "recompute adds the encoder's and decoder's forward products)", flush=True)
        memory = {name: memory_child(path, name, limit, args.samples) for name in variants}
        for name, m in memory.items():
            text = m if isinstance(m, str) else (f"{m[1]:.2f} GB (one step in a fresh process; {m[0]:.2f} GB "
                                                 "before the step: graph, weights, inputs)")
            print(f"  {name:<20} peak memory {text}", flush=True)
        if args.no_timing:
            return 0
        fits = [v for v in variants if not isinstance(memory[v], str)]

        import torch

        steps, forwards = setup(torch.load(path), fits, args.samples)
    ref = VARIANTS[2]
    with torch.no_grad():
        outs = {k: f() for k, f in forwards.items()}
    diffs = ", ".join(f"{k} {float((outs[k] - outs[ref]).abs().max()):.2e}" for k in outs if k != ref
                      and ref in outs)
    rate = gemm_rate()
    times = interleave(steps, args.iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"encode-process-decode, hidden {HIDDEN}, {PROCESSOR_LAYERS} processor layers, {args.samples} sample(s), "
          "2 threads; "
          f"outputs differ from the reference's by at most: {diffs or '(no reference)'}")
    print_medians(times)
    at_rate = {k: v / rate / 1e9 for k, v in flops.items()}
    print(f"  this machine's float32 products of these shapes: {rate:.0f} GFLOP/s; the dense products alone "
          f"would take gnnddm {at_rate[VARIANTS[0]]:.3f} s, PyG {at_rate[ref]:.3f} s"
          + (f" ({at_rate[VARIANTS[0]] / med[ref]:.2f}x of PyG's measured step)" if ref in med else ""))
    for name in (v for v in times if v != ref):
        if ref not in times:
            print(f"  {name} / PyG: no reference run (it did not fit or was not asked for)")
            continue
        speed = ratio(times, name, ref)
        fastest = min(times[name]) / min(times[ref])
        print(f"  {name} / PyG: {speed:.2f}x (median of per-round ratios; goal <= {GOAL:.2f}x: "
              f"{'met' if speed <= GOAL else 'NOT met'}); fastest steps: {fastest:.2f}x (on a shared machine the "
              "least disturbed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
