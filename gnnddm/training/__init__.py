"""A training run and the components that own its state (as torchtitan's ``components/``).

- :mod:`~gnnddm.training.trainer`: ``train(cfg) -> summary`` and the :class:`~gnnddm.training.trainer.Trainer`,
  whose loop reads as the algorithm: draw a batch, step, log, validate when due, checkpoint when due, stop
  when due.
- :mod:`~gnnddm.training.build`: the run's parts from a composed config (data, task, graph, partition,
  model, communicator, objective, algorithm, evaluator).
- :mod:`~gnnddm.training.checkpoint`: atomic per-rank checkpoints and the
  :class:`~gnnddm.training.checkpoint.CheckpointManager` (when to save, the one save path, resuming).
- :mod:`~gnnddm.training.validate`: the :class:`~gnnddm.training.validate.Evaluator` (losses and RMSEs on
  fixed samples) and the :class:`~gnnddm.training.validate.Validator` (when to evaluate, the target, the
  divergence check).
- :mod:`~gnnddm.training.runbook`: ``summary.json``, the MLflow run, the log and the metric history;
  :mod:`~gnnddm.training.tracking`: the MLflow client.
- :mod:`~gnnddm.training.signals`: stop signals; :mod:`~gnnddm.training.launcher`: the local rank launcher.
- :mod:`~gnnddm.training.labels`, :mod:`~gnnddm.training.checks`, :mod:`~gnnddm.training.scores`: run
  labels, the sanity checks of the set-up, skill.

Everything here sits above the algorithms, models, data and tasks and is imported by the commands; nothing
below imports it (``tests/test_imports.py``). ``train`` is imported on first use, so that the torch-free
modules (:mod:`~gnnddm.training.scores`, :mod:`~gnnddm.training.tracking`) stay cheap to import.
"""

from __future__ import annotations

__all__ = ["train"]


def __getattr__(name: str):
    if name == "train":
        from gnnddm.training.trainer import train

        return train
    raise AttributeError(f"module 'gnnddm.training' has no attribute {name!r}")
