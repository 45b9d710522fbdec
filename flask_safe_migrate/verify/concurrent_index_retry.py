"""concurrent-index-retry (SM103)

## What it does
Flags ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` retried outside the
runner: sent through a retry function (``execute_with_retry(engine,
"CREATE INDEX CONCURRENTLY IF NOT EXISTS ...")`` in application code), run
by ``conn.execute(...)`` inside a hand-written retry loop (a ``while`` loop,
or ``for ... in range(...)``, with a ``try``/``except`` around the call), or
run in the body of a retry function itself. Migration files are not
flagged: the runner checks for an INVALID leftover before every retry.

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
    """Flag a concurrent, IF NOT EXISTS index build run through a hand-written retry.

    The extractor marks such statements ``via="retry"``: the argument of a
    retry function, or a call inside a retry loop or a retry function's body.
    """
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
