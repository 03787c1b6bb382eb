"""How large exact overlaps get on the joint grid + mesh graph: halo ratio against the processor depth L and
the multi-mesh, for the encoder-processor-decoder model (``graph=icosahedral``, ``partition=mesh``).

For each mesh (multi-mesh on / off) and each depth L, the exact overlap is L + 2 hops (the encoder and the
decoder pass messages too); the joint graph of the ERA5 1 deg sample (65,160 grid nodes) with a refined
icosahedron is partitioned by the mesh into ``--parts`` parts and the overlaps are built on the joint graph.
Printed: the halo ratio Σ_k |H_k| / N (the redundant work and memory of the overlaps: 1.0 = every subdomain
computes as many halo nodes as the whole graph has nodes), the largest subdomain as a share of the graph,
and the edge cut. The long edges of the multi-mesh's coarse levels shorten every path, so an overlap of
L + 2 hops reaches much farther with them.

    python3 benchmarks/bench_mesh_partition.py
    python3 benchmarks/bench_mesh_partition.py --refinement 5 --parts 16 --depths 2,4,8,16
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="sample:era5_sample_1deg.nc")
    ap.add_argument("--refinement", type=int, default=4)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--depths", default="1,2,4,8,16", help="processor layers L (overlap L + 2)")
    args = ap.parse_args(argv)

    from gnnddm.data.grid import load_grid
    from gnnddm.data.normalise import normalise, split_times
    from gnnddm.graph.icosahedral import icosahedral_graph
    from gnnddm.partition.mesh import partition

    raw = load_grid(args.data, variables=["t2m"])
    data = normalise(raw, split_times(raw.times).train)
    print(f"{data.source}: {data.num_nodes} grid nodes; mesh refinement {args.refinement}, p = {args.parts} "
          "(partition=mesh)")
    print("\n| mesh | L | overlap | halo ratio | largest subdomain / N | edge cut |\n|---|---|---|---|---|---|")
    for multimesh in (False, True):
        joint = icosahedral_graph(data, refinement=args.refinement, multimesh=multimesh)
        label = "multi-mesh" if multimesh else "finest level"
        for depth in (int(d) for d in args.depths.split(",")):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # halos covering the graph are what is measured
                part = partition(joint, num_parts=args.parts, overlap=depth + 2)
            largest = max(len(s.nodes) for s in part.subdomains) / joint.num_nodes
            m = part.metrics
            print(f"| {label} | {depth} | {depth + 2} | {m['halo_ratio']:.3f} | {largest:.2f} | {m['edge_cut']} |"
                  f"  ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
