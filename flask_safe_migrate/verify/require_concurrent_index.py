"""require-concurrent-index (SM101)

## What it does
Flags ``CREATE [UNIQUE] INDEX`` without ``CONCURRENTLY`` on a table that
existed before the migration (a table created in the same migration is
exempt: it is empty and nobody else can see it yet).

## Why is this bad?
A plain index build takes a ``SHARE`` lock on the table for the whole
build: reads go on, but every ``INSERT``, ``UPDATE`` and ``DELETE`` waits,
for minutes on a big table. Severity ``warning``: reads are not blocked,
and on a small table the atomicity of a transactional build can be worth
it (say why with an allow comment).

## Use instead
``CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON table (...)`` in a
no-transaction migration of its own (``-- safe-migrate: no-transaction``);
the runner drops an INVALID leftover before retrying it.
"""

from __future__ import annotations

import typing as t

from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement
from ._sql import relname

RULE = Rule(
    code="SM101",
    name="require-concurrent-index",
    point=0,
    severity=Severity.WARNING,
    summary="CREATE INDEX without CONCURRENTLY blocks writes for the whole build",
    fix=(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... in a migration of its own with "
        "'-- safe-migrate: no-transaction'"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a non-concurrent index build on an existing table."""
    if stmt.node_type != "IndexStmt" or stmt.node.get("concurrent"):
        return
    table = relname(stmt.node.get("relation"))
    if ctx.existing(table):
        yield ctx.finding(
            RULE,
            stmt,
            f"CREATE INDEX on {table} without CONCURRENTLY takes a SHARE lock: writes to "
            f"{table} wait until the whole index is built",
        )
