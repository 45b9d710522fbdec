"""volatile-default (SM108)

## What it does
Flags ``ADD COLUMN`` on an existing table whose default is volatile
(``clock_timestamp()``, ``random()``, ``gen_random_uuid()``, ``nextval()``,
or any function not known to be stable), or that is ``serial``/``bigserial``,
``GENERATED ... AS IDENTITY`` or ``GENERATED ... STORED``. Constants,
casts of constants and ``now()`` / ``CURRENT_TIMESTAMP`` are fine.

## Why is this bad?
Since PostgreSQL 11 a constant default is stored once in the catalog. A
volatile one must be computed per row, so the table and its indexes are
rewritten under ``ACCESS EXCLUSIVE``: reads and writes wait.

## Use instead
Add the column without a default (or with a constant one), ``ALTER COLUMN
... SET DEFAULT`` for new rows, and backfill existing rows in batches.
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
from ._sql import strings
from ._sql import type_name
from ._sql import walk

RULE = Rule(
    code="SM108",
    name="volatile-default",
    point=0,
    severity=Severity.ERROR,
    summary="ADD COLUMN with a volatile default (or serial/identity/stored) rewrites the table",
    fix=(
        "add the column without a default or with a constant one, SET DEFAULT for new rows, "
        "and backfill existing rows in batches"
    ),
    doc=__doc__ or "",
)

#: Functions known not to be volatile, as defaults: evaluated once for all rows.
STABLE = frozenset(
    {
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "current_date",
        "lower",
        "upper",
        "coalesce",
        "concat",
        "make_date",
        "make_interval",
        "jsonb_build_object",
        "json_build_object",
        "jsonb_build_array",
        "json_build_array",
        "to_jsonb",
        "array_fill",
        "length",
        "abs",
    }
)
_SERIAL = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a rewriting ADD COLUMN."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if table is None or not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        column = (cmd.get("def") or {}).get("ColumnDef")
        if cmd.get("subtype") == "AT_AddColumn" and column:
            kind = type_name(column.get("typeName"))[0]
            if kind in _SERIAL:
                yield ctx.finding(
                    RULE,
                    stmt,
                    f"adding {kind} column {column.get('colname')} to {table} fills every row "
                    "from a sequence: the table is rewritten under ACCESS EXCLUSIVE",
                )
    for name, constraint in column_constraints(stmt.node):
        contype = constraint.get("contype")
        if contype == "CONSTR_IDENTITY" or (
            contype == "CONSTR_GENERATED" and constraint.get("generated_when")
        ):
            what = "an identity" if contype == "CONSTR_IDENTITY" else "a stored generated"
            yield ctx.finding(
                RULE,
                stmt,
                f"adding {name} to {table} as {what} column computes it for every row: the "
                "table is rewritten under ACCESS EXCLUSIVE",
            )
        elif contype == "CONSTR_DEFAULT":
            for kind, node in walk({"x": constraint.get("raw_expr")}):
                if kind != "FuncCall":
                    continue
                function = (strings(node.get("funcname")) or [""])[-1]
                if function not in STABLE:
                    yield ctx.finding(
                        RULE,
                        stmt,
                        f"the default {function}() of new column {table}.{name} is volatile (or "
                        "not known to be stable): every row gets its own value, so the table is "
                        "rewritten under ACCESS EXCLUSIVE",
                    )
                    break
