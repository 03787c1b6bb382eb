"""Ending a run cleanly on the signals a cluster sends.

SLURM sends SIGTERM at a job's time limit, on ``scancel`` and on preemption (and a chosen signal, such as
SIGUSR1, some time before the limit with ``--signal``); ``timeout`` sends SIGTERM. Python's default for
both is to die on the spot, which would leave the MLflow run RUNNING and no ``summary.json``. Inside
:class:`StopSignals` they end the run as Ctrl-C does: :class:`Terminated` is raised, and the training loop
turns it into a checkpoint, ``summary.json`` with status ``terminated`` and the MLflow run KILLED.

Between outer iterations the stop is immediate. During one (see :meth:`StopSignals.deferred`) the signal
is only recorded, and the loop stops after that iteration, so that the checkpoint it writes is a
consistent state and every rank of a distributed run stops at the same iteration.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Terminated(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error of the program
    """A stop signal (or Ctrl-C) ended the run.

    ``reason`` names it (``"SIGTERM"``); the message, when given, says where the run stopped and how to
    continue it (what the command line prints).
    """

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(message or f"run terminated by {reason}")
        self.reason = reason

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal (130 for Ctrl-C)."""
        try:
            return 128 + int(signal.Signals[self.reason])
        except KeyError:
            return 128 + int(signal.SIGTERM)


class StopSignals:
    """Context manager: SIGTERM and SIGUSR1 raise :class:`Terminated` (in the main thread only).

    ``received`` is the name of the first stop signal that arrived, or None.
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received: str | None = None
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
        if not self._defer:
            raise Terminated(self.received)

    @contextmanager
    def deferred(self):
        """Within this block a stop signal is recorded in ``received`` instead of raised."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
