"""cluster (SM113)

## What it does
Flags ``CLUSTER`` of a table, in a migration or in scanned application code.

## Why is this bad?
``CLUSTER`` rewrites the table in index order under ``ACCESS EXCLUSIVE``:
every query on it, reads included, waits until the copy is done.

## Use instead
``pg_repack --order-by`` outside the deploy, or leave the physical order
alone (an index gives the order queries need).
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
    code="SM113",
    name="cluster",
    point=0,
    severity=Severity.ERROR,
    summary="CLUSTER rewrites the table under ACCESS EXCLUSIVE",
    fix="use pg_repack --order-by outside the deploy, or drop the CLUSTER",
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag CLUSTER."""
    if stmt.node_type == "ClusterStmt":
        table = relname(stmt.node.get("relation")) or "every clustered table"
        yield ctx.finding(
            RULE,
            stmt,
            f"CLUSTER rewrites {table} under ACCESS EXCLUSIVE: reads and writes wait for the "
            "whole copy",
        )
