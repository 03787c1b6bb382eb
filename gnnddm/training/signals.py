"""Ending a run cleanly on the signals a cluster sends.

SLURM sends SIGTERM at a job's time limit, on ``scancel`` and on preemption (and a chosen signal, such as
SIGUSR1, some time before the limit with ``--signal``); ``timeout`` sends SIGTERM. Python's default for
both is to die on the spot, which would leave the MLflow run RUNNING and no ``summary.json``. Inside
:class:`StopSignals` they end the run as Ctrl-C does: :class:`Terminated` is raised, and the training loop
turns it into a checkpoint, ``summary.json`` with status ``terminated`` and the MLflow run KILLED.

During the set-up the stop is immediate. Once the outer iterations begin (see
:meth:`StopSignals.deferred`) the signal is only recorded, and the loop stops after the current
iteration, so that the checkpoint it writes is a consistent state, every iteration logged is one the
checkpoint holds, and every rank of a distributed run stops at the same iteration. A signal during the
last iteration or the final evaluation lets the run finish.

A job of the Hydra submitit launchers (``hydra/launcher=slurm``) is warned before its time limit, and on
preemption, with submitit's own signal (SIGUSR2, ``hydra.launcher.signal_delay_s`` before the limit).
Submitit's handler would requeue the job at once, from the middle of an iteration, without a checkpoint of
it, and the run would end as failed; inside :class:`StopSignals` that signal stops the run like the others
(in submitit jobs only), and only then does
:func:`requeue_if_preempted` pass it on to submitit's handler, which requeues the job (while
``hydra.launcher.max_num_timeout`` allows). The requeued job resumes from the checkpoint
(``SLURM_RESTART_COUNT`` > 0).
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def preemption_signal() -> signal.Signals | None:
    """Submitit's time-out / preemption signal when this process is a submitit job, else None.

    Submitit reads it from ``SUBMITIT_PREEMPT_SIGNAL`` (default ``USR2``) and marks its jobs with
    ``SUBMITIT_EXECUTOR``.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def requeue_if_preempted(exc: Terminated) -> None:
    """Pass submitit's preemption signal, when it stopped the run, on to submitit's handler.

    Call it after the run has been ended (checkpoint, summary, MLflow run KILLED) and outside
    :class:`StopSignals`, where submitit's handler is in place again. On rank 0 that handler saves the job
    for resubmission, requeues it and exits the process (or raises ``UncompletedJobError`` when the job
    has timed out ``hydra.launcher.max_num_timeout`` times); on other ranks it returns.
    """
    sig = preemption_signal()
    if sig is None or not exc.preempted:
        return
    handler = signal.getsignal(sig)
    if callable(handler):
        handler(sig, None)


class Terminated(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error of the program
    """A stop signal (or Ctrl-C) ended the run.

    ``reason`` names it (``"SIGTERM"``); the message, when given, says where the run stopped and how to
    continue it (what the command line prints). ``preempted``: submitit's preemption signal arrived (see
    :func:`requeue_if_preempted`).
    """

    def __init__(self, reason: str, message: str | None = None, preempted: bool = False):
        super().__init__(message or f"run terminated by {reason}")
        self.reason = reason
        self.preempted = preempted

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal (130 for Ctrl-C)."""
        try:
            return 128 + int(signal.Signals[self.reason])
        except KeyError:
            return 128 + int(signal.SIGTERM)


class StopSignals:
    """Context manager: SIGTERM and SIGUSR1 (and, in a submitit job, its preemption signal) raise
    :class:`Terminated` (in the main thread only).

    ``received`` is the name of the first stop signal that arrived, or None; ``preempted`` whether the
    preemption signal arrived, first or after another one (a preempted job may get SIGTERM as well).
    """

    def __init__(self, signals=None):
        if signals is None:
            signals = STOP_SIGNALS + tuple(s for s in (preemption_signal(),) if s not in (None, *STOP_SIGNALS))
        self.signals = tuple(signals)
        self.received: str | None = None
        self.preempted = False
        self._defer = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
        self.preempted = self.preempted or signum == preemption_signal()
        if not self._defer:
            raise Terminated(self.received, preempted=self.preempted)

    @contextmanager
    def deferred(self):
        """Within this block a stop signal is recorded in ``received`` instead of raised."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
