"""Comparison tables and plots from MLflow runs (the command line: :mod:`gnnddm.commands.report`).

    gnnddm report [--tracking-uri URI] (--experiment NAME | --parent RUN_ID | --runs ID [ID ...])
                  [--baseline SPEC] [--target-val-loss X | --target-from SPEC [--target-tol 0.02]]
                  [--group-by algorithm,num_parts,...] [--output DIR] [--no-log]

Writes ``comparison.md``, ``comparison.csv``, ``groups.csv``, ``skill.csv`` and plots (PNG and PDF) into
``--output`` (default ``report/``) and attaches them to the sweep's parent run. The pieces:
:mod:`~gnnddm.report.metrics` (time-to-target, scaling and spread arithmetic),
:mod:`~gnnddm.report.records` (run snapshots, specs, seeds and baselines), :mod:`~gnnddm.report.store`
(reading MLflow), :mod:`~gnnddm.report.tables` (one row per run), :mod:`~gnnddm.report.groups` (seeds
summarised, skill), :mod:`~gnnddm.report.plots`, :mod:`~gnnddm.report.build` (:func:`build_report`,
the importable core).
"""

from __future__ import annotations

__all__ = ["build_report"]


def build_report(*args, **kwargs) -> dict:
    """See :func:`gnnddm.report.build.build_report` (imported lazily: it pulls in MLflow and matplotlib)."""
    from gnnddm.report.build import build_report as _build

    return _build(*args, **kwargs)
