"""concurrent-index-retry (SM103)

## What it does
Flags ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` sent through a retry
function outside the runner (``execute_with_retry(engine, "CREATE INDEX
CONCURRENTLY IF NOT EXISTS ...")`` in application code). Migration files
are not flagged: the runner checks for an INVALID leftover before every
retry.

## Why is this bad?
A concurrent build that fails half-way (a dropped connection, a lock
timeout) leaves an INVALID index behind. The retry's ``IF NOT EXISTS``
then sees the name and succeeds without building anything: the index is
there, unused by the planner, and unique indexes enforce nothing.

## Use instead
Put the statement in a no-transaction migration and let the runner apply
it; or, before each attempt, look up ``pg_index.indisvalid`` and ``DROP
INDEX CONCURRENTLY IF EXISTS`` an invalid index of that name.
"""

from __future__ import annotations

import typing as t

from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement

RULE = Rule(
    code="SM103",
    name="concurrent-index-retry",
    point=0,
    severity=Severity.ERROR,
    summary="a retried CREATE INDEX CONCURRENTLY IF NOT EXISTS can silently keep an INVALID index",
    fix=(
        "apply it as a no-transaction migration through the runner, or drop an INVALID index "
        "of that name (pg_index.indisvalid) before every attempt"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a concurrent, IF NOT EXISTS index build run through a hand-written retry."""
    node = stmt.node
    if (
        stmt.via == "retry"
        and stmt.node_type == "IndexStmt"
        and node.get("concurrent")
        and node.get("if_not_exists")
    ):
        yield ctx.finding(
            RULE,
            stmt,
            "if an attempt fails half-way it leaves an INVALID index, and the retry's IF NOT "
            "EXISTS then skips the build and reports success",
        )
