"""``gnnddm data ...``: see how a file will be read, and write synthetic data sets.

``gnnddm data info PATH [--kind grid|mesh|stations] [--verbose]``
    Print the detected layout and kind, variables with units and long names, node count, grid shape,
    time span, missing-value fraction and the loader's warnings.
``gnnddm data synth --resolution R --steps T [--seed S] [--dt-hours H] [--start DATE] --output PATH``
    Write a synthetic series (see :mod:`gnnddm.data.synthetic`) to a netCDF file, or to a zarr store
    when PATH ends in ``.zarr``; time step by time step, so a series larger than memory can be written.

Errors caused by the input end with ``gnnddm: error: <message>`` on stderr and exit status 2 (with the
traceback only under ``--verbose``).
"""

from __future__ import annotations

import argparse
import sys
import traceback

from gnnddm.data.info import describe, load
from gnnddm.errors import DataError, GnnddmError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnnddm data", description="Inspect and prepare gnnddm data sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print how a file will be read")
    info.add_argument("path", help='a file, a zarr store, or "sample:NAME"')
    info.add_argument("--kind", choices=("grid", "mesh", "stations"), default=None,
                      help="how to read the file (default: detected)")
    info.add_argument("--verbose", action="store_true", help="per-variable statistics; tracebacks on errors")
    synth = sub.add_parser("synth", help="write a synthetic data set")
    synth.add_argument("--resolution", type=float, required=True, help="grid spacing in degrees (divides 180)")
    synth.add_argument("--steps", type=int, required=True, help="number of time steps")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--dt-hours", type=float, default=6.0, help="time step in hours")
    synth.add_argument("--start", default="2000-01-01", help="first time stamp")
    synth.add_argument("--output", required=True,
                       help="netCDF file to write, or zarr store when the path ends in .zarr")
    synth.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    return parser


def main(argv: list[str]) -> int:
    """Run ``gnnddm data`` with the arguments that follow ``data``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            print(describe(load(args.path, args.kind), verbose=args.verbose))
        else:
            write_synthetic(args)
    except GnnddmError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"gnnddm: error: {exc}", file=sys.stderr)
        return 2
    return 0


def write_synthetic(args) -> None:
    from gnnddm.data.synthetic import grid_coords, write

    lat, lon = grid_coords(args.resolution)
    try:
        path = write(args.output, resolution=args.resolution, steps=args.steps, seed=args.seed,
                     dt_hours=args.dt_hours, start=args.start)
    except OSError as exc:
        raise DataError(f"--output {args.output}: cannot be written ({exc})") from exc
    files = path.rglob("*") if path.is_dir() else [path]
    size = sum(f.stat().st_size for f in files if f.is_file()) / 2**20
    print(f"wrote {path}: {args.steps} steps every {args.dt_hours:g} h from {args.start}, grid "
          f"{lat.size} x {lon.size} ({lat.size * lon.size} nodes), seed {args.seed}, {size:.1f} MiB")
