"""The transient/permanent table, on real driver errors."""

from __future__ import annotations

import threading

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from flask_safe_migrate.classify import Transience
from flask_safe_migrate.classify import classify


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("SSL connection has been closed unexpectedly", Transience.DISCONNECT),
        ("SSL SYSCALL error: EOF detected", Transience.DISCONNECT),
        (
            "server closed the connection unexpectedly\n\tThis probably means...",
            Transience.DISCONNECT,
        ),
        ("query_wait_timeout\nserver closed the connection unexpectedly", Transience.DISCONNECT),
        (
            'connection to server at "127.0.0.1", port 6432 failed: Connection refused',
            Transience.UNAVAILABLE,
        ),
        ("FATAL:  no more connections allowed (max_client_conn)", Transience.UNAVAILABLE),
        (
            "FATAL:  server login has been failing, try again later (server_login_retry)",
            Transience.UNAVAILABLE,
        ),
        ("ERROR:  pgbouncer cannot connect to server", Transience.UNAVAILABLE),
        ("FATAL:  (EMAXCONN) Max client connections reached", Transience.UNAVAILABLE),
        (
            "FATAL:  (EDBHANDLEREXITED) DbHandler exited. Check logs for more information.",
            Transience.DISCONNECT,
        ),
        ("FATAL:  the database system is starting up", Transience.UNAVAILABLE),
        ("FATAL:  sorry, too many clients already", Transience.UNAVAILABLE),
        ("FATAL:  terminating connection due to administrator command", Transience.DISCONNECT),
        ('FATAL:  password authentication failed for user "app"', None),
        ('FATAL:  database "nope" does not exist', None),
        ("FATAL:  no such database: nope", None),
        ("FATAL:  unsupported startup parameter: options", None),
        ("FATAL:  (ENOTFOUND) Tenant or user not found", None),
        ('FATAL:  (EWRONGPASSWORD) password authentication failed for user "app"', None),
        ('syntax error at or near "SELEC"', None),
        (
            'connection to server at "127.0.0.1", port 5432 failed: server offered'
            " SCRAM-SHA-256-PLUS authentication over a non-SSL connection",
            None,
        ),
    ],
)
def test_message_table_for_errors_without_sqlstate(
    message: str, expected: Transience | None
) -> None:
    # psycopg2 reports connect-time and connection-loss errors with no SQLSTATE,
    # exactly like this: an OperationalError carrying libpq's text.
    assert classify(psycopg2.OperationalError(message)) is expected


def test_non_database_errors_are_never_retried() -> None:
    assert classify(TypeError("server closed the connection unexpectedly")) is None
    assert classify(RuntimeError("SSL SYSCALL error: EOF detected")) is None


def test_sqlite_database_is_locked_is_transient(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0.01, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as info:
        other.execute("BEGIN IMMEDIATE")
    holder.execute("ROLLBACK")
    assert "database is locked" in str(info.value)
    assert classify(info.value) is Transience.UNAVAILABLE


def _error_of(engine: sa.Engine, sql: str) -> sa.exc.DBAPIError:
    with pytest.raises(sa.exc.DBAPIError) as info:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    return info.value


def test_real_server_errors(pg_url: str) -> None:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (id int primary key)")
        conn.exec_driver_sql("insert into t values (1)")

    syntax = _error_of(engine, "selec 1")
    assert syntax.orig.pgcode == "42601" and classify(syntax) is None
    unique = _error_of(engine, "insert into t values (1)")
    assert unique.orig.pgcode == "23505" and classify(unique) is None
    missing = _error_of(engine, "select * from nope")
    assert missing.orig.pgcode == "42P01" and classify(missing) is None
    in_tx = _error_of(engine, "create index concurrently i on t (id)")
    assert in_tx.orig.pgcode == "25001" and classify(in_tx) is None

    # lock_timeout expiring: 55P03, retried.
    holder = engine.connect()
    tx = holder.begin()
    holder.exec_driver_sql("lock table t in access exclusive mode")
    try:
        locked = _error_of(engine, "set local lock_timeout = '100ms'; select * from t")
    finally:
        tx.rollback()
        holder.close()
    assert locked.orig.pgcode == "55P03" and classify(locked) is Transience.LOCK_TIMEOUT


def test_real_deadlock_is_a_conflict(pg_url: str) -> None:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table a (id int); create table b (id int)")
    first = engine.connect()
    tx = first.begin()
    first.exec_driver_sql("lock table a in access exclusive mode")
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("lock table b in access exclusive mode")
                conn.exec_driver_sql("lock table a in access exclusive mode")
        except sa.exc.DBAPIError as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    import time

    time.sleep(0.3)
    try:
        first.exec_driver_sql("lock table b in access exclusive mode")
    except sa.exc.DBAPIError as exc:
        errors.append(exc)
    tx.rollback()
    first.close()
    thread.join(10)
    deadlocks = [e for e in errors if getattr(e.orig, "pgcode", None) == "40P01"]
    assert deadlocks, errors
    assert classify(deadlocks[0]) is Transience.CONFLICT


def test_terminated_backend_is_a_disconnect(pg_url: str) -> None:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    victim = engine.connect()
    pid = victim.exec_driver_sql("select pg_backend_pid()").scalar()
    with engine.connect() as killer:
        killer.exec_driver_sql(f"select pg_terminate_backend({pid})")
    with pytest.raises(sa.exc.DBAPIError) as info:
        victim.exec_driver_sql("select 1")
    victim.close()
    assert classify(info.value) is Transience.DISCONNECT
