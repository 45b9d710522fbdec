"""concurrently-in-transaction (SM102)

## What it does
Flags ``CREATE INDEX CONCURRENTLY``, ``DROP INDEX CONCURRENTLY`` and
``REINDEX ... CONCURRENTLY`` in a migration that runs in a transaction
(a ``.sql`` file without ``-- safe-migrate: no-transaction``, or a ``.py``
migration without ``transaction = False``).

## Why is this bad?
PostgreSQL refuses them inside a transaction block (SQLSTATE 25001,
"cannot run inside a transaction block"): the migration fails at deploy
time, every time.

## Use instead
Move the statement to a migration of its own marked
``-- safe-migrate: no-transaction`` (``transaction = False`` in Python),
written idempotently (``IF NOT EXISTS`` / ``IF EXISTS``).
"""

from __future__ import annotations

import typing as t

from ..sqlsplit import _reindex_concurrently
from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement

RULE = Rule(
    code="SM102",
    name="concurrently-in-transaction",
    point=0,
    severity=Severity.ERROR,
    summary="CONCURRENTLY inside a transactional migration fails at run time",
    fix=(
        "move the statement to its own migration with '-- safe-migrate: no-transaction' "
        "(transaction = False in a .py migration)"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a CONCURRENTLY statement in a transactional migration."""
    if not ctx.migration or ctx.unit.transactional is not True:
        return
    kind, node = stmt.node_type, stmt.node
    if (kind in ("IndexStmt", "DropStmt") and node.get("concurrent")) or _reindex_concurrently(
        kind, node
    ):
        yield ctx.finding(
            RULE,
            stmt,
            "CONCURRENTLY cannot run inside a transaction block, and this migration runs in "
            "one: it fails at deploy time with 'cannot run inside a transaction block'",
        )
