"""Time and memory of writing and loading the synthetic reanalysis on the 0.25° grid (1,038,240 nodes).

Each phase runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``, interpreter and
libraries included) belongs to that phase alone:

* ``write``: :func:`gnnddm.data.synthetic.write` streams ``steps`` time steps to netCDF;
* ``load``: :func:`gnnddm.data.grid.load_grid` reads it into a ``WeatherGraphData``;
* ``reference``: reading the same variables with plain netCDF4 into one float32 array (the floor any
  loader has to pay for I/O and the array itself).

Reference: each phase under 4 GB; loading within a small factor of the plain netCDF4 read.

    python3 benchmarks/bench_synthetic.py                  # 0.25 deg, 8 steps
    python3 benchmarks/bench_synthetic.py --steps 4 --resolution 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_GB = 4.0


def _phase(name: str, path: str, resolution: float, steps: int) -> dict:
    t0 = time.perf_counter()
    if name == "write":
        from gnnddm.data.synthetic import write

        write(path, resolution=resolution, steps=steps, seed=0, chunk_time=4)
        info = {"bytes_on_disk": os.path.getsize(path)}
    elif name == "load":
        from gnnddm.data.grid import load_grid

        data = load_grid(path)
        info = {"nodes": data.num_nodes, "X_bytes": data.X.nbytes, "grid_shape": list(data.grid_shape)}
    else:
        import netCDF4
        import numpy as np

        with netCDF4.Dataset(path) as nc:
            names = ["t2m", "msl", "u10", "v10"]
            x = np.stack([np.asarray(nc[v][:], dtype=np.float32) for v in names], axis=-1)
        info = {"X_bytes": x.nbytes}
    info["seconds"] = time.perf_counter() - t0
    info["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return info


def _run_child(name, path, resolution, steps) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--path", path,
           "--resolution", str(resolution), "--steps", str(steps)]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_phase(args.child, args.path, args.resolution, args.steps)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.nc")
        results = {name: _run_child(name, path, args.resolution, args.steps)
                   for name in ("write", "load", "reference")}
    load, ref, wr = results["load"], results["reference"], results["write"]
    print(f"synthetic {args.resolution} deg grid {load['grid_shape'][0]} x {load['grid_shape'][1]} = "
          f"{load['nodes']:,} nodes, {args.steps} steps, 4 variables "
          f"(X = {load['X_bytes'] / 2**20:.0f} MiB, file {wr['bytes_on_disk'] / 2**20:.0f} MiB)")
    print(f"{'phase':<10} {'seconds':>8} {'peak GB':>8}   reference")
    print(f"{'write':<10} {wr['seconds']:8.2f} {wr['peak_gb']:8.2f}   peak < {TARGET_GB:.0f} GB: "
          f"{'ok' if wr['peak_gb'] < TARGET_GB else 'OVER'}; {wr['seconds'] / args.steps:.2f} s per step")
    print(f"{'load':<10} {load['seconds']:8.2f} {load['peak_gb']:8.2f}   peak < {TARGET_GB:.0f} GB: "
          f"{'ok' if load['peak_gb'] < TARGET_GB else 'OVER'}; {load['seconds'] / ref['seconds']:.1f}x "
          "the plain netCDF4 read")
    print(f"{'netCDF4':<10} {ref['seconds']:8.2f} {ref['peak_gb']:8.2f}   (reference read of the same arrays)")


if __name__ == "__main__":
    main()
