"""Engines built for migrations: one brand-new server connection per attempt.

They use ``NullPool``, so an attempt never inherits a socket a previous one
broke, and disposing them leaves nothing behind in forked workers
(``gunicorn --preload``). They never share ``db.engine``'s pool.
"""

from __future__ import annotations

import os
import socket
import typing as t

from .classify import Transience
from .classify import classify
from .urls import normalize_url

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.interfaces import ExceptionContext

APPLICATION_NAME = "flask-safe-migrate"


def connect_args(url: URL, connect_timeout: float) -> dict[str, t.Any]:
    backend, _, driver = url.drivername.partition("+")
    if backend != "postgresql":
        return {}
    args: dict[str, t.Any] = {
        "connect_timeout": max(1, int(round(connect_timeout))),
        # Notice a silently dropped peer in about a minute instead of two hours.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if "application_name" not in url.query:
        args["application_name"] = f"{APPLICATION_NAME}/{socket.gethostname()}/{os.getpid()}"[:63]
    if driver == "psycopg":
        # PgBouncer before 1.21 breaks on protocol-level prepared statements,
        # which psycopg 3 starts using after 5 executions.
        args["prepare_threshold"] = None
    return args


def _mark_pooler_disconnects(context: ExceptionContext) -> None:
    """Tell SQLAlchemy that pooler reasons it does not know are disconnects.

    Then the connection is invalidated (never reused) even when the message
    is PgBouncer's or Supavisor's own rather than libpq's.
    """
    error = context.original_exception
    if not context.is_disconnect and error is not None and classify(error) is Transience.DISCONNECT:
        context.is_disconnect = True


def create_migration_engine(
    raw_url: str | URL, *, connect_timeout: float = 10.0, key: str = "SAFE_MIGRATE_DATABASE_URI"
) -> Engine:
    """A NullPool engine for ``raw_url`` (normalised, see :mod:`.urls`)."""
    from sqlalchemy import create_engine
    from sqlalchemy import event
    from sqlalchemy.pool import NullPool

    url = normalize_url(raw_url, key=key)
    engine = create_engine(
        url,
        poolclass=NullPool,
        hide_parameters=True,
        connect_args=connect_args(url, connect_timeout),
    )
    event.listen(engine, "handle_error", _mark_pooler_disconnects)
    if url.get_backend_name() == "sqlite":
        _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite recipe: real transactions around DDL.

    The sqlite3 module otherwise commits implicitly before DDL, which would
    leave a half-applied migration; ``BEGIN IMMEDIATE`` also takes the write
    lock up front, so two migrators serialise instead of deadlocking.

    A connection in ``AUTOCOMMIT`` (a no-transaction migration) gets no
    ``BEGIN``: SQLAlchemy still fires ``begin`` for it but never commits, so
    an explicit one would be rolled back when the connection closes, losing
    every statement while the ledger row (written on another connection)
    says the migration was applied.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: t.Any, record: t.Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: t.Any) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # sqlite3 with isolation_level None: each statement commits by itself
        conn.exec_driver_sql("BEGIN IMMEDIATE")
