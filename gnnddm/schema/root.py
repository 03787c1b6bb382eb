"""The top-level keys of ``conf/config.yaml`` and its sections ``trainer``, ``accounting``, ``tracking``,
``distributed`` (docs/configuration.md, *Top-level keys*)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gnnddm.schema.fields import Invalid, above, at_least, one_of

#: the values of ``trainer.block_halo`` (how a cache-sized block reads its neighbours: gnnddm.ddm.blocked)
BLOCK_HALOS = ("model", "layer")
#: the values of ``distributed.backend``; :func:`gnnddm.distributed.world.check_backend` reads this one list
BACKENDS = ("none", "gloo", "nccl")
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass
class TrainerConfig:
    max_iterations: int = field(default=200, metadata=at_least(1))
    batch_size: int = field(default=4, metadata=at_least(1))
    eval_every: int = field(default=10, metadata=at_least(1))
    eval_train_samples: int = field(default=8, metadata=at_least(1))
    target_val_loss: float | None = field(default=None, metadata=at_least(0.0))
    max_loss: float = field(default=1.0e6, metadata=at_least(0.0))
    checkpoint_every: int = field(default=0, metadata=at_least(0))
    progress: bool = True
    device: str = "cpu"
    threads: int | None = field(default=None, metadata=at_least(1))
    prefetch: bool = True
    eval_leads: int | str = 0
    lr_schedule: str = field(default="constant", metadata=one_of("constant", "cosine", noun="learning-rate schedule"))
    #: ``global``'s whole-graph step over cache-sized blocks (gnnddm.ddm.blocked): auto, or a count (1: at once)
    blocks: int | str = 1
    #: how a block reaches its neighbours' rows: the overlap of the model's hops, or a one-hop halo per layer
    block_halo: str = field(default="model", metadata=one_of(*BLOCK_HALOS, noun="block halo"))

    def __post_init__(self):
        if self.blocks != "auto" and (isinstance(self.blocks, str) or self.blocks < 1):
            raise Invalid("blocks", f"expected auto or a number of blocks >= 1, got {self.blocks!r}")
        if isinstance(self.eval_leads, str) and self.eval_leads != "max" or (
                isinstance(self.eval_leads, int) and self.eval_leads < 0):
            raise Invalid("eval_leads", f"expected 0 (off), a number of leads >= 1, or max; got {self.eval_leads!r}")
        if not _DEVICE.fullmatch(self.device):
            raise Invalid("device", f"expected cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise Invalid("device", f"{self.device}: no CUDA device is available; use trainer.device=cpu")


@dataclass
class AccountingConfig:
    alpha: float = field(default=1.0e-5, metadata=at_least(0.0))
    beta: float = field(default=1.0e-9, metadata=at_least(0.0))


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "gnnddm"
    run_name: str | None = None
    timeout: float = field(default=5, metadata=above(0.0))
    flush_seconds: float = field(default=5, metadata=at_least(0.0))
    required: bool = False


@dataclass
class DistributedConfig:
    backend: str = field(default="none", metadata=one_of(*BACKENDS, noun="backend"))
    nproc_per_node: int = field(default=1, metadata=at_least(1))
    max_restarts: int = field(default=0, metadata=at_least(0))
    timeout: float = field(default=300, metadata=at_least(1.0))
    master_addr: str = "127.0.0.1"


@dataclass
class RootConfig:
    """The keys of the root config other than the groups (see :data:`gnnddm.schema.GROUPS`)."""

    seed: int = field(default=0, metadata=at_least(0))
    verbose: bool = False
    resume: bool = False
    output_dir: str | None = None
    experiment_name: str | None = None  # the experiment label of runs composed without +experiment
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
