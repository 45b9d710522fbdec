"""What a Python migration's ``upgrade(m)`` gets, and the guard that keeps ``db.session`` out.

``m`` runs SQL on the migration's own connection, inside its transaction,
so the statements and the ledger row commit together and a retry reruns
them all. The Flask-SQLAlchemy session would run on another connection, in
another transaction, outside the retry: while a migration runs, any use of
a session from the migrating context raises. The guard is a contextvar, so
request threads of a live app (other contexts) are never affected.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import time
import typing as t

from sqlalchemy import text

from .errors import BadInputError
from .errors import MigrationError
from .log import logger

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Result

T = t.TypeVar("T")

#: Runs ``work(conn)`` in its own short transaction, retried on a new connection
#: (the runner's executor, with the migration's timeouts): one backfill batch.
BatchRunner = t.Callable[[t.Callable[["Connection"], t.Any]], t.Any]

_migrating: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flask_safe_migrate_migrating", default=None
)
_installed = False
_install_lock = threading.Lock()


def _refuse_session(*args: t.Any, **kwargs: t.Any) -> None:
    label = _migrating.get()
    if label is not None:
        raise MigrationError(
            f"migration {label} used the SQLAlchemy session (db.session); migrations bypass the"
            " session, always: use m.execute(sql, params) / m.scalar(sql, params) instead"
        )


def install_session_guard() -> None:
    """Listen on every SQLAlchemy ``Session`` (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        event.listen(Session, "do_orm_execute", _refuse_session)
        event.listen(Session, "after_begin", _refuse_session)
        _installed = True


@contextlib.contextmanager
def migrating(label: str) -> t.Iterator[None]:
    """Mark the current context as running migration ``label``."""
    install_session_guard()
    token = _migrating.set(label)
    try:
        yield
    finally:
        _migrating.reset(token)


class MigrationContext:
    """The ``m`` in ``def upgrade(m)``.

    :attr:`version` and :attr:`name` identify the migration; :attr:`dialect`
    is ``"postgresql"`` or ``"sqlite"``.
    """

    def __init__(
        self,
        *,
        version: str,
        name: str,
        dialect: str,
        run: t.Callable[[str, t.Mapping[str, t.Any] | None], Result[t.Any]],
        transactional: bool = True,
        run_batch: BatchRunner | None = None,
        progress: t.Callable[[str], None] | None = None,
    ) -> None:
        self.version = version
        self.name = name
        self.dialect = dialect
        self.transactional = transactional
        self._run = run
        self._run_batch = run_batch
        self._progress = progress

    def execute(self, sql: str, params: t.Mapping[str, t.Any] | None = None) -> Result[t.Any]:
        """Run ``sql`` with SQLAlchemy ``text()`` named parameters (``:email``)."""
        return self._run(sql, params)

    def scalar(self, sql: str, params: t.Mapping[str, t.Any] | None = None) -> t.Any:
        """Run ``sql`` and return the first column of the first row (or ``None``)."""
        return self._run(sql, params).scalar()

    def backfill(
        self,
        table: str,
        *,
        set: str,  # shadows the builtin on purpose: reads as SQL
        where: str,
        batch_size: int = 1000,
        sleep: float = 0.1,
        key: str | None = None,
        params: t.Mapping[str, t.Any] | None = None,
    ) -> Backfilled:
        """``UPDATE table SET <set> WHERE <where>`` in batches, one short transaction each.

        A single mass ``UPDATE`` holds its row locks (and bloats, and blocks
        replication) until it commits; batches release them every
        ``batch_size`` rows, and ``sleep`` seconds between batches leave room
        for the app's own writes. Each batch is one unit of retry (a dropped
        connection reruns that batch on a new one), so the migration must run
        without a transaction (``transaction = False``): inside one, the
        batches could not commit on their own.

        ``where`` is the guard that makes it exactly-once per row: it must
        stop matching a row once ``set`` has been applied to it (e.g.
        ``set="order_index = id", where="order_index IS NULL"``). Then a
        batch whose COMMIT reply was lost, or a rerun after a failure, skips
        the rows already done and carries on where it stopped.

        Batches walk the table in ``key`` order (the primary key, found in
        the catalog when not given; ``rowid`` on SQLite): each picks the next
        ``batch_size`` rows above the last key done that match ``where``.
        ``params`` are bound into ``set`` and ``where`` (``:name``). Progress
        is logged after every batch and reported as a ``progress`` event.

        :returns: how many rows were updated and in how many batches.
        :raises MigrationError: called from a transactional migration.
        """
        if self.transactional or self._run_batch is None:
            raise MigrationError(
                f"migration {self.version}_{self.name}: m.backfill() commits batch by batch, so it"
                " cannot run inside the migration's transaction. Move it to a migration of its own"
                " with `transaction = False` at module level (keep schema changes in a"
                " transactional migration before it).",
                version=self.version,
            )
        if batch_size < 1:
            raise BadInputError(f"m.backfill({table!r}): batch_size must be at least 1")
        if sleep < 0:
            raise BadInputError(f"m.backfill({table!r}): sleep must be >= 0 seconds")
        run_batch = self._run_batch
        if key is None:
            key = run_batch(lambda conn: _primary_key(conn, table, self.dialect))
        bound = dict(params or {})
        first = (
            f"UPDATE {table} SET {set} WHERE {key} IN (SELECT {key} FROM {table} WHERE ({where})"
            f" ORDER BY {key} LIMIT {int(batch_size)}) AND ({where}) RETURNING {key}"
        )
        following = (
            f"UPDATE {table} SET {set} WHERE {key} IN (SELECT {key} FROM {table} WHERE ({where})"
            f" AND {key} > :_sm_after ORDER BY {key} LIMIT {int(batch_size)}) AND ({where})"
            f" RETURNING {key}"
        )
        started = time.monotonic()
        after: t.Any = None
        rows = batches = 0
        while True:
            sql = first if after is None else following
            values = bound if after is None else {**bound, "_sm_after": after}

            def batch(
                conn: Connection, sql: str = sql, values: dict[str, t.Any] = values
            ) -> list[t.Any]:
                return [row[0] for row in conn.execute(text(sql), values)]

            keys: list[t.Any] = run_batch(batch)
            if not keys:
                break
            batches += 1
            rows += len(keys)
            after = max(keys)
            message = f"backfill {table}: {rows} rows in {batches} batches (last {key} {after})"
            logger.info(
                "migration %s_%s: %s",
                self.version,
                self.name,
                message,
                extra={
                    "safe_migrate_event": "backfill_progress",
                    "version": self.version,
                    "migration": f"{self.version}_{self.name}",
                    "table": table,
                    "rows": rows,
                    "batches": batches,
                },
            )
            if self._progress is not None:
                self._progress(message)
            if len(keys) < batch_size:
                break
            if sleep:
                time.sleep(sleep)
        done = Backfilled(table, rows, batches, int((time.monotonic() - started) * 1000))
        logger.info(
            "migration %s_%s: backfill %s done: %d rows in %d batches, %d ms",
            self.version,
            self.name,
            table,
            rows,
            batches,
            done.duration_ms,
            extra={
                "safe_migrate_event": "backfill_done",
                "version": self.version,
                "migration": f"{self.version}_{self.name}",
                "table": table,
                "rows": rows,
                "batches": batches,
                "duration_ms": done.duration_ms,
            },
        )
        return done


@dataclasses.dataclass(frozen=True, slots=True)
class Backfilled:
    """What :meth:`MigrationContext.backfill` did (in this call: a rerun counts only its own rows)."""

    table: str
    rows: int
    batches: int
    duration_ms: int


def _primary_key(conn: Connection, table: str, dialect: str) -> str:
    """The single-column primary key of ``table`` (quoted), for keyset batches."""
    if dialect != "postgresql":
        return "rowid"
    columns = [
        row[0]
        for row in conn.execute(
            text(
                "SELECT quote_ident(a.attname) FROM pg_index i"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = CAST(:table AS regclass) AND i.indisprimary"
            ),
            {"table": table},
        )
    ]
    if len(columns) != 1:
        raise BadInputError(
            f"m.backfill({table!r}): the table has "
            + ("no primary key" if not columns else f"a {len(columns)}-column primary key")
            + "; pass key='<a unique, indexed column>' to batch by"
        )
    return str(columns[0])


def on_connection(
    conn: Connection,
) -> t.Callable[[str, t.Mapping[str, t.Any] | None], Result[t.Any]]:
    """Execute on one connection (the migration's transaction)."""

    def run(sql: str, params: t.Mapping[str, t.Any] | None) -> Result[t.Any]:
        return conn.execute(text(sql), dict(params or {}))

    return run
