"""rewriting-type-change (SM107)

## What it does
Flags ``ALTER COLUMN ... TYPE`` on an existing table unless the change is
known not to rewrite: ``varchar(n)`` to a longer ``varchar``, to
unconstrained ``varchar`` or to ``text``; ``text`` to unconstrained
``varchar``; ``numeric(p, s)`` to a larger precision with the same scale
or to unconstrained ``numeric``; ``cidr`` to ``inet``; the same type. The
current type is learnt from the scanned migrations; when it is unknown,
or the change has a ``USING`` clause, the change is flagged.

## Why is this bad?
Any other type change rewrites the table and all its indexes under
``ACCESS EXCLUSIVE``: reads and writes wait for minutes on a big table
(``int`` to ``bigint`` included).

## Use instead
Add a new column, write to both, backfill in batches, switch reads, drop
the old column (expand/contract).
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
from ._sql import type_name

RULE = Rule(
    code="SM107",
    name="rewriting-type-change",
    point=0,
    severity=Severity.ERROR,
    summary="a column type change that rewrites the table under ACCESS EXCLUSIVE",
    fix=(
        "add a new column, dual-write, backfill in batches and swap (expand/contract); only "
        "binary-coercible changes (varchar(n) -> varchar(m > n) or text) are in-place"
    ),
    doc=__doc__ or "",
)

_ALIASES = {
    "character varying": "varchar",
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "decimal": "numeric",
    "timestamp with time zone": "timestamptz",
}


def _norm(kind: tuple[str, tuple[int, ...]]) -> tuple[str, tuple[int, ...]]:
    return (_ALIASES.get(kind[0], kind[0]), kind[1])


def in_place(old: tuple[str, tuple[int, ...]], new: tuple[str, tuple[int, ...]]) -> bool:
    """Whether changing a column from ``old`` to ``new`` keeps the table as it is."""
    (old_name, old_mods), (new_name, new_mods) = _norm(old), _norm(new)
    if (old_name, old_mods) == (new_name, new_mods):
        return True
    if old_name == "varchar" and new_name == "text":
        return True
    if old_name == "varchar" and new_name == "varchar":
        return not new_mods or (bool(old_mods) and new_mods[0] >= old_mods[0])
    if old_name == "text" and new_name == "varchar":
        return not new_mods
    if old_name == "numeric" and new_name == "numeric":
        if not new_mods:
            return True
        if len(old_mods) == 2 and len(new_mods) == 2:
            return new_mods[0] >= old_mods[0] and new_mods[1] == old_mods[1]
        return False
    if (old_name, new_name) in (("cidr", "inet"), ("varbit", "varbit")):
        return not new_mods or (bool(old_mods) and new_mods[0] >= old_mods[0])
    return False


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a type change that is not known to be in-place."""
    if stmt.node_type != "AlterTableStmt":
        return
    table = relname(stmt.node.get("relation"))
    if table is None or not ctx.existing(table):
        return
    for cmd in alter_commands(stmt.node):
        if cmd.get("subtype") != "AT_AlterColumnType":
            continue
        column = str(cmd.get("name") or "").lower()
        definition = (cmd.get("def") or {}).get("ColumnDef") or {}
        new = type_name(definition.get("typeName"))
        old = ctx.schema.types.get(table, {}).get(column)
        shown = new[0] + (f"({', '.join(map(str, new[1]))})" if new[1] else "")
        if definition.get("raw_default"):
            yield ctx.finding(
                RULE,
                stmt,
                f"changing {table}.{column} to {shown} with USING rewrites the table and its "
                "indexes under ACCESS EXCLUSIVE",
            )
        elif old is None:
            yield ctx.finding(
                RULE,
                stmt,
                f"changing {table}.{column} to {shown}: its current type is not in the scanned "
                "migrations, so the change cannot be shown to avoid a table rewrite under "
                "ACCESS EXCLUSIVE",
            )
        elif not in_place(old, new):
            was = old[0] + (f"({', '.join(map(str, old[1]))})" if old[1] else "")
            yield ctx.finding(
                RULE,
                stmt,
                f"changing {table}.{column} from {was} to {shown} rewrites the table and its "
                "indexes under ACCESS EXCLUSIVE",
            )
