"""On SIGTERM / SIGINT, cancel the statement the run is waiting for, on the server.

Python runs a signal handler only between bytecodes of the main thread. While
psycopg2 waits for the server (``PQexec``, in C), none run, so a stop signal
during a long statement (an index build, a backfill, a ``pg_sleep``) would
take effect only when the statement ends, minutes later, and a deploy system
would kill the process first. psycopg 3 waits in Python, so its handler runs
at once, but the statement goes on running on the server until it notices
its client is gone.

So while a run is in progress, :func:`cancel_on_signals`:

* notes the database connection the main thread is executing on (an engine
  ``before_cursor_execute`` listener; the lease heartbeat's thread is left
  alone);
* has the C-level signal handler write the signal number to a socket
  (:func:`signal.set_wakeup_fd`, which works while the main thread is stuck
  in C), read by a small thread that then calls the connection's
  ``cancel()`` (a Postgres cancel request, safe from another thread;
  ``interrupt()`` for sqlite3).

The statement fails with "canceling statement due to user request", the
main thread is back in Python, and the Python handler (see
:mod:`.interrupt`) raises :class:`~.interrupt.Interrupted`, which unwinds the
run as usual: the migration's transaction is rolled back, the lease
released, and the CLI says what state the database is in.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import typing as t

from .log import logger

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

#: The signals that stop a run (the ones :func:`.interrupt.stop_on_signals` handles).
CANCEL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_STOP_WATCHING = b"\0"  # not a signal number


class _InFlight:
    """The DBAPI connection the main thread is executing on, if any."""

    def __init__(self) -> None:
        self.connection: t.Any = None
        self._main = threading.main_thread()

    def before(self, conn: Connection, cursor: t.Any, *args: t.Any) -> None:
        if threading.current_thread() is self._main:
            self.connection = cursor.connection

    def after(self, conn: Connection, cursor: t.Any, *args: t.Any) -> None:
        if threading.current_thread() is self._main:
            self.connection = None

    def cancel(self) -> None:
        connection = self.connection
        if connection is None:
            return
        cancel = getattr(connection, "cancel", None) or getattr(connection, "interrupt", None)
        if cancel is None:
            return
        try:
            cancel()
        except Exception as exc:  # already closed, or the server is gone: nothing runs
            logger.debug("could not cancel the statement in flight: %s", exc)
        else:
            logger.info("stop signal: the statement in flight was cancelled on the server")

    def watch(self, wakeups: socket.socket) -> None:
        while True:
            try:
                data = wakeups.recv(64)
            except OSError:
                return
            if not data or _STOP_WATCHING in data:
                return
            if any(number in CANCEL_SIGNALS for number in data):
                self.cancel()


@contextlib.contextmanager
def cancel_on_signals() -> t.Iterator[None]:
    """Cancel the main thread's statement in flight when SIGTERM/SIGINT arrives.

    Use it inside :func:`.interrupt.stop_on_signals`, whose Python handlers
    are what make the C-level handler write to the wakeup socket. Main
    thread only (elsewhere it does nothing, like ``stop_on_signals``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    wakeups, writer = socket.socketpair()
    writer.setblocking(False)
    in_flight = _InFlight()
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter's main thread after all
        wakeups.close()
        writer.close()
        yield
        return
    event.listen(Engine, "before_cursor_execute", in_flight.before)
    event.listen(Engine, "after_cursor_execute", in_flight.after)
    watcher = threading.Thread(
        target=in_flight.watch, args=(wakeups,), name="safe-migrate-cancel", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        event.remove(Engine, "before_cursor_execute", in_flight.before)
        event.remove(Engine, "after_cursor_execute", in_flight.after)
        with contextlib.suppress(OSError):
            writer.send(_STOP_WATCHING)
        watcher.join(timeout=5)
        wakeups.close()
        writer.close()
