"""``plan`` and ``run --dry-run``: what ``run`` would do, statement by statement.

Built from :meth:`.Runner.plan`, which performs every check a real run does
before touching the database (drift, out-of-order, SQL that does not parse,
non-idempotent statements in no-transaction files, Python files that do not
import), so a plan that prints is a run that starts. Nothing is written:
the only database access is the one ledger read ``status`` does.
"""

from __future__ import annotations

import dataclasses
import typing as t

from .durations import format_ms
from .loader import Migration
from .runner import Runner

if t.TYPE_CHECKING:
    from .sqlsplit import Statement


def verdicts_for(
    directory: str,
    migrations: t.Sequence[Migration],
    *,
    seed_max_rows: int = 10,
    retry_functions: t.Sequence[str] = ("execute_with_retry",),
) -> dict[str, str]:
    """The verifier's verdict on each of ``migrations``, by version.

    ``safe``, ``N warning(s)`` or ``N error(s)``, from one ``verify`` run on
    the whole directory, grouped by file: exactly what ``verify`` says, since
    evidence can sit in another file (a dedup before the unique index of the
    next migration, an orphan cleanup before validating a key added NOT VALID
    in the previous one).
    """
    from .verify import verify_paths

    report = verify_paths(
        [directory], seed_max_rows=seed_max_rows, retry_functions=retry_functions, cwd=directory
    )
    errors: dict[str, int] = {}
    warnings: dict[str, int] = {}
    for finding in report.findings:
        if finding.suppressed is not None:
            continue
        counts = errors if finding.fails else warnings
        counts[finding.path] = counts.get(finding.path, 0) + 1
    verdicts = {}
    for migration in migrations:
        name = migration.path.name
        if errors.get(name):
            verdicts[migration.version] = f"{errors[name]} error(s)"
        elif warnings.get(name):
            verdicts[migration.version] = f"{warnings[name]} warning(s)"
        else:
            verdicts[migration.version] = "safe"
    return verdicts


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedMigration:
    """One pending migration with the settings ``run`` will apply it with."""

    migration: Migration
    transactional: bool
    lock_timeout_ms: int
    statement_timeout_ms: int | None
    statements: list[Statement] | None
    verdict: str | None

    def document(self) -> dict[str, t.Any]:
        """The JSON form (shared keys plus the plan's own)."""
        m = self.migration
        return {
            "version": m.version,
            "name": m.name,
            "checksum": m.checksum,
            "state": "pending",
            "attempts": None,
            "duration_ms": None,
            "kind": m.kind,
            "path": str(m.path),
            "transaction": "per-migration" if self.transactional else "none",
            "lock_timeout_ms": self.lock_timeout_ms,
            "statement_timeout_ms": self.statement_timeout_ms,
            "verdict": self.verdict,
            "statements": (
                None
                if self.statements is None
                else [{"line": s.line, "sql": s.sql} for s in self.statements]
            ),
        }


def build_plan(
    runner: Runner,
    *,
    to: str | None = None,
    out_of_order: bool = False,
    seed_max_rows: int = 10,
    retry_functions: t.Sequence[str] = ("execute_with_retry",),
) -> list[PlannedMigration]:
    """The pending migrations ``run`` would apply, with effective timeouts and verdicts.

    The verdicts need PostgreSQL (``None``, printed ``n/a``, otherwise);
    ``seed_max_rows`` and ``retry_functions`` are ``verify``'s settings.
    """
    pending = runner.plan(to=to, out_of_order=out_of_order)
    verdicts: dict[str, str] = {}
    if pending and runner.db.is_postgres:
        verdicts = verdicts_for(
            runner.directory,
            [migration for migration, _ in pending],
            seed_max_rows=seed_max_rows,
            retry_functions=retry_functions,
        )
    planned = []
    for migration, statements in pending:
        lock = migration.lock_timeout_ms
        statement_timeout = migration.statement_timeout_ms
        planned.append(
            PlannedMigration(
                migration=migration,
                transactional=migration.transactional,
                lock_timeout_ms=runner.lock_timeout_ms if lock is None else lock,
                statement_timeout_ms=(
                    runner.statement_timeout_ms if statement_timeout is None else statement_timeout
                ),
                statements=statements,
                verdict=verdicts.get(migration.version),
            )
        )
    return planned


def describe(item: PlannedMigration) -> list[str]:
    """Lines for people: a header per migration, then its statements."""
    m = item.migration
    mode = "one transaction" if item.transactional else "no transaction (statement by statement)"
    statement_timeout = (
        "none" if not item.statement_timeout_ms else format_ms(item.statement_timeout_ms)
    )
    lines = [
        f"{m.version}_{m.name} ({m.kind}): {mode}; lock_timeout {format_ms(item.lock_timeout_ms)}"
        f" (grows on retry); statement_timeout {statement_timeout}; "
        f"verdict {item.verdict or 'n/a'}"
    ]
    if item.statements is None:
        lines.append("    upgrade(m) in Python: its statements are known only when it runs")
    elif not item.statements:
        lines.append("    (no statements)")
    for statement in item.statements or []:
        lines.append(f"    {statement.line:>4}: {statement.short(100)}")
    return lines
