"""unique-constraint-without-index (SM109)

## What it does
Flags ``ADD CONSTRAINT ... UNIQUE (...)`` / ``PRIMARY KEY (...)`` (and
``ADD COLUMN ... UNIQUE`` / ``PRIMARY KEY``) on an existing table, unless
it adopts an existing index with ``USING INDEX``.

## Why is this bad?
The constraint builds its index while holding ``ACCESS EXCLUSIVE`` on the
table: reads and writes wait for the whole build.

## Use instead
``CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (...)`` in a
no-transaction migration, then ``ALTER TABLE t ADD CONSTRAINT c UNIQUE
USING INDEX i`` (a brief lock).
"""

from __future__ import annotations

import typing as t

from ._context import Context
from ._context import column_constraints
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement
from ._sql import alter_commands
from ._sql import relname

RULE = Rule(
    code="SM109",
    name="unique-constraint-without-index",
    point=0,
    severity=Severity.ERROR,
    summary="a UNIQUE / PRIMARY KEY constraint that builds its index under ACCESS EXCLUSIVE",
    fix=(
        "CREATE UNIQUE INDEX CONCURRENTLY first (no-transaction migration), then "
        "ADD CONSTRAINT ... UNIQUE USING INDEX"
    ),
    doc=__doc__ or "",
)

_KINDS = {"CONSTR_UNIQUE": "UNIQUE", "CONSTR_PRIMARY": "PRIMARY KEY"}


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a unique or primary key constraint that builds its own index."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if table is None or not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        constraint = (cmd.get("def") or {}).get("Constraint") or {}
        kind = _KINDS.get(str(constraint.get("contype")))
        if cmd.get("subtype") == "AT_AddConstraint" and kind and not constraint.get("indexname"):
            yield ctx.finding(
                RULE,
                stmt,
                f"ADD {kind} on {table} builds its index under ACCESS EXCLUSIVE: reads and "
                "writes wait for the whole build",
            )
    for column, constraint in column_constraints(stmt.node):
        kind = _KINDS.get(str(constraint.get("contype")))
        if kind:
            yield ctx.finding(
                RULE,
                stmt,
                f"ADD COLUMN {column} ... {kind} on {table} builds an index under ACCESS EXCLUSIVE",
            )
