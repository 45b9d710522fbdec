"""check-not-valid (SM105)

## What it does
Flags a ``CHECK`` constraint added to an existing table without ``NOT
VALID``, a column added with a ``CHECK`` (``ADD COLUMN c int CHECK (c >
0)``, which cannot be ``NOT VALID`` and is checked against every row), and
a ``VALIDATE CONSTRAINT`` of a check in the same transaction that added it
``NOT VALID``.

## Why is this bad?
Adding a validated check scans the whole table under ``ACCESS
EXCLUSIVE``: every query on the table, reads included, waits for the scan.

## Use instead
``ALTER TABLE t ADD CONSTRAINT c CHECK (...) NOT VALID`` (a brief lock;
new rows are checked from then on), then ``ALTER TABLE t VALIDATE
CONSTRAINT c`` in a later migration (``SHARE UPDATE EXCLUSIVE``: reads and
writes go on). For a new column: add it without the ``CHECK`` first, then
the constraint the same way.
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
    code="SM105",
    name="check-not-valid",
    point=0,
    severity=Severity.ERROR,
    summary="a CHECK validated while it is added blocks reads and writes during the scan",
    fix=(
        "add it with NOT VALID, and VALIDATE CONSTRAINT in a separate (later) migration; for "
        "ADD COLUMN ... CHECK, add the column without it, then ADD CONSTRAINT ... CHECK (...) "
        "NOT VALID"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a validated CHECK add, or a validation in the adding transaction."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        constraint = (cmd.get("def") or {}).get("Constraint") or {}
        if (
            cmd.get("subtype") == "AT_AddConstraint"
            and constraint.get("contype") == "CONSTR_CHECK"
            and not constraint.get("skip_validation")
        ):
            yield ctx.finding(
                RULE,
                stmt,
                f"the CHECK on {table} is validated as it is added: the whole table is scanned "
                "under ACCESS EXCLUSIVE, blocking reads and writes",
            )
        if cmd.get("subtype") == "AT_ValidateConstraint" and ctx.unit.transactional:
            name = str(cmd.get("name") or "").lower()
            earlier = ctx.added_earlier(name, "CONSTR_CHECK")
            if earlier is not None:
                yield ctx.finding(
                    RULE,
                    stmt,
                    f"{name} is validated in the same transaction that added it NOT "
                    f"VALID (line {earlier.line}): the add's ACCESS EXCLUSIVE lock is "
                    "held during the whole scan",
                )
    for column, constraint in column_constraints(stmt.node):
        if constraint.get("contype") == "CONSTR_CHECK":
            yield ctx.finding(
                RULE,
                stmt,
                f"ADD COLUMN {column} ... CHECK checks every existing row of {table} as the column "
                "is added: the whole table is scanned under ACCESS EXCLUSIVE, blocking reads "
                "and writes (a column constraint cannot be NOT VALID)",
            )
