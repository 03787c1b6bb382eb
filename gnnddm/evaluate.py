"""Evaluation on the full graph: loss, per-variable RMSE in physical units, and the task's baseline."""

from __future__ import annotations

import numpy as np
import torch

from gnnddm.tasks import Batch, Task, loss, rmse_per_variable


class Evaluator:
    """Loss and metrics of a model on fixed sets of samples.

    Samples are fixed at construction (interpolation masks drawn once from ``seed``), so successive
    evaluations of a run, and runs of different algorithms with the same seed, see the same samples.
    Losses are averaged over mini-batches of ``batch_size`` samples, each normalised as in training.
    """

    def __init__(self, task: Task, graph, anchors: dict[str, np.ndarray], batch_size: int = 4, seed=0,
                 device="cpu"):
        self.task, self.graph, self.device = task, graph, device
        rng = np.random.default_rng(seed + 7919)
        self.batches = {
            name: [
                task.batch(a[i : i + batch_size], rng).to(device) for i in range(0, len(a), batch_size)
            ]
            for name, a in anchors.items()
            if len(a)
        }

    @torch.no_grad()
    def __call__(self, model, splits=("train", "val")) -> dict[str, float]:
        out = {}
        was_training = model.training
        model.eval()
        for name in splits:
            if name not in self.batches:
                continue
            losses, preds = [], []
            for b in self.batches[name]:
                o = model(b.x, self.graph)
                losses.append(float(loss(o, b)))
                preds.append(b.base + o)
            out[f"{name}_loss"] = float(np.mean(losses))
            if name != "train":
                for var, v in self._rmse(preds, name).items():
                    out[f"{name}_rmse/{var}"] = v
        model.train(was_training)
        return out

    @torch.no_grad()
    def baseline(self, split="val") -> dict[str, float]:
        """RMSE per variable of the task's reference method (persistence / inverse distance)."""
        if split not in self.batches:
            return {}
        preds = [b.base + self.task.baseline(b) for b in self.batches[split]]
        return self._rmse(preds, split)

    def _rmse(self, preds, split) -> dict[str, float]:
        batches = self.batches[split]
        cat = Batch(*(torch.cat([getattr(b, f) for b in batches]) for f in ("x", "y", "w", "base", "truth", "valid")))
        return rmse_per_variable(torch.cat(preds), cat, self.task.data)
