"""Evaluation on the full graph: loss, per-variable RMSE in physical units, and the task's baseline
(:class:`Evaluator`); when a training run evaluates and what follows from it (:class:`Validator`).

With several ranks the evaluation samples are shared out (batch ``i`` to rank ``i mod world_size``):
each rank evaluates its share on the full graph and one sum over ranks gives every rank the same
losses and RMSEs as one process evaluating all of them (up to the order of float64 sums).

The random draws of a split (interpolation masks) come from that split's own generator, seeded from
``(seed, split name)`` (:func:`split_rng`): a split's samples are the same whichever other splits an
evaluator holds, so ``gnnddm evaluate`` scoring the test split alone reproduces the test metrics of the
training run.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import torch

from gnnddm.errors import DataError
from gnnddm.schema.root import TrainerConfig
from gnnddm.tasks import Task, loss, rmse_from_sums, squared_errors
from gnnddm.training.checks import check_finite
from gnnddm.training.runbook import FILE_ONLY
from gnnddm.training.scores import skill, skill_metrics, split_rmse

log = logging.getLogger("gnnddm.train")


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of the random draws of ``split``'s evaluation samples (independent of other splits)."""
    return np.random.default_rng([zlib.crc32(split.encode()), 7919, int(seed) % (1 << 64)])


class Evaluator:
    """Loss and metrics of a model on fixed sets of samples.

    Samples are fixed at construction (interpolation masks drawn once per split from ``(seed, split)``),
    so successive evaluations of a run, runs of different algorithms with the same seed, runs on any
    number of ranks and evaluators holding other splits see the same samples. Losses are averaged over
    mini-batches of ``batch_size`` samples, each normalised as in training.

    Parameters
    ----------
    comm : Communicator, optional
        Shares the batches out over ``comm.world_size`` ranks and sums the results with
        ``comm.sum_control_`` (not accounted as training communication). None: one process does all.
    valid_counts : dict, optional
        Per split, the valid target entries of exactly its samples (:meth:`Task.valid_counts`), where the
        caller counted them already; the rest are counted here.
    """

    def __init__(self, task: Task, graph, anchors: dict[str, np.ndarray], *, batch_size: int = 4, seed=0,
                 device="cpu", comm=None, valid_counts: dict[str, np.ndarray] | None = None):
        self.task, self.graph, self.device, self.comm = task, graph, device, comm
        self.seed, self.batch_size = seed, int(batch_size)
        self.rank, self.world = (0, 1) if comm is None else (int(comm.rank), int(comm.world_size))
        self.anchors = {name: np.asarray(a) for name, a in anchors.items() if len(a)}
        # held in memory, unless the fields stay in their file (gnnddm.data.lazy): then every evaluation
        # reads its samples again, with the same random masks
        self.batches: dict[str, list | None] = {}
        self.num_batches: dict[str, int] = {}
        self.num_samples: dict[str, int] = {}
        for name, a in self.anchors.items():
            # decided on the whole split, the same on every rank: a rank whose share holds no batch (more
            # ranks than batches) or no valid target is normal
            counts = (valid_counts or {}).get(name)  # the caller's counts of exactly these samples
            if not (task.valid_counts(a, name) if counts is None else np.asarray(counts)).any():
                raise DataError(f"{task.data.source}: the {len(a)} {name} evaluation samples hold no valid "
                                f"target, so their loss would be 0 over nothing"
                                + ("; raise trainer.eval_train_samples" if name == "train" else ""))
            self.batches[name] = None if task.data.lazy else list(self._make(name))
            self.num_batches[name] = -(-len(a) // self.batch_size)
            self.num_samples[name] = len(a)

    def _make(self, name: str):
        """This rank's batches of ``name``, in order. Every rank draws every batch's random masks (the same
        as one process), and assembles only its share."""
        a, rng = self.anchors[name], split_rng(self.seed, name)
        for j, i in enumerate(range(0, len(a), self.batch_size)):
            chosen = a[i : i + self.batch_size]
            if j % self.world == self.rank:
                yield self.task.batch(chosen, rng, split=name).to(self.device)
            else:
                self.task.draw(chosen, rng, split=name)

    def _batches(self, name: str):
        return self.batches[name] if self.batches[name] is not None else self._make(name)

    def __call__(self, model, splits=("train", "val")) -> dict[str, float]:
        """``{split}_loss`` for each split and ``{split}_rmse/{variable}`` for all but ``train``."""
        return self._reduce(self.local_sums(model, splits))

    @torch.no_grad()
    def local_sums(self, model, splits=("train", "val")) -> dict[str, torch.Tensor]:
        """This rank's share: per split, float64 [1 + 2V] = (Σ batch losses, Σ m·err² [V], Σ m [V])."""
        was_training = model.training
        model.eval()
        sums = {name: self._sums(name, lambda b: model(b.x, self.graph))
                for name in splits if name in self.num_batches}
        model.train(was_training)
        return sums

    @torch.no_grad()
    def baseline(self, split="val") -> dict[str, float]:
        """RMSE per variable of the task's reference method (persistence / inverse distance)."""
        if split not in self.num_batches:
            return {}
        out = self._reduce({split: self._sums(split, self.task.baseline)})
        return split_rmse(out, split)

    def scores(self, model, split: str = "test") -> dict[str, float]:
        """Everything reported of ``split`` (not ``train``), keyed for :func:`gnnddm.training.tracking.metric_name`.

        ``{split}_loss``; per variable ``{split}_rmse/{v}`` and ``{split}_baseline_rmse/{v}`` (physical
        units) and ``{split}_skill/{v}`` = 100·(1 − rmse / baseline_rmse) in % (NaN where the baseline
        RMSE is 0 or NaN); ``data/samples/{split}``, the number of samples. Empty if the evaluator holds
        no sample of ``split``.
        """
        if split == "train":
            raise ValueError("scores: the train split has no RMSE (see __call__)")
        if split not in self.num_batches:
            return {}
        out = self(model, splits=(split,))
        for var, base in self.baseline(split).items():
            rmse = out[f"{split}_rmse/{var}"]
            out[f"{split}_baseline_rmse/{var}"] = base
            value = skill(rmse, base)
            out[f"{split}_skill/{var}"] = float("nan") if value is None else value
        out[f"data/samples/{split}"] = self.num_samples[split]
        return out

    def _sums(self, name: str, predict) -> torch.Tensor:
        """Σ of the loss and of the RMSE sums over this rank's batches of ``name``; ``predict(batch)`` is
        the prediction in model-output space (added to ``batch.base`` for the state)."""
        total = torch.zeros(1 + 2 * self.task.data.num_vars, dtype=torch.float64, device=self.device)
        for b in self._batches(name):
            o = predict(b)
            total[0] += float(loss(o, b))
            if name != "train":
                total[1:] += squared_errors(b.base + o, b, self.task.data).reshape(-1)
        return total

    def _reduce(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sum every rank's shares (one collective) and turn them into losses and RMSEs."""
        if not sums:
            return {}
        names = list(sums)
        flat = torch.cat([sums[n] for n in names])
        if self.comm is not None and self.comm.world_size > 1:
            self.comm.sum_control_(flat)
        out, i = {}, 0
        for name in names:
            part = flat[i : i + len(sums[name])]
            i += len(sums[name])
            out[f"{name}_loss"] = float(part[0]) / self.num_batches[name]
            if name != "train":
                rmse = rmse_from_sums(part[1:].reshape(2, -1), self.task.data)
                out.update({f"{name}_rmse/{var}": v for var, v in rmse.items()})
        return out


class Validator:
    """When a training run evaluates, and what follows: the divergence check, the skills against the
    baseline and the target validation loss.

    Parameters
    ----------
    evaluator : Evaluator
    config : TrainerConfig
        The validated ``trainer`` section: ``eval_every`` and ``max_iterations`` (the last iteration is
        always evaluated), ``target_val_loss`` (:attr:`reached` once the validation loss is at most this) and
        ``max_loss`` (a larger or non-finite training loss stops the run as diverged).
    baseline : dict
        The summary's ``baseline`` entry (``val_rmse`` per variable), for the skills.
    """

    def __init__(self, evaluator: Evaluator, config: TrainerConfig, baseline: dict):
        self.evaluator, self.config, self.baseline = evaluator, config, baseline
        self.last: dict[str, float] = {}  # the latest evaluation, the same on every rank
        self.reached = False

    def should_validate(self, iteration: int) -> bool:
        return iteration % self.config.eval_every == 0 or iteration == self.config.max_iterations

    def validate(self, model, iteration: int) -> dict[str, float]:
        """Evaluate ``model`` on the training and validation samples; the metrics to log."""
        self.last = self.evaluator(model)
        check_finite(self.last["train_loss"], iteration, self.config.max_loss, "train_loss")
        target = self.config.target_val_loss
        reached = target is not None and self.last["val_loss"] <= target
        comm = self.evaluator.comm
        # rank 0 decides, so that no float difference splits the ranks
        self.reached = comm.agree(reached) if comm is not None else reached
        log.info("iteration %d: val loss %.6g, train loss %.6g", iteration, self.last["val_loss"],
                 self.last["train_loss"], extra=FILE_ONLY)
        return {**self.last, **skill_metrics(self.last, self.baseline, "val")}

    def state_dict(self) -> dict:
        return {"last_eval": self.last}

    def load_state_dict(self, state: dict) -> None:
        self.last = dict(state.get("last_eval", {}))
