"""Where a command writes, and writing files so that a crash never leaves a half-written one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf


def output_dir(cfg: DictConfig) -> Path:
    """``cfg.output_dir`` if set, else Hydra's run directory, else the working directory (created)."""
    configured = OmegaConf.select(cfg, "output_dir", default=None)
    if configured:
        path = Path(str(configured))
    else:
        try:
            from hydra.core.hydra_config import HydraConfig

            path = Path(HydraConfig.get().runtime.output_dir)
        except ValueError:  # not running under a Hydra main
            path = Path.cwd()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from gnnddm.errors import ConfigError

        raise ConfigError(f"output_dir={path}: the folder cannot be created ({exc.strerror or exc}); "
                          "choose a writable folder") from None
    return path.resolve()


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else str(value)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)


def save_torch(obj, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
