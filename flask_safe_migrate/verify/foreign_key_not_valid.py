"""foreign-key-not-valid (SM104)

## What it does
Flags a foreign key added to an existing table without ``NOT VALID``, and
a ``VALIDATE CONSTRAINT`` of a foreign key in the same transaction that
added it ``NOT VALID`` (which holds the add's lock during the scan just
the same).

## Why is this bad?
Adding a validated foreign key scans the whole table while holding
``SHARE ROW EXCLUSIVE`` on both the table and the referenced table: writes
to both wait for the scan. Severity ``warning``: reads are not blocked.

## Use instead
``ALTER TABLE t ADD CONSTRAINT ... FOREIGN KEY (...) REFERENCES p (...)
NOT VALID`` (brief lock; new rows are checked from then on), then ``ALTER
TABLE t VALIDATE CONSTRAINT ...`` in a later migration: validation takes
only ``SHARE UPDATE EXCLUSIVE``, so reads and writes go on.
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
    code="SM104",
    name="foreign-key-not-valid",
    point=0,
    severity=Severity.WARNING,
    summary="a foreign key validated while it is added blocks writes on both tables",
    fix=("add it with NOT VALID, and VALIDATE CONSTRAINT in a separate (later) migration"),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a validated foreign key add, or a validation in the adding transaction."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        constraint = (cmd.get("def") or {}).get("Constraint") or {}
        if (
            cmd.get("subtype") == "AT_AddConstraint"
            and constraint.get("contype") == "CONSTR_FOREIGN"
            and not constraint.get("skip_validation")
        ):
            parent = relname(constraint.get("pktable"))
            yield ctx.finding(
                RULE,
                stmt,
                f"the foreign key on {table} is validated as it is added: the whole table is "
                f"scanned while writes to {table} and {parent} wait",
            )
        if cmd.get("subtype") == "AT_ValidateConstraint" and ctx.unit.transactional:
            name = str(cmd.get("name") or "").lower()
            earlier = ctx.added_earlier(name, "CONSTR_FOREIGN")
            if earlier is not None:
                yield ctx.finding(
                    RULE,
                    stmt,
                    f"{name} is validated in the same transaction that added it NOT "
                    f"VALID (line {earlier.line}): the add's SHARE ROW EXCLUSIVE lock "
                    "is held during the whole scan",
                )
    for column, constraint in column_constraints(stmt.node):
        if constraint.get("contype") == "CONSTR_FOREIGN":
            yield ctx.finding(
                RULE,
                stmt,
                f"ADD COLUMN {column} ... REFERENCES validates the new foreign key while it is "
                f"added, holding SHARE ROW EXCLUSIVE on {table} and the referenced table",
            )
