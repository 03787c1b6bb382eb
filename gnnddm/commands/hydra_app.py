"""Running a Hydra-configured command with gnnddm's error contract.

A :class:`~gnnddm.errors.GnnddmError` ends the command with its one-line message on stderr and exit
status 2, and so does a config Hydra cannot compose (an unknown option of a group) or a run folder that
cannot be created; an unexpected exception with a one-line message and status 1. A run stopped by Ctrl-C,
SIGTERM or SIGUSR1 prints where it stopped and how to resume, and exits with 128 + the signal number; a
submitit job stopped by submitit's time-out / preemption signal is requeued by submitit first.
The traceback is printed only with ``verbose=true``. In a multirun sweep a failing job does not stop the
others; the sweep's exit status is that of its worst job.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from gnnddm.config import config_dir
from gnnddm.errors import ConfigError, GnnddmError
from gnnddm.training.signals import Terminated, requeue_if_preempted

_FOLDER_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "output_dir")


def _verbose(argv: list[str]) -> bool:
    return any(a.lower() in ("verbose=true", "verbose=1", "+verbose=true") for a in argv)


def report_error(exc: BaseException, verbose: bool) -> int:
    """Print ``exc`` the way the command line does and return the exit status."""
    if verbose:
        traceback.print_exception(exc)
    if isinstance(exc, GnnddmError):
        print(f"gnnddm: error: {exc}", file=sys.stderr)
        return 2
    hint = "" if verbose else " (run with verbose=true for the traceback)"
    print(f"gnnddm: error: unexpected {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return 1


def key_value_main(argv: list[str], usage: str, doc: str, run) -> int:
    """The entry point of a ``key=value`` command (``evaluate``, ``predict``): ``help`` prints ``usage`` and
    ``doc`` after its first paragraph; ``run(argv)`` returns the text to print; an error is one line and exit
    status 2 (1 for an unexpected one), with the traceback under ``verbose=true``."""
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage + "\n\n" + doc.split("\n", 2)[2])
        return 0
    verbose = any(a.lower() in ("verbose=true", "verbose=1") for a in argv)
    try:
        text = run(argv)
    except Exception as exc:  # noqa: BLE001 - reported as one line and an exit status
        return report_error(exc, verbose)
    print(text)
    return 0


def key_values(argv: list[str], usage: str):
    """``(arg, key, value)`` of each ``key=value`` token of a key=value command; a :class:`ConfigError`
    naming a token that is not one."""
    for arg in argv:
        key, sep, raw = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"{arg!r}: expected key=value; {usage}")
        yield arg, key, raw


def overridable(key: str, allowed) -> bool:
    """Whether ``key`` is one of ``allowed`` or under one of its prefixes (those ending in ``.``)."""
    return any(key.startswith(k) if k.endswith(".") else key == k for k in allowed)


def parse_override(parser, arg: str) -> tuple[str, tuple]:
    """``(key, (value, adds a key))`` of the override ``arg`` (``key=value`` or ``+key=value``), its value
    parsed as Hydra parses it; a :class:`ConfigError` naming ``arg`` when it does not parse."""
    from hydra.errors import HydraException

    key = arg.partition("=")[0]
    try:
        value = parser.parse_override(arg).value()
    except HydraException as exc:
        raise ConfigError(f"{arg}: not a valid override ({str(exc).strip().splitlines()[0]})") from None
    return key.lstrip("+"), (value, key.startswith("+"))


def _check_folders(argv: list[str]) -> None:
    """Create the folders named on the command line now, so that one that cannot be created is one error
    naming its key (Hydra would print a traceback)."""
    from pathlib import Path

    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in _FOLDER_KEYS or not value or "${" in value or value == "null":
            continue
        try:
            Path(value).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key}={value}: the folder cannot be created ({exc.strerror or exc}); "
                              "choose a writable folder") from None


#: Hydra's command-line flags that take a value (``--info`` an optional one)
_VALUE_FLAGS = frozenset({"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp", "--config-name",
                          "-cn", "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc"})


def split_hydra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides), each in the order given.

    Hydra's parser takes the overrides as one run of positional arguments, so an override after a flag
    (``ddm=asm --cfg job hydra.job.name=train``) would be refused; putting every flag first lets flags
    stand anywhere on the command line. A flag's value is the next argument when that is neither a flag
    nor an override (``key=value``).
    """
    flags, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if arg in _VALUE_FLAGS and nxt is not None and not nxt.startswith("-") and "=" not in nxt:
                flags.append(nxt)
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


_INSPECT_FLAGS = frozenset({"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"})


def _check_flags(flags: list[str]) -> None:
    """Flag combinations Hydra refuses with a traceback, as one error."""
    if any(f in ("-m", "--multirun") for f in flags) and any(f in _INSPECT_FLAGS for f in flags):
        shown = next(f for f in flags if f in _INSPECT_FLAGS)
        raise ConfigError(f"{shown} shows the configuration of one job and cannot be combined with -m/--multirun; "
                          f"drop -m and give one value per key (e.g. gnnddm train ddm=asm {shown} job)")


def _launcher_advice(exc: BaseException) -> str:
    text = str(exc)
    if "srun" in text or "sbatch" in text:
        return ("; hydra/launcher=slurm needs a SLURM cluster (srun and sbatch on PATH): run on one, start the "
                "local one with scripts/slurm/start_local_slurm.sh, or use hydra/launcher=local")
    return ""


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml): at the end of a sweep, print how its jobs
    ended, the MLflow parent run that groups them and the ``gnnddm report`` command for it, and keep the
    same in ``<sweep dir>/sweep.json`` (the jobs record the parent run there)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import json
        from collections import Counter
        from pathlib import Path

        from gnnddm.outputs import write_json

        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        statuses = Counter()
        for path in sorted(sweep_dir.glob("*/summary.json")):
            try:
                statuses[json.loads(path.read_text()).get("status", "unknown")] += 1
            except (OSError, ValueError):
                statuses["unreadable"] += 1
        ended = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "no summary.json"
        note_path = sweep_dir / "sweep.json"
        try:
            note = json.loads(note_path.read_text())
        except (OSError, ValueError):
            note = {}
        note["jobs"] = dict(statuses)
        if sweep_dir.is_dir():
            write_json(note_path, note)
        print(f"sweep {sweep_dir}: {sum(statuses.values())} jobs ({ended})")
        if note.get("parent_run_id"):
            print(f"MLflow parent run {note['parent_run_id']} (experiment {note.get('experiment')}); compare "
                  f"the runs with:\n  {note['report']}")



def run_hydra_command(name: str, fn: Callable[[DictConfig], object], argv: list[str]) -> int:
    """Run ``fn(cfg)`` under ``hydra.main`` with the command-line overrides ``argv``."""
    import hydra

    verbose = _verbose(argv)
    worst = {"code": 0}
    ran = {"app": False}
    flags, overrides = split_hydra_args(argv)
    multirun = any(a in ("-m", "--multirun") for a in flags)
    try:
        _check_flags(flags)
        _check_folders(argv)
    except ConfigError as exc:
        return report_error(exc, verbose)

    def app(cfg: DictConfig):
        ran["app"] = True
        try:
            return fn(cfg)
        except Terminated as exc:
            print(f"gnnddm: {exc}", file=sys.stderr)
            worst["code"] = max(worst["code"], exc.exit_code)
            if os.environ.get("SUBMITIT_EXECUTOR"):
                # a submitit job: on rank 0 submitit requeues a timed-out or preempted job and exits;
                # otherwise the job ends with the signal's status, without a traceback
                requeue_if_preempted(exc)
                raise SystemExit(exc.exit_code) from None
            return None
        except Exception as exc:  # noqa: BLE001 - reported, not swallowed: the exit status carries it
            logging.getLogger("gnnddm").debug("job failed", exc_info=True)
            worst["code"] = max(worst["code"], report_error(exc, verbose))
            if os.environ.get("SUBMITIT_EXECUTOR"):
                # a job run by submitit (SLURM or local launcher): its failure must reach the launcher
                raise
            return None

    saved, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    # name the job after the command (its log file is <command>.log), unless the user chose a name
    extra = [] if any(a.startswith("hydra.job.name=") for a in argv) else [f"hydra.job.name={name}"]
    # a run given output_dir keeps Hydra's files (.hydra/, <command>.log) there too
    out = next((a.partition("=")[2] for a in overrides if a.lstrip("+").startswith("output_dir=")), None)
    if out and out != "null" and not multirun and not any(a.startswith("hydra.run.dir=") for a in overrides):
        extra.append(f"hydra.run.dir={out}")
    sys.argv = [f"gnnddm {name}", *flags, *overrides, *extra]
    if multirun:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # a launcher's failure reaches us as an exception, not a traceback
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(app)()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 1 and not ran["app"] and not multirun:
            code = 2  # Hydra refused the command line (unknown option, bad override) before the run began
        return max(code, worst["code"])
    except Exception as exc:  # noqa: BLE001 - the sweep could not be launched: one line, exit 2
        if verbose:
            traceback.print_exception(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gnnddm: error: the sweep could not run: {message}{_launcher_advice(exc)}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
    return worst["code"]
