"""set-not-null (SM106)

## What it does
Flags ``ALTER COLUMN ... SET NOT NULL`` on an existing table unless a
validated ``CHECK (col IS NOT NULL)`` on that column was seen earlier.

## Why is this bad?
``SET NOT NULL`` scans the whole table under ``ACCESS EXCLUSIVE`` to prove
there is no NULL: reads and writes wait. PostgreSQL 12+ skips the scan
when a valid ``CHECK (col IS NOT NULL)`` already proves it.

## Use instead
``ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID``; backfill;
``VALIDATE CONSTRAINT c`` (a later migration); then ``SET NOT NULL``
(no scan) and ``DROP CONSTRAINT c``.
"""

from __future__ import annotations

import typing as t

from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement
from ._sql import alter_commands
from ._sql import relname

RULE = Rule(
    code="SM106",
    name="set-not-null",
    point=0,
    severity=Severity.ERROR,
    summary="SET NOT NULL scans the table under ACCESS EXCLUSIVE",
    fix=(
        "first ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID and VALIDATE it in a later "
        "migration; then SET NOT NULL skips the scan"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag SET NOT NULL without a validated NOT NULL check."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if table is None or not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        column = str(cmd.get("name") or "").lower()
        if cmd.get("subtype") == "AT_SetNotNull" and not ctx.schema.not_null_checked(table, column):
            yield ctx.finding(
                RULE,
                stmt,
                f"SET NOT NULL on {table}.{column} scans the whole table under ACCESS "
                "EXCLUSIVE (no validated CHECK (... IS NOT NULL) was seen before it)",
            )
