"""Resolve data paths, including the real sample files shipped in the repository's ``data/`` folder.

A path written ``sample:NAME`` (e.g. ``sample:era5_sample_1deg.nc``) names a file of that folder; the
folder is found next to the package (source checkout, editable install) or through ``GNNDDM_DATA_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from gnnddm.errors import DataError

PREFIX = "sample:"


def sample_dir() -> Path:
    env = os.environ.get("GNNDDM_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"


def resolve_path(path, must_exist: bool = True) -> Path:
    """The file a config value names; a :class:`DataError` naming it if it does not exist."""
    if path is None or str(path).strip() == "":
        raise DataError("data.path: no file given")
    s = str(path)
    if s.startswith(PREFIX):
        p = sample_dir() / s[len(PREFIX) :]
        if must_exist and not p.exists():
            raise DataError(
                f"data.path: sample file {s!r} not found in {sample_dir()} "
                "(set GNNDDM_DATA_DIR to the folder holding gnnddm's data/ files)"
            )
        return p
    p = Path(s).expanduser()
    if must_exist and not p.exists():
        raise DataError(f"data.path: file not found: {p}")
    return p
