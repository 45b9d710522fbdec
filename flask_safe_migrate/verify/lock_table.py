"""lock-table (SM114)

## What it does
Flags ``LOCK TABLE`` in a mode that blocks writes (``SHARE``, ``SHARE ROW
EXCLUSIVE``, ``EXCLUSIVE``: severity ``warning``) or reads as well
(``ACCESS EXCLUSIVE``, the default mode of ``LOCK``: severity ``error``).
Tables created in the same migration are exempt.

## Why is this bad?
The lock is held until the migration's transaction ends, so everything
after the ``LOCK`` runs with the table blocked. With ``ACCESS EXCLUSIVE``
even ``SELECT`` waits. (The runner's ``lock_timeout`` bounds the wait *for*
the lock, not how long it is held.)

## Use instead
Prefer statements that take weaker locks (``CONCURRENTLY``, ``NOT VALID``
+ ``VALIDATE``). When a write lock is really needed (a dedup that must not
race with inserts), use the weakest mode that works, keep the transaction
short, and say why in an allow comment.
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
    code="SM114",
    name="lock-table",
    point=0,
    severity=Severity.ERROR,
    summary="LOCK TABLE blocks writes (warning) or reads and writes (ACCESS EXCLUSIVE: error)",
    fix=(
        "take weaker locks (CONCURRENTLY, NOT VALID + VALIDATE); if the lock is needed, use "
        "the weakest mode and explain it with '-- safe-migrate: allow lock-table -- <reason>'"
    ),
    doc=__doc__ or "",
)

#: PostgreSQL's lock mode numbers (lockdefs.h), from SHARE up.
MODES = {5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag LOCK TABLE in a write- or read-blocking mode on existing tables."""
    if stmt.node_type != "LockStmt":
        return
    mode = int(stmt.node.get("mode") or 8)
    if mode not in MODES:
        return
    tables = [relname(r.get("RangeVar")) for r in stmt.node.get("relations") or []]
    tables = [table for table in tables if ctx.existing(table)]
    if not tables:
        return
    blocked = "reads and writes" if mode == 8 else "writes"
    yield ctx.finding(
        RULE,
        stmt,
        f"LOCK TABLE {', '.join(t_ for t_ in tables if t_)} IN {MODES[mode]} MODE blocks "
        f"{blocked} until the migration's transaction ends",
        severity=Severity.ERROR if mode == 8 else Severity.WARNING,
    )
