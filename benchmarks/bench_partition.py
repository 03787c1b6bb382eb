"""Partition benchmarks: speed on a 0.25° grid and quality on the ERA5 1° grid.

(a) METIS + a delta = 2 overlap for p = 64 on the 0.25° global grid (721 x 1440 = 1,038,240 nodes,
    8-neighbour stencil, ~8.3M directed edges): seconds and peak resident memory against the target of
    15 s and 4 GB.
(b) Edge-cut fraction, halo ratio (delta = 1) and imbalance for p in {4, 16, 64} on the ERA5 1° grid
    (181 x 360 = 65,160 nodes) for every partitioner, printed as a markdown table and written as
    a generated block into docs/partition_quality.md and README.md.

Edge weights in both: a Gaussian kernel of the great-circle edge length, ``exp(-d² / (2 s²))`` with ``s``
the median edge length, so near the poles (short east-west edges) the coupling is strong.

Run from the repository root::

    python3 benchmarks/bench_partition.py            # both
    python3 benchmarks/bench_partition.py --only b   # quality table only
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from gnnddm.config import options
from gnnddm.graph.grid import grid_edges
from gnnddm.graph.sphere import haversine
from gnnddm.partition import build_partition, get_partitioner
from gnnddm.partition.metis import metis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_blocks  # noqa: E402

TARGET_SECONDS = 15.0
TARGET_GB = 4.0
ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python3 benchmarks/bench_partition.py --only b"
# What the quality table measures (fingerprinted into its block's marker: benchmarks/results_blocks.py).
SOURCES = ("gnnddm/partition", "gnnddm/graph/grid.py", "gnnddm/graph/sphere.py", "benchmarks/bench_partition.py")


def global_grid(resolution: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(edge_index, edge_weight, lat, lon) of the global grid with poles included, north first."""
    nlat, nlon = int(round(180 / resolution)) + 1, int(round(360 / resolution))
    lat = np.repeat(90.0 - resolution * np.arange(nlat), nlon)
    lon = np.tile(-180.0 + resolution * np.arange(nlon), nlat)
    ei = grid_edges(nlat, nlon, neighbours=8)
    d = haversine(lat[ei[0]], lon[ei[0]], lat[ei[1]], lon[ei[1]])
    s = np.median(d)
    w = np.exp(-0.5 * (d / s) ** 2).astype(np.float32)
    return ei, w, lat, lon


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def bench_speed() -> None:
    ei, w, lat, lon = global_grid(0.25)
    n = lat.size
    print(f"(a) 0.25° grid: {n:,} nodes, {ei.shape[1]:,} directed edges, p = 64, delta = 2")
    t0 = time.perf_counter()
    parts = metis(ei, n, 64, edge_weight=w, seed=0)
    t1 = time.perf_counter()
    part = build_partition(ei, n, parts, overlap=2, edge_weight=w, method="metis", num_parts=64)
    t2 = time.perf_counter()
    total, mem = t2 - t0, peak_gb()
    print(f"    METIS {t1 - t0:.2f} s + overlap/metrics {t2 - t1:.2f} s = {total:.2f} s "
          f"(target < {TARGET_SECONDS:.0f} s: {'met' if total < TARGET_SECONDS else 'MISSED'})")
    print(f"    peak resident memory of the process {mem:.2f} GB "
          f"(target < {TARGET_GB:.0f} GB: {'met' if mem < TARGET_GB else 'MISSED'})")
    m = part.metrics
    print(f"    edge cut {100 * m['edge_cut_fraction']:.2f} %, halo ratio {m['halo_ratio']:.3f}, "
          f"imbalance {m['imbalance']:.3f}, components {sum(m['components'])}")


def bench_quality() -> tuple[str, int]:
    ei, w, lat, lon = global_grid(1.0)
    n = lat.size
    rows = ["| p | method | edge cut fraction | halo ratio (δ=1) | imbalance | seconds |",
            "|---:|---|---:|---:|---:|---:|"]
    cut = {}
    for p in (4, 16, 64):
        # partition=mesh partitions the joint grid + mesh graph of graph=icosahedral only (it needs edge kinds)
        for name, fn in ((n, get_partitioner(n)) for n in options("partition") if n != "mesh"):
            t0 = time.perf_counter()
            parts = fn(ei, n, p, edge_weight=w, lat=lat, lon=lon, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # random parts are disconnected by design
                m = build_partition(ei, n, parts, 1, edge_weight=w, method=name, num_parts=p).metrics
            dt = time.perf_counter() - t0
            cut[p, name] = m["edge_cut_fraction"]
            rows.append(f"| {p} | {name} | {m['edge_cut_fraction']:.4f} | {m['halo_ratio']:.4f} | "
                        f"{m['imbalance']:.3f} | {dt:.2f} |")
    table = "\n".join(rows)
    print(f"(b) ERA5 1° grid: {n:,} nodes, {ei.shape[1]:,} directed edges\n{table}")
    for p in (4, 16, 64):
        ratio = cut[p, "metis"] / cut[p, "random"]
        print(f"    p = {p}: METIS cut / random cut = {ratio:.3f} (reference: < 0.2)")
    return table, int(ei.shape[1])


def write_doc(table: str, stamp: results_blocks.Stamp) -> None:
    """The quality table as the generated block ``bench_partition:quality`` of docs/partition_quality.md and of
    README.md (the rest of both pages is kept)."""
    for path in (ROOT / "docs" / "partition_quality.md", ROOT / "README.md"):
        results_blocks.write_block(path, "bench_partition", "quality", table, stamp,
                                   title="# Partition quality on the ERA5 1° grid")
        print(f"    wrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["a", "b"], help="run one benchmark only")
    args = ap.parse_args(argv)
    if args.only in (None, "a"):
        bench_speed()
    if args.only in (None, "b"):
        stamp = results_blocks.stamp(SOURCES, COMMAND)  # the code as the run starts
        write_doc(bench_quality()[0], stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
