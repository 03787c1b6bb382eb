"""Atomic per-rank checkpoints, and finding the latest one that every rank completed.

Each rank writes ``checkpoints/it{iteration:07d}.rank{r}.pt`` through a temporary file and a rename, so a
crash never leaves a half-written file. A checkpoint iteration counts only when all ``world_size``
ranks wrote it; the two newest complete iterations are kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from gnnddm.outputs import save_torch

_NAME = re.compile(r"^it(\d{7})\.rank(\d+)\.pt$")
KEEP = 2


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
    return torch.load(d / f"it{it:07d}.rank{rank}.pt", weights_only=False)
