"""``gnnddm <command>``: dispatch only.

    gnnddm train [+experiment=NAME] [key=value ...]      train (Hydra; -m for sweeps)
    gnnddm partition [+experiment=NAME] [key=value ...]  build graph and partition, report quality
    gnnddm evaluate output_dir=PATH [split=test|val]     score a trained model (PATH/model.pt)
    gnnddm report [options]                              tables and plots from MLflow runs
    gnnddm data info PATH | data synth ...               inspect or generate data files
"""

from __future__ import annotations

import os
import sys

# Back torch's CPU tensors with transparent huge pages: large activations ([N, hidden] for N ~ 10^6) then
# cost far fewer page faults and TLB misses (benchmarks/bench_model.py --thp: one 1M-node GraphSAGE step
# 1.28 s instead of 1.88 s). Read by torch when it starts, so it is set before anything imports torch;
# set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# MLflow's own INFO lines (store set-up) and artifact-download progress bars are noise on our terminal
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

USAGE = __doc__.split("\n", 2)[2]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: gnnddm <command> [args]\n" + USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from gnnddm.commands import run_hydra_command
        from gnnddm.train import train

        return run_hydra_command("train", train, rest)
    if command == "partition":
        from gnnddm.commands import run_hydra_command
        from gnnddm.partition.command import run_partition

        return run_hydra_command("partition", run_partition, rest)
    if command == "evaluate":
        from gnnddm.evaluate_command import main as evaluate_main

        return evaluate_main(rest)
    if command == "data":
        from gnnddm.data.info import main as data_main

        return data_main(rest)
    if command == "report":
        from gnnddm.report import main as report_main

        return report_main(rest)
    if command in ("-V", "--version"):
        from gnnddm import __version__

        print(f"gnnddm {__version__}")
        return 0
    print(f"gnnddm: error: unknown command {command!r}; valid: train, partition, evaluate, report, "
          "data", file=sys.stderr)
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
