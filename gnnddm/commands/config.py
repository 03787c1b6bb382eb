"""``gnnddm config validate [+experiment=NAME] [key=value ...]``: check a config without running anything.

The config is composed exactly as ``gnnddm train`` composes it (the same Hydra app and overrides; Hydra's
flags such as ``--cfg job`` work as for train) and checked against :mod:`gnnddm.schema`. A valid config
prints one line with the option chosen in each group and exits with status 0; otherwise every problem is
printed, each naming its key, and the status is 2. Nothing is written: Hydra keeps no run folder, log
file or ``.hydra/`` copy for this command.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

USAGE = "usage: gnnddm config validate [+experiment=NAME] [key=value ...]"
#: Hydra settings of this command: run in the working directory and leave no files there
_QUIET = {"hydra.run.dir": ".", "hydra.output_subdir": "null", "hydra/job_logging": "none"}


def validate_config(cfg: DictConfig) -> str:
    """Check ``cfg`` (a :class:`~gnnddm.errors.ConfigError` naming every bad key) and print the OK line."""
    from gnnddm.schema import group_choices, validate
    from gnnddm.schema.validate import group_names

    validate(cfg)
    choices = group_choices()
    chosen = [f"{g}={choices[g]}" for g in group_names() if g in choices] or [
        f"{g}={cfg[g]['_target_']}" for g in group_names() if g in cfg]
    if choices.get("experiment"):
        chosen.insert(0, f"+experiment={choices['experiment']}")
    line = "config OK: " + " ".join(chosen)
    print(line)
    return line


def main(argv: list[str]) -> int:
    from gnnddm.commands.hydra_app import run_hydra_command

    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if not argv:
        print(f"gnnddm: error: {USAGE}", file=sys.stderr)
        return 2
    if argv[0] != "validate":
        print(f"gnnddm: error: unknown config command {argv[0]!r}; {USAGE}", file=sys.stderr)
        return 2
    rest = argv[1:]
    given = {a.lstrip("+~").partition("=")[0] for a in rest}
    quiet = [f"{key}={value}" for key, value in _QUIET.items() if key not in given]
    return run_hydra_command("config", validate_config, [*rest, *quiet])
