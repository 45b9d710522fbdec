"""The runner's own bookkeeping SQL, sent on the driver's cursor, several statements at a time.

A migration's bookkeeping (its settings, the advisory lock and the ledger
re-read, its ledger row) is a handful of tiny statements: sent through
SQLAlchemy one by one, each costs a compile and a network round trip, more
than a small migration itself. Here they go straight to the DBAPI cursor as
one simple-query message of several statements where that keeps their
meaning (Postgres runs them in order, and under READ COMMITTED each takes a
new snapshot when it starts). Such a message cannot carry parameters
(psycopg 3 sends parameters with the extended protocol, one statement per
message), so values are inlined, and only values that are ours: integers,
versions, names and checksums that matched the loader's patterns, and the
``host:pid`` recorded as ``applied_by``, each through :func:`literal`.
Migration SQL never goes through here.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def literal(value: str) -> str:
    """``value`` as a SQL string literal, whatever ``standard_conforming_strings`` is set to."""
    if "\x00" in value:
        raise ValueError("a SQL string cannot hold a NUL character")
    quoted = value.replace("'", "''")
    if "\\" in quoted:
        # E'' reads backslashes the same way with standard_conforming_strings on or off.
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return f"'{quoted}'"


def run(conn: Connection, sql: str) -> list[tuple[t.Any, ...]]:
    """Execute ``sql`` (one or more statements, no parameters) on ``conn``'s driver connection.

    :returns: the rows of the last statement (``[]`` if it returns none).
        psycopg2 keeps only the last result; psycopg 3 keeps all of them,
        positioned on the first, so it is moved to the last.
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        if not type(cursor).__module__.startswith("psycopg2"):
            while cursor.nextset():
                pass
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()
