"""Runs of ``gnnddm`` in tests: the overrides of a tiny training run, defined once; the console script in a
subprocess; a command refused as an input error.

:data:`TINY_RUN` is the problem the end-to-end tests train on: the synthetic 5.625 deg grid (2,048 nodes),
40 six-hourly steps, a model of 8 hidden channels and 2 layers, no progress bar. A test adds what it is
about (the partition, the number of iterations, where the run is logged) with :func:`tiny_run`.

>>> tiny_run("partition.num_parts=2", "model.hidden=16")[-3:]
['trainer.progress=false', 'partition.num_parts=2', 'model.hidden=16']
>>> "model.hidden=8" in tiny_run("model.hidden=16")
False
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["TINY_RUN", "TWO_ITERATIONS", "cli_error", "run_cli", "tiny_run", "tiny_run_in"]

#: the overrides of the tiny run (no partition, iteration count or output: the caller's choice)
TINY_RUN: tuple[str, ...] = (
    "data=synthetic", "data.resolution=5.625", "data.steps=40", "model.hidden=8", "model.layers=2",
    "trainer.progress=false",
)


def _then(base, extra) -> list[str]:
    """``base`` followed by ``extra``, less the overrides of ``base`` whose key ``extra`` sets again."""
    keys = {o.split("=", 1)[0] for o in extra}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(extra)


def tiny_run(*extra: str) -> list[str]:
    """:data:`TINY_RUN` followed by ``extra``; an override in ``extra`` of a key that :data:`TINY_RUN` sets
    replaces it (``tiny_run("model.hidden=16")`` holds one ``model.hidden``)."""
    return _then(TINY_RUN, extra)


#: the console-script tests' run: 2 subdomains, 2 iterations, validated after each
TWO_ITERATIONS: tuple[str, ...] = tuple(
    tiny_run("partition.num_parts=2", "trainer.max_iterations=2", "trainer.eval_every=1"))


def tiny_run_in(folder: Path, *extra: str, out: str = "out") -> list[str]:
    """The tiny run with SAGE on 2 subdomains of 2-hop overlap, 4 iterations validated every 2, logged to
    ``folder/mlflow.db`` and written to ``folder/out``; then ``extra``, which replaces what sets the same key."""
    return _then(tiny_run(
        "model=sage", "partition.num_parts=2", "partition.overlap=2", "trainer.max_iterations=4",
        "trainer.eval_every=2", f"tracking.uri=sqlite:///{folder}/mlflow.db", f"output_dir={folder / out}",
    ), extra)


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``gnnddm *args`` in ``cwd`` (the console script, else ``python -m gnnddm``), output captured as text,
    matplotlib on its non-interactive backend."""
    exe = shutil.which("gnnddm")
    cmd = [exe] if exe else [sys.executable, "-m", "gnnddm"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _loggers() -> list[logging.Logger]:
    """The root logger and every named one that exists now."""
    return [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict))]


@contextlib.contextmanager
def _handlers_restored():
    """Every logger's handlers as they were on entry, once the block has run (loggers created inside the
    block included)."""
    before = {id(log): list(log.handlers) for log in _loggers()}
    try:
        yield
    finally:
        for log in _loggers():
            for handler in [h for h in log.handlers if h not in before.get(id(log), [])]:
                log.removeHandler(handler)
                handler.close()


def cli_error(capsys, argv: list[str], *words: str) -> str:
    """Run ``gnnddm argv`` in this process and check that it is refused as an input error: exit status 2 and
    one line on stderr, ``gnnddm: error: ...`` without a traceback, naming each of ``words``; returns the line.

    ``capsys`` is pytest's fixture of that name. The logging handlers the command adds (a run's log file, its
    stream handler on the captured stderr) are removed afterwards: left in place, they would write later
    tests' log records to a stream that capsys has closed.
    """
    from gnnddm.cli import main

    capsys.readouterr()
    with _handlers_restored():
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnddm: error: ") and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err
