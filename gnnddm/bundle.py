"""``model.pt``: what a trained model needs to be used again (written by ``gnnddm train``).

A bundle holds, besides the weights, everything needed to rebuild the model and to check that data
given to it is the data it was trained on:

- ``model``: the state dict; ``iteration``: the outer iteration it was saved at; ``config``: the resolved
  configuration of the run;
- ``variables`` and ``units`` (the order of the model's output channels); ``normalisation``: the
  per-variable ``mean`` and ``std`` the data was normalised with (``X_physical = X * std + mean``);
- ``graph``: kind, number of nodes and edges, edge feature names and dimension, the ``graph`` config
  section and a fingerprint of the edges (:func:`graph_fingerprint`);
- ``task``: name, class, input and output channels and its parameters (lead, history, hide fraction, ...);
- ``architecture``: the model class, its hyper-parameters (the ``model`` config section) and its number
  of parameters;
- ``versions``: gnnddm, torch, torch_geometric, numpy, python and the git commit; ``run_id``: the MLflow
  run that trained it, when known.

Loading never runs code from the file. Only plain containers, numbers, strings and tensors are stored, so
:func:`load_model` reads it with ``torch.load(weights_only=True)`` (:func:`read_torch`), which refuses any
other object a pickle could build. The stored configuration is what ``gnnddm evaluate`` builds the data,
graph, task and model from, and building a section calls its ``_target_``: :func:`load_model` therefore
accepts it only when every ``_target_`` in it, at any depth, is one of gnnddm's components at its key and
the whole passes the schema (:func:`gnnddm.schema.validate.validate_file`); a file that names anything
else (``builtins.open``, ``torch.load``) is refused with one error naming the file and the key.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gnnddm.errors import DataError
from gnnddm.outputs import save_torch
from gnnddm.schema.validate import validate_file

FORMAT = "gnnddm.model"
#: 1: weights, iteration and config only (gnnddm before the bundle); 2: the fields listed above
VERSION = 2
_FIELDS = ("model", "iteration", "config", "variables", "units", "normalisation", "graph", "task",
           "architecture", "versions")


def graph_fingerprint(edge_index, num_nodes: int) -> str:
    """A short hash of the number of nodes and the edges, in their order (int64 [2, E])."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(num_nodes).tobytes())
    if edge_index is not None:
        h.update(np.ascontiguousarray(edge_index, dtype=np.int64).tobytes())
    return h.hexdigest()


def save_model(path: Path, model, cfg: DictConfig, data, task, iteration: int, run_id: str | None = None) -> None:
    """Write the bundle of ``model`` trained on ``data`` (normalised, with its graph) for ``task`` to ``path``
    (atomically); ``run_id``: the MLflow run that trained it."""
    config = OmegaConf.to_container(cfg, resolve=True)
    save_torch({
        "format": FORMAT,
        "version": VERSION,
        "model": model.state_dict(),
        "iteration": int(iteration),
        "config": config,
        "variables": list(data.variables),
        "units": list(data.units),
        "normalisation": {"mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]},
        "graph": {
            "kind": data.kind,
            "num_nodes": int(data.num_nodes),
            "num_edges": int(data.num_edges),
            "edge_dim": 0 if data.edge_attr is None else int(data.edge_attr.shape[1]),
            "edge_attr_names": list(data.edge_attr_names),
            "fingerprint": graph_fingerprint(data.edge_index, data.num_nodes),
            "config": config.get("graph"),
        },
        "task": {
            "name": task.name,
            "class": _qualname(task),
            "in_channels": int(task.in_channels),
            "out_channels": int(task.out_channels),
            **{k: getattr(task, k) for k in ("history", "lead", "hide_fraction", "split_by") if hasattr(task, k)},
            "config": config.get("task"),
        },
        "architecture": {
            "class": _qualname(model),
            "hyperparameters": {k: v for k, v in (config.get("model") or {}).items() if not k.startswith("_")},
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "versions": _versions(),
        "run_id": run_id,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }, path)


@dataclass(frozen=True, eq=False)
class Bundle:
    """A model file read by :func:`load_model` (see the module docstring for the fields)."""

    path: Path
    state_dict: dict
    iteration: int
    config: dict
    variables: tuple[str, ...]
    units: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    graph: dict
    task: dict
    architecture: dict
    versions: dict
    run_id: str | None
    saved_at: str | None = None

    @property
    def cfg(self) -> DictConfig:
        """The training run's configuration (a fresh copy, to override freely)."""
        return OmegaConf.create(self.config)

    def differences(self, data) -> list[str]:
        """How ``data`` (normalised, with its graph) differs from the data the model was trained on: one
        phrase per difference, none when the model can be used on it.

        Normalisation statistics agree when they differ by at most 1e-6 of |mean| + std (the same data
        rebuilt on another machine may differ in the last bits).
        """
        if tuple(data.variables) != self.variables:
            return [f"variables {list(self.variables)} in the model, {list(data.variables)} now"]
        out = [f"units of {v}: {a!r} in the model, {b!r} now"
               for v, a, b in zip(self.variables, self.units, data.units, strict=True) if a != b]
        scale = np.abs(self.mean) + self.std
        for name, saved, now in (("mean", self.mean, data.mean), ("std", self.std, data.std)):
            now = np.asarray(now, dtype=np.float64)
            for i in np.flatnonzero(np.abs(now - saved) > 1e-6 * scale):
                out.append(f"normalisation {name} of {self.variables[i]}: {saved[i]:.6g} in the model, "
                           f"{now[i]:.6g} now")
        g = self.graph
        edge_dim = 0 if data.edge_attr is None else int(data.edge_attr.shape[1])
        for key, now in (("kind", data.kind), ("num_nodes", data.num_nodes), ("num_edges", data.num_edges),
                         ("edge_dim", edge_dim)):
            if g[key] != now:
                out.append(f"graph {key}: {g[key]} in the model, {now} now")
        if not any(s.startswith("graph") for s in out) and \
                g["fingerprint"] != graph_fingerprint(data.edge_index, data.num_nodes):
            out.append("graph edges: the same numbers of nodes and edges, other edges")
        return out


def load_model(path) -> Bundle:
    """Read a bundle written by :func:`save_model`; a :class:`DataError` naming the file when it is missing,
    unreadable, or written by a gnnddm that did not store the bundle's fields, a :class:`ConfigError` naming
    the file and the key when its configuration names anything but gnnddm's components or is not valid."""
    path = Path(path)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {where}; give the output folder of a finished `gnnddm train` run, which holds "
                        "model.pt")
    raw = read_torch(path, "gnnddm model file", map_location="cpu")
    if not isinstance(raw, dict) or "model" not in raw:
        raise DataError(f"{path}: not a gnnddm model file (no weights)")
    version = raw.get("version", 1)
    if raw.get("format") != FORMAT or not isinstance(version, int) or version < VERSION:
        missing = [k for k in _FIELDS if k not in raw]
        raise DataError(f"{path}: written by an older gnnddm, without {', '.join(missing) or 'the bundle format'}; "
                        "retrain the model with this version to evaluate it")
    if version > VERSION:
        raise DataError(f"{path}: written by a newer gnnddm (model file version {version}, this one reads "
                        f"{VERSION}); upgrade gnnddm")
    missing = [k for k in _FIELDS if k not in raw]
    if missing:
        raise DataError(f"{path}: incomplete model file, without {', '.join(missing)}")
    config = validate_file(raw["config"], path)
    norm = raw["normalisation"]
    return Bundle(
        path=path, state_dict=raw["model"], iteration=int(raw["iteration"]), config=config,
        variables=tuple(raw["variables"]), units=tuple(raw["units"]),
        mean=np.asarray(norm["mean"], dtype=np.float64), std=np.asarray(norm["std"], dtype=np.float64),
        graph=raw["graph"], task=raw["task"], architecture=raw["architecture"], versions=raw["versions"],
        run_id=raw.get("run_id"), saved_at=raw.get("saved_at"),
    )


def read_torch(path: Path, what: str, map_location=None):
    """``torch.load(path, weights_only=True)``: plain containers, numbers, strings and tensors, never code.

    A :class:`DataError` naming the file when torch cannot read it, or when the pickle asks for anything
    else (a class, a function such as ``os.system`` in a ``__reduce__``); ``what`` names the kind of file.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a truncated or foreign file
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        # a refused pickle: torch's own line says what it would have run, the rest is advice to trust the file
        reason = next((line.split("error:", 1)[1].split(". ")[0].strip() for line in lines
                       if "WeightsUnpickler error:" in line), lines[0])
        raise DataError(f"{path}: not a readable {what} ({reason[:200]})") from None


def _qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _versions() -> dict[str, str]:
    from importlib import metadata

    import gnnddm
    from gnnddm.training.tracking import git_commit

    out = {"gnnddm": gnnddm.__version__, "python": platform.python_version(), "git_commit": git_commit()}
    for dist in ("torch", "torch_geometric", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
