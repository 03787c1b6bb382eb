"""``gnnddm report``: comparison tables and plots from MLflow runs.

    gnnddm report [--tracking-uri URI] (--experiment NAME | --parent RUN_ID | --runs ID [ID ...])
                  [--baseline SPEC] [--target-val-loss X | --target-from SPEC [--target-tol 0.02]]
                  [--group-by algorithm,num_parts,...] [--output DIR] [--no-log]

Writes ``comparison.md``, ``comparison.csv`` and PNG plots into ``--output`` (default ``report/``)
and attaches them to the sweep's parent run. The pieces: :mod:`~gnnddm.report.metrics` (time-to-target
arithmetic), :mod:`~gnnddm.report.records` (run snapshots, specs), :mod:`~gnnddm.report.store`
(reading MLflow), :mod:`~gnnddm.report.tables`, :mod:`~gnnddm.report.plots`,
:mod:`~gnnddm.report.build` (:func:`build_report`, the importable core).
"""

from __future__ import annotations

import argparse
import sys

from gnnddm.errors import GnnddmError

__all__ = ["main", "build_report"]


def build_report(*args, **kwargs) -> dict:
    """See :func:`gnnddm.report.build.build_report` (imported lazily: it pulls in MLflow and matplotlib)."""
    from gnnddm.report.build import build_report as _build

    return _build(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gnnddm report",
        description="Comparison tables and plots (time to target, speedup, efficiency) from MLflow runs.",
    )
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store (default: %(default)s)")
    sel = p.add_mutually_exclusive_group(required=True)
    sel.add_argument("--experiment", help="all training runs of this MLflow experiment")
    sel.add_argument("--parent", metavar="RUN_ID", help="the runs of one sweep, given its parent run id")
    sel.add_argument("--runs", nargs="+", metavar="ID", help="these run ids")
    p.add_argument("--baseline", metavar="SPEC",
                   help="run id or key=value[,key=value] (first match), default: the first algorithm=global run")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--target-val-loss", type=float, metavar="X", help="target validation loss")
    tgt.add_argument("--target-from", metavar="SPEC",
                     help="target = final val_loss of this run x (1 + --target-tol)")
    p.add_argument("--target-tol", type=float, default=0.02, help="relative tolerance (default: %(default)s)")
    p.add_argument("--group-by", default="algorithm,num_parts",
                   help="comma-separated keys ordering rows and forming the groups table (default: %(default)s)")
    p.add_argument("--output", default="report", help="output folder (default: %(default)s)")
    p.add_argument("--no-log", action="store_true", help="do not attach the report to the sweep's parent run")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``gnnddm report``; returns 0 on success, 2 on a user error (message on stderr)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        result = build_report(
            args.tracking_uri,
            experiment=args.experiment,
            parent=args.parent,
            runs=args.runs,
            baseline=args.baseline,
            target_val_loss=args.target_val_loss,
            target_from=args.target_from,
            target_tol=args.target_tol,
            group_by=[k.strip() for k in args.group_by.split(",") if k.strip()],
            output=args.output,
            log=not args.no_log,
        )
    except GnnddmError as exc:
        print(f"gnnddm: error: {exc}", file=sys.stderr)
        return 2
    target = "none" if result["target"] is None else f"val_loss <= {result['target']:.6g}"
    print(f"wrote {result['output'] / 'comparison.md'}, comparison.csv and "
          f"{sum(p.suffix == '.png' for p in result['files'])} plots for {len(result['rows'])} runs "
          f"(target {target})")
    if result["logged_to"]:
        print(f"attached to MLflow run {result['logged_to']} under report/")
    return 0
