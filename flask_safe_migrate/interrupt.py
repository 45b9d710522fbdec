"""SIGTERM / SIGINT during ``run``: stop cleanly and say what state the database is in.

A deploy system sends SIGTERM when a release job overruns; a person presses
Ctrl-C. Either way the signal becomes :class:`Interrupted`, a
``BaseException`` so that no ``except Exception`` on the way (the retry
executor's included) mistakes it for a database error and retries. Unwinding
does the cleanup the code already guarantees: the open migration
transaction is rolled back by its context manager, a no-transaction
migration stops between statements, and the run's ``finally`` releases the
lease. A second signal while that cleanup runs is ignored, so the lease
release is not cut short.

Python runs signal handlers between bytecodes, so on its own this would let
a single long statement (an index build) finish before the stop takes
effect; :func:`.cancel.cancel_on_signals`, used beside it by ``run`` and
``rollback``, cancels that statement on the server so the stop is prompt
with either driver.
"""

from __future__ import annotations

import signal
import threading
import types
import typing as t

from .errors import MigrationError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The run was stopped by a signal (raised from the signal handler)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")


class RunInterrupted(MigrationError):
    """What the CLI reports after :class:`Interrupted`: the state the database was left in."""


class StopSignals:
    """Signal handlers installed once, around both a body and its cleanup.

    While the body runs, the first of ``signals`` raises ``raising(signum)``.
    From then on, and from the moment :meth:`cleaning` is called, the signals
    are ignored: a second Ctrl-C must not cut the cleanup (a lease release,
    dropping scratch databases) short. There is no gap between the two
    phases, since the handlers stay the same. Only the main thread may
    install handlers: elsewhere nothing is changed.

    :param linger: after an interrupt, keep ignoring the signals instead of
        restoring the previous handlers: for a process that exits right after,
        so that the rest of a burst of signals (a held Ctrl-C, a supervisor
        repeating SIGTERM) cannot kill it between the cleanup and its exit code.
    """

    def __init__(
        self,
        signals: t.Iterable[int] = STOP_SIGNALS,
        *,
        raising: t.Callable[[int], BaseException] = Interrupted,
        linger: bool = False,
    ) -> None:
        self._signals = tuple(signals)
        self._raising = raising
        self._linger = linger
        self._cleaning = False
        self._interrupted = False
        self._previous: dict[int, t.Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self._cleaning:
            return
        self._cleaning = self._interrupted = True
        raise self._raising(signum)

    @property
    def interrupted(self) -> bool:
        """A signal stopped the body."""
        return self._interrupted

    def cleaning(self) -> None:
        """From now on, ignore the signals (the cleanup is running)."""
        self._cleaning = True

    def __exit__(self, *exc: object) -> None:
        if self._interrupted and self._linger:
            # SIG_IGN, not our handler: Python resets its own handlers to the default when
            # the interpreter shuts down, which is exactly when the rest of a burst arrives.
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def stop_on_signals() -> StopSignals:
    """Turn SIGTERM/SIGINT into :class:`Interrupted` for the block (main thread only)."""
    return StopSignals()
