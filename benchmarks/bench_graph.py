"""Time and memory of building graphs on the 0.25° global grid (721 × 1440 = 1,038,240 nodes).

Each measurement runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``, which includes
the interpreter, numpy/scipy and the fake data) belongs to that build alone. A build is the full builder call: edges,
edge features ``(dx, dy, distance)``, Gaussian distance weights and ``with_graph``.

Reference: under 10 s and under 4 GB for each of the 8-neighbour grid graph and the kNN (k = 8) graph.
The correlation-weighted build is reported for information (no reference).

    python3 benchmarks/bench_graph.py                   # grid8 and knn8
    python3 benchmarks/bench_graph.py --correlation     # also grid8 with correlation weights (T=24, V=5)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLAT, NLON = 721, 1440
TARGET_SECONDS = 10.0
TARGET_GB = 4.0


def fake_grid(num_times: int = 1, num_vars: int = 1):
    """A :class:`WeatherGraphData` on the 0.25° grid (lat 90..-90, lon 0..359.75) with random fields."""
    from gnnddm.data.weather_graph import WeatherGraphData, wrap_lon

    lat = np.repeat(np.linspace(90.0, -90.0, NLAT), NLON)
    lon = wrap_lon(np.tile(np.arange(NLON) * 0.25, NLAT))
    n = lat.size
    X = np.random.default_rng(0).standard_normal((num_times, n, num_vars), dtype=np.float32)
    return WeatherGraphData(
        kind="grid", lat=lat, lon=lon, area=np.ones(n), X=X, mask=np.ones(X.shape, dtype=bool),
        times=np.arange(num_times).astype("datetime64[h]").astype("datetime64[ns]"),
        variables=tuple(f"v{i}" for i in range(num_vars)), units=("1",) * num_vars,
        static=np.zeros((n, 0), dtype=np.float32), static_names=(), grid_shape=(NLAT, NLON),
    )


CASES = {
    "grid8": (dict(), "gnnddm.graph.build:grid_graph", dict(neighbours=8)),
    "knn8": (dict(), "gnnddm.graph.build:knn_graph", dict(k=8)),
    "grid8-correlation": (dict(num_times=24, num_vars=5), "gnnddm.graph.build:grid_graph",
                          dict(neighbours=8, weights="correlation")),
}
TARGETED = ("grid8", "knn8")


def measure(case: str) -> None:
    """Child process: build one graph, print a JSON line with seconds, edges and peak memory."""
    import importlib

    data_kw, target, kw = CASES[case]
    data = fake_grid(**data_kw)
    module, fn = target.split(":")
    builder = getattr(importlib.import_module(module), fn)
    t0, c0 = time.perf_counter(), time.process_time()
    graph = builder(data, **kw)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert np.isfinite(graph.edge_weight).all() and (graph.edge_weight > 0).all()
    assert np.isfinite(graph.edge_attr).all()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB
    print(json.dumps(dict(case=case, seconds=seconds, cpu=cpu, edges=graph.num_edges, nodes=graph.num_nodes,
                          peak_gb=peak_gb)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--correlation", action="store_true", help="also time correlation weights")
    args = parser.parse_args()
    if args.case:
        measure(args.case)
        return
    cases = ["grid8", "knn8"] + (["grid8-correlation"] if args.correlation else [])
    print(f"graph build on the 0.25 deg grid ({NLAT} x {NLON} = {NLAT * NLON:,} nodes); "
          f"reference: < {TARGET_SECONDS:.0f} s and < {TARGET_GB:.0f} GB peak RSS each")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time grows with load)")
    print(f"{'case':<20}{'edges':>12}{'wall s':>10}{'cpu s':>10}{'peak GB':>10}  verdict")
    for case in cases:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"{case} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ok = r["seconds"] < TARGET_SECONDS and r["peak_gb"] < TARGET_GB
        verdict = "within target" if ok else "OVER TARGET"
        if case not in TARGETED:
            verdict = "(no target; X of 24 steps x 5 vars = 0.5 GB included)"
        print(f"{case:<20}{r['edges']:>12,}{r['seconds']:>10.2f}{r['cpu']:>10.2f}{r['peak_gb']:>10.2f}  {verdict}")


if __name__ == "__main__":
    main()
