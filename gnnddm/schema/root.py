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
#: the values of ``trainer.precision``: the dtype of the models' dense products (gnnddm.models.execution.stage)
PRECISIONS = ("float32", "bf16")
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
    #: the dtype of the models' dense products; parameters, optimizer state, halos and loss stay float32
    precision: str = field(default="float32", metadata=one_of(*PRECISIONS, noun="precision"))
    #: the models' stages through torch.compile, each compiled on first use (uncompiled, with a warning, where
    #: it cannot be: gnnddm.models.execution)
    compile: bool = False

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
        if self.precision == "bf16" and not bf16_supported(self.device):
            where = "this CPU has no bf16 instructions (AVX512-BF16 or AMX)" if self.device == "cpu" else \
                f"{self.device} has no bf16 arithmetic"
            raise Invalid("precision", f"bf16: {where}; use trainer.precision=float32")


def bf16_supported(device: str) -> bool:
    """Whether ``device`` (cpu, cuda, cuda:N) computes bf16 products natively: on CPUs the instructions
    oneDNN uses for them (AVX512-BF16 or AMX; without them bf16 is emulated, slower than float32)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


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
