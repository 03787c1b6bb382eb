"""``gnnddm <command>``: dispatch only, to the modules of :data:`gnnddm.commands.COMMANDS`."""

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

def main(argv: list[str] | None = None) -> int:
    import importlib

    from gnnddm.commands import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: gnnddm <command> [args]\n" + "\n".join(f"    gnnddm {line}" for _, line in COMMANDS.values()))
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-V", "--version"):
        from gnnddm import __version__

        print(f"gnnddm {__version__}")
        return 0
    if command not in COMMANDS:
        print(f"gnnddm: error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command][0]).main(rest)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
