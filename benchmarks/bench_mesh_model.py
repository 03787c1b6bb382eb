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

Four variants: ``gnnddm``, ``gnnddm recompute`` (``model.recompute=true``: the encoder and decoder run by
blocks of rows recomputed in the backward pass), the reference, and ``gnnddm bf16``
(``trainer.precision=bf16``: its dense products in bf16, float32 parameters and loss). Each memory measurement runs in a
process limited to ``--memory-limit`` GB of address space; a variant that does not fit is reported so and
left out of the timing (on ``--device cuda`` the host-memory measurement is skipped).

Each timed step's dense-product floor (``benchmarks/floor.py``: the products its warm-up step executed, at the
product rate measured in the same run, float32 and bf16) and its ratio to it close the run, as a table;
``--output`` writes that table into a page as the generated block
``bench_mesh_model:<device>-<resolution>deg-r<refinement>``.

    python3 benchmarks/bench_mesh_model.py                    # 0.25 deg (1,038,240 grid nodes), refinement 5
    python3 benchmarks/bench_mesh_model.py --output docs/performance.md     # and write the floor table
    python3 benchmarks/bench_mesh_model.py --resolution 1 --iters 3
    python3 benchmarks/bench_mesh_model.py --no-timing --variants "gnnddm,gnnddm recompute"  # memory alone
    python3 benchmarks/bench_mesh_model.py --resolution 5.625 --refinement 2 --iters 1   # a quick check
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_blocks  # noqa: E402
from floor import dense_flops, floor_table, instrument, measure_rates  # noqa: E402
from side_by_side import adam_step, interleave, print_medians, pyg_interaction, ratio  # noqa: E402

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch starts, as the gnnddm command does

F_IN, F_OUT, HIDDEN, PROCESSOR_LAYERS, GOAL = 9, 4, 64, 4, 1 / 3
KINDS = ("encoder", "processor", "decoder")
VARIANTS = ("gnnddm", "gnnddm recompute", "pyg MessagePassing", "gnnddm bf16")
# What the floor table measures (fingerprinted into its block's marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/models", "gnnddm/graph", "benchmarks/bench_mesh_model.py", "benchmarks/floor.py",
           "benchmarks/side_by_side.py")


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


def setup(g: dict, variants=VARIANTS, samples: int = 1, device="cpu"):
    """The networks (the same weights), their inputs (``samples`` time samples), and one training step of
    each of ``variants``, on ``device``. gnnddm takes the samples as a batch on one graph; the reference as
    PyG's mini-batch, the disjoint union of ``samples`` copies."""
    import torch

    from gnnddm.models.encode_process_decode import EncodeProcessDecode
    from gnnddm.models.execution import set_precision
    from gnnddm.models.graph import prepare_graph

    torch.set_num_threads(2)
    torch.manual_seed(0)
    n = g["num_nodes"]
    graph = prepare_graph(g["edge_index"], n, edge_attr=g["edge_attr"]).to(device)
    ours = EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                               processor_layers=PROCESSOR_LAYERS).to(device)
    x, y = torch.randn(samples, n, F_IN, device=device), torch.randn(samples, n, F_OUT, device=device)
    steps, forwards = {}, {}
    if VARIANTS[0] in variants:
        steps[VARIANTS[0]] = adam_step(ours, lambda: ours(x, graph), y)
        forwards[VARIANTS[0]] = lambda: ours(x, graph)
    if VARIANTS[1] in variants:
        light = EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                                    processor_layers=PROCESSOR_LAYERS, recompute=True).to(device)
        light.load_state_dict(ours.state_dict())
        steps[VARIANTS[1]] = adam_step(light, lambda: light(x, graph), y)
        forwards[VARIANTS[1]] = lambda: light(x, graph)
    if VARIANTS[3] in variants:  # trainer.precision=bf16: the dense products in bf16
        low = EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                                  processor_layers=PROCESSOR_LAYERS).to(device)
        low.load_state_dict(ours.state_dict())
        set_precision(low, "bf16")
        steps[VARIANTS[3]] = adam_step(low, lambda: low(x, graph), y)
        forwards[VARIANTS[3]] = lambda: low(x, graph)
    if VARIANTS[2] in variants:
        ref = reference(ours)
        edges = {kind: tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device)
                 for kind, v in pyg_edges(g, samples).items()}

        def run_ref():
            return ref(x.reshape(samples * n, F_IN), edges).view(samples, n, F_OUT)

        steps[VARIANTS[2]] = adam_step(ref, run_ref, y)
        forwards[VARIANTS[2]] = run_ref
    return steps, forwards


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


def reference_flops(g: dict, samples: int) -> int:
    """The reference step's dense-product FLOPs, counted on the meta device (shapes alone: no memory, no
    arithmetic), for a size at which the reference does not fit."""
    import torch

    from gnnddm.models.encode_process_decode import EncodeProcessDecode

    n = g["num_nodes"]
    ref = reference(EncodeProcessDecode(F_IN, F_OUT, g["edge_attr"].shape[1], hidden=HIDDEN,
                                        processor_layers=PROCESSOR_LAYERS)).to("meta")
    edges = {kind: tuple(t.to("meta") for t in v) if isinstance(v, tuple) else v.to("meta")
             for kind, v in pyg_edges(g, samples).items()}
    x = torch.empty(samples * n, F_IN, device="meta")
    return dense_flops(adam_step(ref, lambda: ref(x, edges), torch.empty(samples * n, F_OUT, device="meta")))


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
    ap.add_argument("--device", default="cpu", help="torch device of the networks (default cpu)")
    ap.add_argument("--output", type=Path, help="page to write the floor table into (docs/performance.md)")
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
    command = shlex.join(["python3", "benchmarks/bench_mesh_model.py", *(argv if argv is not None else sys.argv[1:])])
    stamp = results_blocks.stamp(SOURCES, command)  # the code as the run starts
    cuda = args.device.startswith("cuda")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.pt")
        print(child("--save-graph", path, "--resolution", str(args.resolution), "--refinement",
                    str(args.refinement)), end="", flush=True)
        memory = {}
        if cuda:  # the children measure host memory, and CUDA cannot start under an address-space limit
            print(f"  host memory not measured on {args.device}", flush=True)
        else:
            memory = {name: memory_child(path, name, limit, args.samples) for name in variants}
        for name, m in memory.items():
            text = m if isinstance(m, str) else (f"{m[1]:.2f} GB (one step in a fresh process; {m[0]:.2f} GB "
                                                 "before the step: graph, weights, inputs)")
            print(f"  {name:<20} peak memory {text}", flush=True)
        if args.no_timing:
            return 0
        fits = [v for v in variants if not isinstance(memory.get(v), str)]

        import torch

        g = torch.load(path)
        steps, forwards = setup(g, fits, args.samples, args.device)
    ref = VARIANTS[2]
    with torch.no_grad():
        outs = {k: f() for k, f in forwards.items()}
    diffs = ", ".join(f"{k} {float((outs[k] - outs[ref]).abs().max()):.2e}" for k in outs if k != ref
                      and ref in outs)
    steps, flops = instrument(steps, args.device)
    times = interleave(steps, args.iters)
    if ref in variants and ref not in flops:
        flops[ref] = reference_flops(g, args.samples)
    setup_line = (f"encode-process-decode, {args.resolution:g} deg, refinement {args.refinement}, hidden {HIDDEN}, "
                  f"{PROCESSOR_LAYERS} processor layers, {args.samples} sample(s), 2 threads, {args.device}")
    print(f"{setup_line}; outputs differ from the reference's by at most: {diffs or '(no reference)'}")
    print_medians(times)
    if VARIANTS[0] in flops and ref in flops:
        print(f"  dense products per step: gnnddm {flops[VARIANTS[0]] / 1e9:.1f} GFLOP, PyG {flops[ref] / 1e9:.1f} "
              f"GFLOP: {flops[VARIANTS[0]] / flops[ref]:.2f}x (the floor of the ratio on products)")
    for name in (v for v in times if v != ref):
        if ref not in times:
            print(f"  {name} / PyG: no reference run (it did not fit or was not asked for)")
            continue
        speed = ratio(times, name, ref)
        fastest = min(times[name]) / min(times[ref])
        print(f"  {name} / PyG: {speed:.2f}x (median of per-round ratios; goal <= {GOAL:.2f}x: "
              f"{'met' if speed <= GOAL else 'NOT met'}); fastest steps: {fastest:.2f}x (on a shared machine the "
              "least disturbed)")
    rates = measure_rates(g["num_nodes"], HIDDEN, args.device)
    table = floor_table({k: statistics.median(v) for k, v in times.items()}, flops, rates, ref)
    print("\n".join(table))
    if VARIANTS[0] in times and ref in times:
        floor = rates.floor(flops[VARIANTS[0]]) / statistics.median(times[ref])
        print(f"  gnnddm's float32 floor is {floor:.2f}x of PyG's measured step: the lowest ratio that this "
              "machine's float32 products allow")
    if args.output:
        skipped = [v for v in variants if v not in times]
        note = (f" {', '.join(skipped)}: not timed (did not fit in {limit:.0f} GB); products counted on the meta "
                "device." if skipped else "")
        body = [f"{setup_line}; medians of {args.iters} interleaved steps after a warm-up.{note}", "", *table]
        results_blocks.write_block(args.output, "bench_mesh_model",
                                   f"{torch.device(args.device).type}-{args.resolution:g}deg-r{args.refinement}",
                                   "\n".join(body), stamp, "# Performance")
        print(f"  wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
