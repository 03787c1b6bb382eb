"""``gnnddm report``: comparison tables and plots from MLflow runs (docs/report.md)."""

from __future__ import annotations

import argparse
import sys

from gnnddm.errors import GnnddmError
from gnnddm.report import build_report
from gnnddm.schema.root import TrackingConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gnnddm report",
        description="Comparison tables and plots (time to target, speedup, efficiency, skill) from MLflow runs.",
    )
    p.add_argument("--tracking-uri", default=TrackingConfig.uri, help="MLflow store (default: %(default)s)")
    sel = p.add_mutually_exclusive_group(required=True)
    sel.add_argument("--experiment", help="all training runs of this MLflow experiment")
    sel.add_argument("--parent", metavar="RUN_ID", help="the runs of one sweep, given its parent run id")
    sel.add_argument("--runs", nargs="+", metavar="ID", help="these run ids")
    p.add_argument("--baseline", metavar="SPEC",
                   help="run id or key=value[,key=value]; a key=value spec picks one baseline per seed "
                        "(default: algorithm=global)")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--target-val-loss", type=float, metavar="X", help="target validation loss")
    tgt.add_argument("--target-from", metavar="SPEC",
                     help="target = final val/loss of this run x (1 + --target-tol)")
    p.add_argument("--target-tol", type=float, default=0.02, help="relative tolerance (default: %(default)s)")
    p.add_argument("--group-by", metavar="KEYS",
                   help="comma-separated keys ordering rows and forming the groups (default: every run label "
                        "that differs among the runs, never the seed)")
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
            group_by=None if args.group_by is None else [k.strip() for k in args.group_by.split(",") if k.strip()],
            output=args.output,
            log=not args.no_log,
        )
    except GnnddmError as exc:
        print(f"gnnddm: error: {exc}", file=sys.stderr)
        return 2
    target = "none" if result["target"] is None else f"val/loss <= {result['target']:.6g}"
    plots = sum(p.suffix == ".pdf" for p in result["files"])
    print(f"wrote {result['output'] / 'comparison.md'}, comparison.csv, groups.csv, skill.csv and "
          f"{plots} plots (PNG and PDF) for {len(result['rows'])} runs in {len(result['groups'])} groups "
          f"by {', '.join(result['group_by']) or 'nothing'} (target {target})")
    if result["logged_to"]:
        print(f"attached to MLflow run {result['logged_to']} under report/")
    return 0
