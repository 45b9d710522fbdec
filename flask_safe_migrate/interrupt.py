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

import contextlib
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


@contextlib.contextmanager
def stop_on_signals() -> t.Iterator[None]:
    """Turn SIGTERM/SIGINT into :class:`Interrupted` for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    fired: list[int] = []

    def handler(signum: int, frame: types.FrameType | None) -> None:
        if fired:
            return  # already stopping: let the cleanup (lease release) finish
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
