"""Communication below the algorithms: who the ranks are, how they talk, what it costs.

- :mod:`~gnnddm.distributed.world`: rank and world size from torchrun or SLURM, the process group, ports.
- :mod:`~gnnddm.distributed.comm`: the :class:`Communicator` the algorithms talk to; :class:`LocalComm`
  (one process plays every subdomain) and :class:`TorchComm` (real ranks over ``torch.distributed``).
- :mod:`~gnnddm.distributed.accounting`: rounds, bytes, work and modelled time of a run.
- :mod:`~gnnddm.distributed.launch`: starting local ranks (torch's elastic launcher).

Nothing here imports the algorithms (``gnnddm.ddm``); they import from here. A world of size 1 is not a
special case: :class:`LocalComm` implements the whole protocol.
"""

from gnnddm.distributed.accounting import COUNTERS, KINDS, MULTINODE, Accounting, NetworkModel
from gnnddm.distributed.comm import Communicator, LocalComm, TorchComm, copy_halo, payload_bytes, row_bytes
from gnnddm.distributed.launch import (
    ENV_ATTEMPT_PORTS,
    RanksFailed,
    attempt_ports,
    launch,
    run_ranks,
    use_attempt_store,
)
from gnnddm.distributed.world import (
    SLURM_KEYS,
    World,
    assign_parts,
    check_backend,
    first_host,
    free_port,
    free_ports,
    init,
    shutdown,
    world_from_env,
)

__all__ = [
    "COUNTERS", "ENV_ATTEMPT_PORTS", "KINDS", "MULTINODE", "SLURM_KEYS", "Accounting", "Communicator",
    "LocalComm", "NetworkModel", "RanksFailed", "TorchComm", "World", "assign_parts", "attempt_ports", "check_backend",
    "copy_halo", "first_host", "free_port", "free_ports", "init", "launch", "payload_bytes", "row_bytes", "run_ranks",
    "shutdown", "use_attempt_store", "world_from_env",
]
