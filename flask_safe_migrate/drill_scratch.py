"""The drill's scratch databases: created over a direct admin URL, and never left behind.

Three lines of defence, from the most to the least common way a drill ends early:

* the drill drops everything it created when it ends, fails, or is stopped by SIGINT (Ctrl-C),
  SIGTERM (a cancelled CI job) or SIGHUP (a closed terminal or ssh session):
  :func:`stop_drill_on_signals` turns the first of them into :class:`DrillInterrupted` and
  ignores any further one while the databases are dropped;
* every drill announces itself: the admin connections it holds open while it runs carry its run
  id as ``application_name``;
* a drill killed outright (SIGKILL, OOM killer, a lost machine) cannot clean up, so
  :func:`cleanup` (``flask safe-migrate drill --cleanup``) drops the databases of every run that
  no longer has a connection open, and keeps those of drills still running.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import threading
import typing as t
import uuid
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor

from .classify import first_line
from .errors import ConfigError
from .executor import backend_pid
from .interrupt import StopSignals
from .urls import display_url

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Engine

_T = t.TypeVar("_T")

#: Prefix of every scratch database and of the drill's ``application_name``.
SCRATCH_PREFIX = "sm_drill_"
_RUN_ID_LENGTH = 8
#: The signals that stop a drill and still let it drop its scratch databases.
_SIGNALS = tuple(
    sig for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if sig
)


def _admin_engine(url: URL, connect_timeout: float, application_name: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={
            "connect_timeout": max(1, int(connect_timeout)),
            "application_name": application_name,
        },
    )


def refuse_pooler(conn: Connection, url: URL) -> None:
    """Refuse a pooled URL early, with the fix, instead of failing on the first template."""
    told = backend_pid(conn)
    actual = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    if told is None or told != actual:
        raise ConfigError(
            f"{display_url(url)} goes through a connection pooler: the drill copies"
            " databases with CREATE DATABASE ... TEMPLATE, which needs a direct"
            " connection to Postgres. Pass --scratch-url with a direct URL of the same"
            " server (a role with CREATEDB)."
        )


class ScratchServer:
    """Creates and drops the drill's databases over one direct admin URL, and remembers them.

    :meth:`open` also keeps one admin connection open until :meth:`drop_all`, named after the
    run: that is how :func:`cleanup` tells a running drill from a killed one.

    Copying a template (``CREATE DATABASE ... TEMPLATE``) is most of a drill's time, and it is
    the server's work, not ours: :meth:`prefetch` makes the copies a migration's applies
    will need in the background, a few ahead, while the applies run, and :meth:`drop_later`
    drops the used ones in the background too.
    """

    #: Background workers: two copies in flight keep up with one apply at a time.
    workers = 2
    #: Copies made ahead of :meth:`copy`, per template.
    depth = 3

    def __init__(self, url: URL, *, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.run_id = uuid.uuid4().hex[:_RUN_ID_LENGTH]
        self.created: list[str] = []
        self._lock = threading.Lock()
        self._count = 0
        self._engine = _admin_engine(url, connect_timeout, f"{SCRATCH_PREFIX}{self.run_id}")
        self._keeper: Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[str, _Copies] = {}

    def _submit(self, func: t.Callable[..., _T], *args: t.Any) -> Future[_T]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sm-drill-scratch")
        return self._pool.submit(func, *args)

    def prefetch(self, label: str, template: str, count: int) -> None:
        """Make ``count`` more copies of ``template`` for :meth:`copy`, a few ahead at a time."""
        copies = self._ahead.setdefault(template, _Copies(label, template))
        copies.wanted += count
        self._top_up(copies)

    def _top_up(self, copies: _Copies) -> None:
        while copies.wanted > 0 and len(copies.making) < self.depth:
            copies.wanted -= 1
            copies.making.append(self._submit(self.create, copies.label, copies.template))

    def copy(self, label: str, template: str) -> str:
        """A fresh copy of ``template``: a prefetched one if there is one, else made now."""
        copies = self._ahead.get(template)
        if copies is None or not copies.making:
            return self.create(label, template)
        name = copies.making.popleft().result()
        self._top_up(copies)
        return name

    def drop_later(self, name: str) -> None:
        """Drop ``name`` in the background (a failure leaves it to :meth:`drop_all`)."""
        self._submit(self.drop, name)

    def release(self, template: str) -> None:
        """Drop the unused copies of ``template``, then ``template`` itself."""
        copies = self._ahead.pop(template, None)
        for future in copies.making if copies is not None else ():
            try:
                self.drop(future.result())
            except Exception:
                pass  # its name is still in `created`: drop_all tries again
        self.drop(template)

    def open(self) -> None:
        """Connect (refusing a pooler) and keep the connection that says this run is alive."""
        conn = self._engine.connect()
        try:
            refuse_pooler(conn, self.url)
        except BaseException:
            conn.close()
            raise
        self._keeper = conn

    def create(self, label: str, template: str | None = None) -> str:
        from sqlalchemy.exc import DBAPIError

        with self._lock:
            self._count += 1
            name = f"{SCRATCH_PREFIX}{self.run_id}_{self._count:04d}_{label}"[:63]
            self.created.append(name)
        source = f' TEMPLATE "{template}"' if template else ""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"{source}')
        except DBAPIError as exc:
            if "permission denied" in str(exc).lower():
                raise ConfigError(
                    f"the drill creates scratch databases and the role of"
                    f" {display_url(self.url)} may not: {first_line(exc)}. Grant it CREATEDB, or"
                    " pass --scratch-url with a role that has it."
                ) from None
            raise
        return name

    def drop(self, name: str) -> None:
        with self._engine.connect() as conn:
            _drop(conn, name)
        with self._lock:
            if name in self.created:
                self.created.remove(name)

    def drop_all(self) -> list[str]:
        """Drop every database still there; returns the names that could not be dropped.

        Background copies and drops are waited for first (those not started are cancelled), so
        a copy finishing after its drop cannot strand a database.
        """
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        left: list[str] = []
        for name in reversed(list(self.created)):
            try:
                self.drop(name)
            except Exception:
                left.append(name)
        if self._keeper is not None:
            try:
                self._keeper.close()
            except Exception:
                pass
            self._keeper = None
        self._engine.dispose()
        return left


@dataclasses.dataclass
class _Copies:
    """The copies of one template :meth:`ScratchServer.prefetch` was asked for."""

    label: str
    template: str
    #: Copies asked for and not started yet.
    wanted: int = 0
    #: Copies started (at most :attr:`ScratchServer.depth`), in the order :meth:`copy` hands them.
    making: collections.deque[Future[str]] = dataclasses.field(default_factory=collections.deque)


def _drop(conn: Connection, name: str) -> None:
    from sqlalchemy.exc import DBAPIError

    try:
        # FORCE (Postgres 13+) also ends an orphaned backend a cut left behind.
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except DBAPIError:
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')


# -- interrupts ------------------------------------------------------------------------------


class DrillInterrupted(KeyboardInterrupt):
    """The drill was stopped by a signal (what it could not drop: ``Drill.left_behind``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def stop_drill_on_signals(*, linger: bool = False) -> StopSignals:
    """The run's signal handling (see :class:`.interrupt.StopSignals`), with SIGHUP too.

    By default SIGTERM and SIGHUP end the process without unwinding, which would strand the
    scratch databases; the drill turns them into :class:`DrillInterrupted` instead.
    """
    return StopSignals(_SIGNALS, raising=DrillInterrupted, linger=linger)


# -- leftovers of killed drills --------------------------------------------------------------


@dataclasses.dataclass
class Cleanup:
    """What :func:`cleanup` did: names dropped, kept (their drill still runs), failed."""

    dropped: list[str]
    kept: list[str]
    failed: list[str]

    def document(self) -> dict[str, t.Any]:
        return {
            "ok": not self.failed,
            "dropped": self.dropped,
            "kept": self.kept,
            "failed": self.failed,
        }


def cleanup(url: URL, *, connect_timeout: float = 10.0) -> Cleanup:
    """Drop the scratch databases of every drill that is no longer running on ``url``'s server.

    A running drill holds an admin connection named ``sm_drill_<run id>`` (visible in
    ``pg_stat_activity`` to every role); a database whose run id has none belongs to a drill
    that was killed, and is dropped (``WITH (FORCE)``).
    """
    engine = _admin_engine(url, connect_timeout, f"{SCRATCH_PREFIX}cleanup")
    found = Cleanup([], [], [])
    pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
    try:
        with engine.connect() as conn:
            refuse_pooler(conn, url)
            names = sorted(
                str(r[0])
                for r in conn.exec_driver_sql(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
                )
            )
            alive = {
                str(r[0])[len(SCRATCH_PREFIX) :]
                for r in conn.exec_driver_sql(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
                    (pattern,),
                )
            }
            for name in names:
                run_id = name[len(SCRATCH_PREFIX) : len(SCRATCH_PREFIX) + _RUN_ID_LENGTH]
                if run_id in alive:
                    found.kept.append(name)
                    continue
                try:
                    _drop(conn, name)
                except Exception as exc:
                    found.failed.append(f"{name} ({first_line(exc)})")
                else:
                    found.dropped.append(name)
    finally:
        engine.dispose()
    return found
