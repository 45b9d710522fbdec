"""Rules about the input itself rather than about what it does to the database.

``migration-source-error`` (SM031): the runner would refuse this migration
file (a bad ``-- safe-migrate:`` header directive, a stray or reason-less
``allow non-idempotent`` marker). Verify reports it instead of stopping, so
one run shows every problem.

``bad-suppression`` (SM032): an allow comment without a reason, or naming a
rule that does not exist. It accepts nothing: a waiver nobody can audit, or
one that silently does nothing because of a typo, is worse than none.
"""

from __future__ import annotations

from ._finding import Rule
from ._finding import Severity
from ._finding import rule_doc
from ._suppress import PYTHON_FORM
from ._suppress import SQL_FORM

MIGRATION_SOURCE_ERROR = Rule(
    code="SM031",
    name="migration-source-error",
    point=0,
    severity=Severity.ERROR,
    summary="the runner would refuse this migration file",
    fix="fix the file as the message says; `flask safe-migrate run` stops on it otherwise",
    doc=rule_doc(
        "migration-source-error",
        "SM031",
        what="Flags a migration file the runner would refuse: a bad ``-- safe-migrate:`` header directive, a stray or reason-less ``allow non-idempotent`` marker.",
        why="``flask safe-migrate run`` stops on it at deploy time; verify reports it instead of stopping, so that one run shows every problem.",
        instead="Fix the file as the message says.",
    ),
)

BAD_SUPPRESSION = Rule(
    code="SM032",
    name="bad-suppression",
    point=0,
    severity=Severity.ERROR,
    summary="an allow comment without a reason, or for an unknown rule",
    fix=f"write {SQL_FORM!r} in SQL or {PYTHON_FORM!r} in Python, with a rule id from docs/verify.md",
    doc=rule_doc(
        "bad-suppression",
        "SM032",
        what="Flags an allow comment without a reason, or naming a rule that does not exist.",
        why="It accepts nothing: a waiver nobody can audit, or one that silently does nothing because of a typo, is worse than none.",
        instead="Write ``-- safe-migrate: allow <rule> -- <reason>`` in SQL or ``# safe-migrate: allow[<rule>] <reason>`` in Python, with a rule id from the README's table.",
    ),
)

RULES = (MIGRATION_SOURCE_ERROR, BAD_SUPPRESSION)
