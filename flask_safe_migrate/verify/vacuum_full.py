"""vacuum-full (SM112)

## What it does
Flags ``VACUUM FULL`` of a table, in a migration or in scanned application code.

## Why is this bad?
``VACUUM FULL`` rewrites the whole table under ``ACCESS EXCLUSIVE``: every
query on it, reads included, waits until the copy is done.

## Use instead
Plain ``VACUUM`` (no lock against reads or writes), or an online repack
(``pg_repack``; ``REPACK (CONCURRENTLY)`` on PostgreSQL 19) outside the
deploy.
"""

from __future__ import annotations

import typing as t

from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement

RULE = Rule(
    code="SM112",
    name="vacuum-full",
    point=0,
    severity=Severity.ERROR,
    summary="VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
    fix="use plain VACUUM, or pg_repack outside the deploy",
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag VACUUM FULL."""
    if stmt.node_type != "VacuumStmt":
        return
    for option in stmt.node.get("options") or []:
        if option.get("DefElem", {}).get("defname") == "full":
            yield ctx.finding(
                RULE,
                stmt,
                "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE: reads and writes wait "
                "for the whole copy",
            )
            return
