"""``model.pt``: what a trained model needs to be used again (written by ``gnnddm train``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gnnddm.outputs import save_torch


def save_model(path: Path, model, cfg: DictConfig, data, task, iteration: int) -> None:
    """Write the model's weights, the iteration and the resolved configuration to ``path`` (atomically)."""
    save_torch({"model": model.state_dict(), "iteration": int(iteration),
                "config": OmegaConf.to_container(cfg, resolve=True)}, path)
