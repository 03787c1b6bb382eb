"""The ``optimizer`` group: ``torch.optim`` classes, built later with the model's parameters.

The shipped options have closed schemas (a misspelt key is an error); any other ``torch.optim`` class
is accepted with a positive ``lr`` and its other keyword arguments checked by torch when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnnddm.schema.fields import Component, above, at_least

LEARNING_RATE = above(0.0, "a learning rate ")


@dataclass
class TorchOptimizerConfig(Component):
    """Any ``torch.optim`` class: ``lr`` > 0; other keys are the class's keyword arguments."""

    _target_: str = "torch.optim.Adam"
    lr: float = field(default=1.0e-3, metadata=LEARNING_RATE)

    target_prefix = "torch.optim."
    open = True


@dataclass
class AdamConfig(Component):
    _target_: str = "torch.optim.Adam"
    lr: float = field(default=1.0e-3, metadata=LEARNING_RATE)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = field(default=1.0e-8, metadata=above(0.0))
    weight_decay: float = field(default=0.0, metadata=at_least(0.0))
    amsgrad: bool = False


@dataclass
class SGDConfig(Component):
    _target_: str = "torch.optim.SGD"
    lr: float = field(default=1.0e-2, metadata=LEARNING_RATE)
    momentum: float = field(default=0.0, metadata=at_least(0.0))
    dampening: float = field(default=0.0, metadata=at_least(0.0))
    weight_decay: float = field(default=0.0, metadata=at_least(0.0))
    nesterov: bool = False


@dataclass
class AdagradConfig(Component):
    _target_: str = "torch.optim.Adagrad"
    lr: float = field(default=1.0e-2, metadata=LEARNING_RATE)
    lr_decay: float = field(default=0.0, metadata=at_least(0.0))
    weight_decay: float = field(default=0.0, metadata=at_least(0.0))
    initial_accumulator_value: float = field(default=0.0, metadata=at_least(0.0))
    eps: float = field(default=1.0e-10, metadata=above(0.0))
