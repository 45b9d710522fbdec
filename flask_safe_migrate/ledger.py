"""The ledger: one row per applied migration, written in the migration's own transaction.

Because the row commits atomically with the migration, "is my row there?"
answers the question a lost COMMIT reply leaves open, and the unique
``version`` makes a second application impossible even if exclusion between
instances ever failed.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing as t

from sqlalchemy import text

from . import rawsql
from .executor import RetryPolicy
from .executor import retry_call

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .database import MigrationDatabase

T = t.TypeVar("T")

COLUMNS = ("version", "name", "checksum", "applied_at", "duration_ms", "attempts", "applied_by")


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A ledger row."""

    version: str
    name: str
    checksum: str
    applied_at: datetime.datetime | str | None
    duration_ms: int
    attempts: int
    applied_by: str


def create_statements(db: MigrationDatabase) -> list[str]:
    """DDL for the ledger and the lease table (idempotent)."""
    stamp = "timestamptz" if db.is_postgres else "timestamp"
    now = "now()" if db.is_postgres else "CURRENT_TIMESTAMP"
    real = "double precision" if db.is_postgres else "real"
    statements = []
    if db.ledger_schema and db.is_postgres:
        statements.append(f'CREATE SCHEMA IF NOT EXISTS "{db.ledger_schema}"')
    statements += [
        f"CREATE TABLE IF NOT EXISTS {db.ledger} ("
        " version text PRIMARY KEY,"
        " name text NOT NULL,"
        " checksum text NOT NULL,"
        f" applied_at {stamp} NOT NULL DEFAULT {now},"
        " duration_ms integer NOT NULL,"
        " attempts integer NOT NULL,"
        " applied_by text NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {db.lease_table} ("
        " id integer PRIMARY KEY CHECK (id = 1),"
        " holder text NOT NULL,"
        f" acquired_at {real} NOT NULL,"
        f" expires_at {real} NOT NULL)",
    ]
    return statements


def ensure_tables(conn: Connection, db: MigrationDatabase) -> None:
    """Create the tables if missing, serialised between instances.

    Concurrent ``CREATE TABLE IF NOT EXISTS`` can fail with a unique
    violation in Postgres' catalog, so creators queue on a transaction-level
    advisory lock (held for a few milliseconds, and gone with the
    transaction even through a transaction pooler).

    On Postgres the lock and the DDL travel as one message (see
    :mod:`.rawsql`): this is the first unit of work on a brand-new database,
    on a brand-new connection, and every round trip it saves is one chance
    less for a flaky network to cut it.
    """
    if db.is_postgres:
        lock = f"SELECT pg_advisory_xact_lock({int(db.create_lock_key)})"
        rawsql.run(conn, ";\n".join([lock, *create_statements(db)]))
        return
    for statement in create_statements(db):
        conn.exec_driver_sql(statement)


def _select(db: MigrationDatabase) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM {db.ledger}"


def _is_missing_table(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    if code == "42P01":
        return True
    return "no such table" in str(exc)


def _fetch_raw(raw_conn: t.Any, sql: str) -> list[t.Any] | None:
    """The rows of ``sql`` on a raw driver connection; ``None`` if the ledger does not exist."""
    cursor = raw_conn.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    except Exception as exc:
        if _is_missing_table(exc):
            return None
        raise
    finally:
        cursor.close()


def read_applied_raw(raw_conn: t.Any, db: MigrationDatabase) -> dict[str, AppliedMigration] | None:
    """All ledger rows, with one query on a raw driver connection; ``None`` if no ledger yet."""
    rows = _fetch_raw(raw_conn, _select(db))
    return None if rows is None else {row[0]: AppliedMigration(*row) for row in rows}


def read_versions_raw(raw_conn: t.Any, db: MigrationDatabase) -> set[str] | None:
    """The applied versions alone, with one query on a raw driver connection; ``None``: no ledger."""
    rows = _fetch_raw(raw_conn, f"SELECT version FROM {db.ledger}")
    return None if rows is None else {row[0] for row in rows}


def read_raw(
    db: MigrationDatabase, policy: RetryPolicy, read: t.Callable[[t.Any, MigrationDatabase], T]
) -> T:
    """``read(raw_conn, db)`` on a new raw driver connection per attempt, retried under ``policy``.

    The "anything pending?" path of every boot: one query, no SQLAlchemy
    engine and its set-up queries (see :meth:`.MigrationDatabase.raw_connect`).
    """

    def attempt(_: int) -> T:
        conn = db.raw_connect()
        try:
            return read(conn, db)
        finally:
            conn.close()

    result, _ = retry_call(attempt, policy=policy, label="reading the migration ledger")
    return result


def read_applied(conn: Connection, db: MigrationDatabase) -> dict[str, AppliedMigration]:
    """All ledger rows, on a SQLAlchemy connection (the tables must exist)."""
    return {row[0]: AppliedMigration(*row) for row in conn.exec_driver_sql(_select(db))}


def select_one_sql(db: MigrationDatabase, version: str) -> str:
    """The query :func:`read_one` runs, with ``version`` inlined (to send with other statements)."""
    return f"{_select(db)} WHERE version = {rawsql.literal(version)}"


def insert_sql(
    db: MigrationDatabase,
    *,
    version: str,
    name: str,
    checksum: str,
    duration_ms: int,
    attempts: int,
    applied_by: str,
) -> str:
    """The statement :func:`insert_row` runs, with its values inlined (see :mod:`.rawsql`)."""
    values = ", ".join(
        (
            rawsql.literal(version),
            rawsql.literal(name),
            rawsql.literal(checksum),
            str(int(duration_ms)),
            str(int(attempts)),
            rawsql.literal(applied_by),
        )
    )
    return (
        f"INSERT INTO {db.ledger} (version, name, checksum, duration_ms, attempts, applied_by)"
        f" VALUES ({values})"
    )


def read_one(conn: Connection, db: MigrationDatabase, version: str) -> AppliedMigration | None:
    row = conn.execute(
        text(f"{_select(db)} WHERE version = :version"), {"version": version}
    ).first()
    return AppliedMigration(*row) if row is not None else None


def insert_row(
    conn: Connection,
    db: MigrationDatabase,
    *,
    version: str,
    name: str,
    checksum: str,
    duration_ms: int,
    attempts: int,
    applied_by: str,
    if_absent: bool = False,
) -> None:
    """Record ``version`` as applied (``if_absent``: a no-op if it already is)."""
    conflict = " ON CONFLICT (version) DO NOTHING" if if_absent else ""
    conn.execute(
        text(
            f"INSERT INTO {db.ledger} (version, name, checksum, duration_ms, attempts, applied_by)"
            f" VALUES (:version, :name, :checksum, :duration_ms, :attempts, :applied_by){conflict}"
        ),
        {
            "version": version,
            "name": name,
            "checksum": checksum,
            "duration_ms": duration_ms,
            "attempts": attempts,
            "applied_by": applied_by,
        },
    )


def delete_row(conn: Connection, db: MigrationDatabase, version: str) -> int:
    """Forget ``version`` (rollback, ``unmark``); returns the number of rows deleted."""
    result = conn.execute(text(f"DELETE FROM {db.ledger} WHERE version = :v"), {"v": version})
    return int(result.rowcount)


def update_checksum(
    conn: Connection, db: MigrationDatabase, version: str, checksum: str, name: str
) -> int:
    """Accept an edited file (``repair``): store its new checksum and name; returns rows updated."""
    result = conn.execute(
        text(f"UPDATE {db.ledger} SET checksum = :checksum, name = :name WHERE version = :v"),
        {"checksum": checksum, "name": name, "v": version},
    )
    return int(result.rowcount)
