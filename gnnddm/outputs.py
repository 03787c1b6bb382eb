"""Where a command writes, and writing files so that a crash never leaves a half-written one."""

from __future__ import annotations

import contextlib
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
    text = json.dumps(payload, indent=2, default=_plain) + "\n"
    _atomic(Path(path), lambda tmp: tmp.write_text(text))


def save_torch(obj, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename (serialised in memory first, so that a failed
    write is the operating system's error, not torch's stream error)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic(Path(path), lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def save_figure(fig, path: Path, **savefig) -> None:
    """A matplotlib figure as PNG, through a temporary file and a rename."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    _atomic(Path(path), lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``: the old file stays whole until the new one is. A
    failure (a full disk, a read-only folder) removes the temporary file and is one :class:`OutputError`
    naming ``path`` and the cause."""
    from gnnddm.errors import OutputError

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = f"{exc.strerror} (errno {exc.errno})" if exc.strerror else str(exc)
        raise OutputError(f"cannot write {path}: {cause}") from None
