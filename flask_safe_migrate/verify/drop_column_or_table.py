"""drop-column-or-table (SM110)

## What it does
Flags ``DROP TABLE`` and ``ALTER TABLE ... DROP COLUMN`` of a table or
column that existed before the migration (down parts are not checked).

## Why is this bad?
During a rolling deploy the previous release is still running, and it
still reads and writes what is being dropped: its queries fail until the
last old instance is gone. The drop itself also waits for ``ACCESS
EXCLUSIVE``. Severity ``warning``: whether anything still uses the column
or table cannot be seen from the migrations.

## Use instead
Stop using the column or table in a release first (for SQLAlchemy models,
remove the attribute or mark it deferred), deploy, and drop it in a later
migration; say so in an allow comment.
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
from ._sql import strings

RULE = Rule(
    code="SM110",
    name="drop-column-or-table",
    point=0,
    severity=Severity.WARNING,
    summary="dropping a column or table the running release may still use",
    fix=(
        "drop it only after a release that no longer uses it is fully deployed; then accept "
        "it with '-- safe-migrate: allow drop-column-or-table -- <reason>'"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag DROP TABLE and DROP COLUMN on objects that existed before."""
    node = stmt.node
    if stmt.node_type == "DropStmt" and node.get("removeType") == "OBJECT_TABLE":
        for item in node.get("objects") or []:
            names = strings(item.get("List", {}).get("items"))
            table = names[-1] if names else None
            if ctx.existing(table):
                yield ctx.finding(
                    RULE,
                    stmt,
                    f"DROP TABLE {table}: queries of the release still running fail until it "
                    "is replaced",
                )
    elif stmt.node_type == "AlterTableStmt":
        table = relname(node.get("relation"))
        if not ctx.existing(table):
            return
        for cmd in alter_commands(node):
            if cmd.get("subtype") == "AT_DropColumn":
                yield ctx.finding(
                    RULE,
                    stmt,
                    f"DROP COLUMN {table}.{cmd.get('name')}: the release still running may read "
                    "or write it",
                )
