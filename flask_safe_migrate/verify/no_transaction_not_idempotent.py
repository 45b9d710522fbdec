"""no-transaction-not-idempotent (SM115)

## What it does
Flags a statement of a ``-- safe-migrate: no-transaction`` ``.sql``
migration (up or down part) that is not in the runner's idempotent
allow-list (:data:`flask_safe_migrate.sqlsplit.NO_TRANSACTION_ALLOWED`,
the very definition the runner enforces) and carries no
``-- safe-migrate: allow non-idempotent -- <reason>`` marker.

## Why is this bad?
A no-transaction migration cannot be rolled back: after a dropped
connection the runner retries it from the top, running the statements
that already succeeded a second time. A non-idempotent one then fails
(``already exists``) or does its work twice. The runner refuses such a
file before touching the database; verify says so in CI first.

## Use instead
The idempotent form (``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, ``DROP
... IF EXISTS``, ``ADD COLUMN IF NOT EXISTS``...), or move the statement to
a transactional migration.
"""

from __future__ import annotations

import typing as t

from ..sqlsplit import NO_TRANSACTION_ALLOWED
from ..sqlsplit import idempotent_form
from ._context import Context
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement

RULE = Rule(
    code="SM115",
    name="no-transaction-not-idempotent",
    point=0,
    severity=Severity.ERROR,
    summary="a statement outside the runner's idempotent allow-list in a no-transaction migration",
    fix=(
        "use an idempotent form ("
        + "; ".join(form.sql for form in NO_TRANSACTION_ALLOWED[:4])
        + "; ...), or move it to a transactional migration"
    ),
    doc=__doc__ or "",
)


def check(stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]:
    """Flag a non-idempotent statement in a no-transaction ``.sql`` migration."""
    if ctx.unit.kind != "sql" or ctx.unit.transactional is not False or stmt.raw is None:
        return
    if stmt.raw.allow_non_idempotent is not None or idempotent_form(stmt.raw) is not None:
        return
    yield ctx.finding(
        RULE,
        stmt,
        "this migration runs without a transaction, so a retry after a dropped connection "
        "runs this statement again, and it is not idempotent (the runner refuses the file)",
    )
