"""rename-column-or-table (SM111)

## What it does
Flags ``ALTER TABLE ... RENAME [COLUMN] ... TO`` and ``ALTER TABLE ...
RENAME TO`` of a table or column that existed before the migration.

## Why is this bad?
The release still running during the deploy uses the old name: its
queries fail from the moment the rename commits. Severity ``warning``:
whether anything still uses the old name cannot be seen from the
migrations.

## Use instead
Keep the old name, or add the new column, write to both, switch reads,
and drop the old one later (expand/contract); for a table, a view with
the old name can bridge the deploy.
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
    code="SM111",
    name="rename-column-or-table",
    point=0,
    severity=Severity.WARNING,
    summary="renaming a column or table the running release still uses",
    fix=(
        "expand/contract: add the new name, write both, switch reads, drop the old name in a "
        "later release (a view can bridge a table rename)"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag renames of existing tables and columns."""
    if stmt.node_type != "RenameStmt":
        return
    node = stmt.node
    table = relname(node.get("relation"))
    kind = node.get("renameType")
    if not ctx.existing(table):
        return
    if kind == "OBJECT_COLUMN":
        yield ctx.finding(
            RULE,
            stmt,
            f"renaming {table}.{node.get('subname')} to {node.get('newname')}: the release "
            "still running uses the old name",
        )
    elif kind == "OBJECT_TABLE":
        yield ctx.finding(
            RULE,
            stmt,
            f"renaming table {table} to {node.get('newname')}: the release still running uses "
            "the old name",
        )
