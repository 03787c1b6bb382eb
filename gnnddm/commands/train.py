"""``gnnddm train [+experiment=NAME] [key=value ...]``: train as configured (Hydra; ``-m`` for sweeps).

The run is :func:`gnnddm.training.trainer.train` (its loop: :class:`gnnddm.training.trainer.Trainer`); what a
run prints and leaves is described in docs/runs.md.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from gnnddm.commands.hydra_app import run_hydra_command
    from gnnddm.training import train

    return run_hydra_command("train", train, argv)
