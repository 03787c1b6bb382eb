"""Atomic per-rank checkpoints, and finding the latest one that every rank completed.

Each rank writes ``checkpoints/it{iteration:07d}.rank{r}.pt`` through a temporary file and a rename, so a
crash never leaves a half-written file. A checkpoint iteration counts only when all ``world_size``
ranks wrote it; the two newest complete iterations are kept.

Reading a checkpoint never runs code from it: :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``, which builds plain containers, numbers, strings and tensors only, so a
planted file whose pickle would call a function (a ``__reduce__`` payload) is one error naming it. What a
rank saves is of those kinds: the model's and the optimizers' state dicts, the numpy generator's state
(its ``bit_generator.state``, a dict of strings and integers), the torch generator's state (a tensor),
the history and the last evaluation (numbers), the run's configuration as flat ``key: string`` pairs and
the MLflow run's id (a string or None). The configuration is only compared with the resumed run's
(:func:`config_changes`), never built from.

A run's checkpoints are owned by its :class:`CheckpointManager`: when one is due, the one path that
writes them (periodic, on a stop signal and at the end alike), and the state a resumed run starts from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig

from gnnddm.bundle import read_torch
from gnnddm.errors import ConfigError, DataError
from gnnddm.outputs import output_dir, save_torch

_NAME = re.compile(r"^it(\d{7})\.rank(\d+)\.pt$")
KEEP = 2
#: what resuming reads from a rank's state
_STATE = ("iteration", "model", "algorithm", "numpy_rng", "torch_rng")


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_checkpoint(out_dir: Path, rank: int, iteration: int, state: dict) -> Path:
    """Write this rank's state for ``iteration`` atomically and prune old iterations."""
    d = checkpoint_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"it{iteration:07d}.rank{rank}.pt"
    save_torch(state, path)
    _prune(d, rank)
    return path


def _iterations(d: Path) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for p in d.glob("it*.rank*.pt"):
        m = _NAME.match(p.name)
        if m:
            found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return found


def _prune(d: Path, rank: int) -> None:
    mine = sorted(it for it, ranks in _iterations(d).items() if rank in ranks)
    for it in mine[:-KEEP]:
        (d / f"it{it:07d}.rank{rank}.pt").unlink(missing_ok=True)


def latest_checkpoint(out_dir: Path) -> int | None:
    """The newest iteration that every rank of the run in ``out_dir`` checkpointed (None if none)."""
    d = checkpoint_dir(out_dir)
    if not d.is_dir():
        return None
    complete = [it for it, ranks in _iterations(d).items() if ranks == set(range(max(ranks) + 1))]
    return max(complete, default=None)


def has_checkpoint(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds an iteration that every rank of its run (ranks 0 .. highest) checkpointed."""
    return latest_checkpoint(out_dir) is not None


def find_checkpoint(out_dir: Path, rank: int, world_size: int) -> dict | None:
    """This rank's state at the newest iteration that all ranks checkpointed (None if there is none)."""
    d = checkpoint_dir(out_dir)
    if not d.is_dir():
        return None
    complete = [it for it, ranks in _iterations(d).items() if ranks >= set(range(world_size))]
    if not complete:
        return None
    it = max(complete)
    return load_checkpoint(d / f"it{it:07d}.rank{rank}.pt")


def load_checkpoint(path: Path) -> dict:
    """One rank's saved state; a :class:`DataError` naming the file when it is unreadable, holds anything
    but plain data, or lacks what resuming needs."""
    state = read_torch(path, "gnnddm checkpoint")
    missing = [k for k in _STATE if k not in state] if isinstance(state, dict) else list(_STATE)
    if missing:
        raise DataError(f"{path}: not a gnnddm checkpoint (without {', '.join(missing)}); remove it, or start "
                        "afresh in another output_dir")
    return state


def restarted() -> bool:
    """Whether the elastic agent restarted this process or SLURM requeued its job."""
    return (int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
            or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0)


def resuming(cfg: DictConfig) -> bool:
    return cfg.resume or restarted()


def check_resume(cfg: DictConfig) -> None:
    """``resume=true`` needs a complete checkpoint in ``output_dir``: one clear error before anything starts."""
    if not cfg.resume:
        return
    out_dir = output_dir(cfg)
    if not has_checkpoint(out_dir):
        raise ConfigError(f"resume=true: no complete checkpoint in {out_dir}; set output_dir to the folder of "
                          "the run to continue (it must have run with trainer.checkpoint_every > 0 or have ended)")


def config_changes(saved: dict | None, now: dict) -> str:
    """The keys whose values differ between a checkpoint's config and this one, e.g. ``model.hidden: 8 -> 16``."""
    if not saved:
        return "the checkpoint does not record its configuration"
    ignore = ("resume", "output_dir", "trainer.max_iterations", "trainer.progress", "tracking.")
    keys = sorted(k for k in set(saved) | set(now)
                  if saved.get(k) != now.get(k) and not k.startswith(ignore))
    if not keys:
        return "no configuration key differs"
    shown = [f"{k}: {saved.get(k, '-')} -> {now.get(k, '-')}" for k in keys[:8]]
    return "changed: " + "; ".join(shown) + (f"; and {len(keys) - 8} more" if len(keys) > 8 else "")


class CheckpointManager:
    """The checkpoints of one rank of a run: when they are due and the one path that writes them.

    Parameters
    ----------
    out_dir : Path
        The run's output folder (checkpoints go to ``checkpoints/`` in it).
    every : int
        ``trainer.checkpoint_every``: save after every ``every``-th outer iteration and on a stop signal
        (0: neither); the end of a run is saved in every case.
    rank, world_size : int
    resume : bool
        ``resume=true``: :meth:`load` must find a complete checkpoint.
    """

    def __init__(self, out_dir: Path, every: int, rank: int, world_size: int, resume: bool):
        self.out_dir, self.every, self.rank, self.world_size = Path(out_dir), every, rank, world_size
        self.resume = resume

    def should_save(self, iteration: int, last_iteration: int) -> bool:
        """Whether a periodic checkpoint is due after ``iteration`` (the last one is saved by the end)."""
        return bool(self.every) and iteration % self.every == 0 and iteration != last_iteration

    @property
    def on_stop(self) -> bool:
        """Whether a stop signal leaves a checkpoint (runs that checkpoint at all)."""
        return bool(self.every)

    def save(self, iteration: int, state: dict) -> Path:
        """Write this rank's ``state`` of ``iteration`` (the one save path of a run)."""
        return save_checkpoint(self.out_dir, self.rank, iteration, state)

    def load(self) -> dict | None:
        """The state to resume from: the newest complete checkpoint when ``resume`` is set, or when the
        elastic agent restarted us or SLURM requeued the job (``SLURM_RESTART_COUNT`` > 0); None to start
        afresh (a restarted run that failed before its first checkpoint)."""
        again = restarted()
        if not (self.resume or again):
            return None
        state = find_checkpoint(self.out_dir, self.rank, self.world_size)
        if state is None and not again:
            raise ConfigError(f"resume=true: no complete checkpoint in {self.out_dir} (set output_dir to the "
                              "run's folder)")
        return state
