"""Parameter blocks: the decomposition of a network's parameters that ``apts`` solves in parallel
(docs/algorithms.md, *APTS*).

A block is a set of the model's trainable parameters; the blocks partition them (every parameter in
exactly one). ``ddm.blocks`` chooses them:

- ``layers``: one block per message-passing layer (``model.layer_module(k)``), the encoder's parameters
  with layer 0 and the decoder's (``model.head_modules()``) with the last layer;
- an integer N: N contiguous groups of layers (as even as possible), encoder and decoder as above;
- a list of patterns (:func:`fnmatch.fnmatch` on ``model.named_parameters()`` names): one block per pattern.

Each block knows the first layer its parameters act in (:attr:`ParameterBlock.start`): the states below
that layer do not depend on the block, so a local solve runs the network from there (the forward pass of
the layers below is taken once, at the outer iterate) and its backward pass stops there. The work of one
evaluation of a block is the share of the layers it runs, ``(L − start) / L``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gnnddm.errors import ConfigError

BLOCK_KINDS = ("layers",)


@dataclass(frozen=True, eq=False)
class ParameterBlock:
    """One block: its label, the indices of its parameters (in the order of the algorithm's parameter
    list), their flat coordinates, and the first layer they act in."""

    label: str
    params: tuple[int, ...]
    coords: torch.Tensor  # int64 [P_d], positions in the flat parameter vector
    start: int

    @property
    def size(self) -> int:
        return int(self.coords.numel())


def parameter_layers(model: nn.Module, params: list[torch.Tensor]) -> list[int]:
    """The layer each of ``params`` acts in first: its layer module's (lowest) index; the decoder's (modules
    of ``model.head_modules()``, when the model has any) ``model.head_layer()`` (default the last layer; a
    rollout decodes after its first step); any other parameter (the encoder's) layer 0."""
    if not hasattr(model, "layer_module"):
        raise ConfigError(
            f"ddm.blocks: model {type(model).__name__} does not name its layers' modules (layer_module), so "
            "its parameters cannot be split by layer; use a model of conf/model/ or a list of patterns"
        )
    layers = int(model.num_layers)
    where = {}
    try:
        for k in range(layers):  # a module used by several layers (weights tied) acts first in the lowest
            for p in model.layer_module(k).parameters():
                where.setdefault(id(p), k)
    except AttributeError:
        raise ConfigError(
            f"ddm.blocks: model {type(model).__name__} does not name its layers' modules (layer_module), so its "
            "parameters cannot be split by layer; use a model of conf/model/ or a list of patterns"
        ) from None
    head = int(getattr(model, "head_layer", lambda: layers - 1)())
    for module in getattr(model, "head_modules", lambda: [])():
        for p in module.parameters():
            where.setdefault(id(p), head)
    return [where.get(id(p), 0) for p in params]


def parameter_blocks(model: nn.Module, params: list[torch.Tensor], spec) -> list[ParameterBlock]:
    """The blocks of ``spec`` (``ddm.blocks``: ``layers``, an integer or a list of patterns) over ``params``
    (the model's trainable parameters, in its ``parameters()`` order).

    Raises
    ------
    ConfigError
        Naming ``ddm.blocks``: an unknown name, an integer outside [1, layers], a pattern that matches no
        parameter, a parameter matched by no pattern or by two.
    """
    layers = int(getattr(model, "num_layers", 0))
    if isinstance(spec, bool) or not isinstance(spec, (str, int, list, tuple)):
        raise ConfigError(f"ddm.blocks: expected 'layers', an integer or a list of patterns, got {spec!r}")
    if isinstance(spec, str) and spec not in BLOCK_KINDS:
        raise ConfigError(f"ddm.blocks: expected 'layers', an integer or a list of patterns, got {spec!r}")
    if isinstance(spec, (list, tuple)):
        groups, labels = _by_pattern(model, params, [str(s) for s in spec])
    else:
        if layers < 1:
            raise ConfigError(f"ddm.blocks: model {type(model).__name__} has no message-passing layers to split")
        count = layers if spec == "layers" else int(spec)
        if not 1 <= count <= layers:
            raise ConfigError(f"ddm.blocks: {count} groups of layers, but the model has {layers} layers "
                              f"(expected 1 to {layers})")
        of = parameter_layers(model, params)
        groups, labels = [], []
        for chunk in np.array_split(np.arange(layers), count):
            lo, hi = int(chunk[0]), int(chunk[-1])
            groups.append([i for i, k in enumerate(of) if lo <= k <= hi])
            labels.append(f"layers {lo}" if lo == hi else f"layers {lo}-{hi}")
    of = parameter_layers(model, params) if hasattr(model, "layer_module") else [0] * len(params)
    offsets = np.cumsum([0] + [p.numel() for p in params])
    blocks = []
    for label, group in zip(labels, groups, strict=True):
        if not group:
            continue  # a group of layers without parameters (none of the models here has one)
        coords = torch.cat([torch.arange(int(offsets[i]), int(offsets[i + 1])) for i in group])
        blocks.append(ParameterBlock(label, tuple(group), coords, min(of[i] for i in group)))
    return blocks


def _by_pattern(model: nn.Module, params: list[torch.Tensor], patterns: list[str]):
    """One group of parameter indices per pattern; every parameter in exactly one."""
    if not patterns:
        raise ConfigError("ddm.blocks: an empty list of patterns; give at least one")
    index = {id(p): i for i, p in enumerate(params)}
    names = [(name, index[id(p)]) for name, p in model.named_parameters() if id(p) in index]
    groups = []
    for pattern in patterns:
        hit = [i for name, i in names if fnmatch.fnmatch(name, pattern)]
        if not hit:
            raise ConfigError(f"ddm.blocks: pattern {pattern!r} matches no parameter; the parameters are "
                              f"{[n for n, _ in names][:12]}")
        groups.append(hit)
    count = np.zeros(len(params), dtype=np.int64)
    for group in groups:
        count[group] += 1
    name_of = {i: n for n, i in names}
    twice = [name_of[i] for i in np.flatnonzero(count > 1)]
    if twice:
        raise ConfigError(f"ddm.blocks: parameter(s) {twice[:6]} matched by more than one pattern; the blocks "
                          "must not overlap")
    missing = [name_of[i] for i in np.flatnonzero(count == 0)]
    if missing:
        raise ConfigError(f"ddm.blocks: parameter(s) {missing[:6]} matched by no pattern; every parameter "
                          "must be in a block (add a pattern such as '*')")
    return groups, patterns
