"""Pieces shared by applying and reverting a migration: where it failed, and no-transaction units.

``run`` applies a migration and ``rollback`` reverts one with the same
machinery (see :class:`~.runner.Runner`): the transactional unit of retry
lives on the runner; this module holds what both need around it:

* :class:`FailureSite` and :func:`failure`: the message of a migration that
  failed names its file, line and statement (a ``.py`` migration's
  ``m.execute`` call included) and the database error;
* :class:`Autocommit`: the statements of a no-transaction migration (or down
  part), each run on its own in autocommit and retried on its own.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing as t

from sqlalchemy import text

from .classify import first_line
from .context import MigrationContext
from .durations import format_ms
from .errors import MigrationError
from .errors import SafeMigrateError
from .executor import backend_pid
from .executor import run_with_retry
from .log import logger

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Result

    from .executor import Attempt
    from .loader import Migration
    from .runner import Event
    from .runner import Runner
    from .sqlsplit import Statement

#: Send migration SQL exactly as written: no driver-side "%" parameter processing.
RAW = {"no_parameters": True}

RunSql = t.Callable[[str, t.Mapping[str, t.Any] | None], "Result[t.Any]"]


def is_direct(conn: Connection) -> bool:
    """True when ``conn`` talks to Postgres itself, not through a pooler.

    Postgres sends its real process id at connect time; PgBouncer,
    Supavisor and RDS Proxy send a key of their own. So the pid the driver
    was given equals ``pg_backend_pid()`` only on a direct connection.
    """
    told = backend_pid(conn)
    actual = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    return told is not None and told == actual


# -- what a unit leaves on its connection ------------------------------------------------------

#: Statements whose effects end with their transaction or live in the database, never in the
#: session: after a unit made only of these, its connection can start the next unit.
_SESSION_NEUTRAL = frozenset(
    {
        "AlterDomainStmt",
        "AlterEnumStmt",
        "AlterFunctionStmt",
        "AlterObjectSchemaStmt",
        "AlterOwnerStmt",
        "AlterPolicyStmt",
        "AlterSeqStmt",
        "AlterTableStmt",
        "CommentStmt",
        "CompositeTypeStmt",
        "CreateDomainStmt",
        "CreateEnumStmt",
        "CreateExtensionStmt",
        "CreateFunctionStmt",
        "CreatePolicyStmt",
        "CreateSchemaStmt",
        "CreateSeqStmt",
        "CreateStatsStmt",
        "CreateStmt",
        "CreateTableAsStmt",
        "CreateTrigStmt",
        "DefineStmt",
        "DeleteStmt",
        "DropStmt",
        "GrantStmt",
        "IndexStmt",
        "InsertStmt",
        "RenameStmt",
        "RuleStmt",
        "TruncateStmt",
        "UpdateStmt",
        "ViewStmt",
    }
)


def leaves_session_clean(statements: list[Statement] | None) -> bool:
    """Whether running ``statements`` can leave nothing behind in the session, past their commit.

    Plain DDL and DML on permanent objects, and ``SET LOCAL``: yes. A
    session-level ``SET``/``RESET`` (``search_path``, ``ROLE``), a temporary
    object, ``SELECT`` (which may call ``set_config`` or take a session
    advisory lock), ``DO``, ``LISTEN``, ``PREPARE``, a Python migration
    (``None``), anything unknown: maybe, so the next migration starts on a
    new connection, as each one did before connections were carried over.
    """
    if not statements:
        return statements is not None
    for statement in statements:
        kind, node = statement.node_type, statement.node
        if node is None:
            return False
        # A temporary relation needs TEMP/TEMPORARY or the pg_temp schema in the text
        # (even SET LOCAL search_path TO pg_temp makes CREATE TABLE create one).
        if "temp" in statement.sql.lower() and (
            kind == "VariableSetStmt" or _mentions_temporary(node)
        ):
            return False
        if kind == "VariableSetStmt" and node.get("is_local"):
            continue
        if kind not in _SESSION_NEUTRAL:
            return False
    return True


def _mentions_temporary(node: t.Any) -> bool:
    """Whether a parse tree names a temporary relation (``TEMP``, or in ``pg_temp``) anywhere."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("relpersistence") == "t" or str(item.get("schemaname", "")).startswith(
                "pg_temp"
            ):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- where a migration failed ---------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class FailureSite:
    """Where a migration is, for the message of its failure.

    A ``.sql`` migration is at one of its parsed statements; a ``.py`` one is
    in an ``m.execute`` / ``m.scalar`` call (its SQL, and the line of the call
    in the file), or between calls (``sql`` is ``None`` again once a call
    returns, so a later Python error never blames the last good statement).
    """

    statement: Statement | None = None
    sql: str | None = None
    line: int | None = None

    def clear(self) -> None:
        self.statement, self.sql, self.line = None, None, None

    def enter_call(self, sql: str, path: str) -> None:
        """A Python migration called ``m.execute(sql)`` / ``m.scalar(sql)`` from file ``path``."""
        self.statement, self.sql, self.line = None, sql, caller_line(path)

    def describe(self, path: str) -> tuple[str, str]:
        """``(where, what)``: ``"<path>:<line>"`` and ``" at statement 2 (...)"`` or ``""``."""
        if self.statement is not None:
            statement = self.statement
            return (
                f"{path}:{statement.line}",
                f" at statement {statement.index + 1} ({statement.short()})",
            )
        where = f"{path}:{self.line}" if self.line is not None else path
        if self.sql is not None:
            flat = " ".join(self.sql.split())
            short = flat if len(flat) <= 80 else flat[:79] + "…"
            return where, f" at m.execute({short!r})"
        return where, ""

    @property
    def sql_text(self) -> str | None:
        return self.statement.sql if self.statement is not None else self.sql


def caller_line(path: str) -> int | None:
    """The line the innermost frame of file ``path`` is at (a ``.py`` migration's call site)."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == path:
            return frame.f_lineno
        frame = frame.f_back
    return None


def recording(run: RunSql, site: FailureSite, path: str) -> RunSql:
    """``run``, noting each call in ``site`` while it runs (what ``m.execute`` goes through)."""

    def recorded(sql: str, params: t.Mapping[str, t.Any] | None) -> Result[t.Any]:
        site.enter_call(sql, path)
        result = run(sql, params)
        site.clear()
        return result

    return recorded


def failure(
    migration: Migration, site: FailureSite, exc: BaseException, *, reverting: bool = False
) -> MigrationError:
    """The error that stops a run (or a rollback): file, line, statement, database error, state."""
    where, what = site.describe(str(migration.path))
    label = f"{migration.version}_{migration.name}"
    if reverting:
        doing = f"rolling back {label} failed"
        after = (
            " Its down part was rolled back: it is still applied; migrations reverted before it "
            "stay reverted."
            if migration.transactional
            else " It runs outside a transaction: down statements before this one stay done; "
            "fix and roll back again."
        )
    else:
        doing = f"migration {label} failed"
        after = (
            " It was rolled back; earlier migrations stay applied."
            if migration.transactional
            else " It runs outside a transaction: statements before this one stay done;"
            " fix and run again."
        )
    return MigrationError(
        f"{where}: {doing}{what}: {first_line(exc)}.{after}",
        version=migration.version,
        path=str(migration.path),
        statement=site.sql_text,
    )


# -- no-transaction units ---------------------------------------------------------------------


class Autocommit:
    """The statements of one no-transaction migration (or down part), each its own unit of retry.

    Each statement runs in autocommit on a new connection per attempt and is
    retried on its own: at-least-once per statement, so the statements are
    of idempotent forms. ``lock_timeout`` / ``statement_timeout`` are set with
    ``SET`` only where the session is ours (a direct connection, or
    ``SAFE_MIGRATE_DATABASE_URI``); through a transaction pooler they would
    leak to other clients, so a warning says they are not set. Before a
    ``CREATE INDEX CONCURRENTLY``, an INVALID index of that name left by an
    interrupted build is dropped (its orphaned builder ended first).
    ``m.backfill`` batches are short transactions of their own.
    """

    def __init__(
        self,
        runner: Runner,
        migration: Migration,
        *,
        on_retry: t.Callable[[Attempt], None],
        emit: t.Callable[[Event], None],
        label: str,
        reverting: bool = False,
    ) -> None:
        self.runner = runner
        self.migration = migration
        self.on_retry = on_retry
        self.emit = emit
        self.label = label
        self.reverting = reverting
        #: the most attempts any one statement (or batch) needed
        self.attempts = 1
        self._warned = False

    def run(self, statements: list[Statement] | None, function: str) -> None:
        """Run parsed SQL statements, or the ``.py`` file's ``function(m)`` (upgrade/downgrade)."""
        if statements is not None:
            for statement in statements:
                self.execute(statement.sql, statement=statement)
            return
        from .runner import Event

        migration = self.migration
        context = MigrationContext(
            version=migration.version,
            name=migration.name,
            dialect=self.runner.db.backend,
            run=lambda sql, params: self.execute(sql, params),
            transactional=False,
            run_batch=self.batch,
            progress=lambda detail: self.emit(
                Event("progress", migration.version, migration.name, detail)
            ),
        )
        getattr(migration.load_module(), function)(context)

    def _session_settings_safe(self, conn: Connection) -> bool:
        """Whether ``SET`` on this connection stays with us (not a transaction pooler)."""
        if self.runner.dedicated_url or is_direct(conn):
            return True
        if not self._warned:
            self._warned = True
            from .runner import Event

            migration = self.migration
            message = (
                f"migration {migration.version} runs outside a transaction without lock_timeout"
                " or statement_timeout: through a pooler, session settings would leak to other"
                " clients. Set SAFE_MIGRATE_DATABASE_URI to a direct or session-mode URL to run"
                " it with timeouts."
            )
            logger.warning("%s", message)
            self.emit(Event("warning", migration.version, migration.name, message))
        return False

    def execute(
        self,
        sql: str,
        params: t.Mapping[str, t.Any] | None = None,
        statement: Statement | None = None,
    ) -> Result[t.Any]:
        """One statement (``statement`` for parsed SQL, else ``m.execute``'s text), retried."""
        runner, migration = self.runner, self.migration

        def work(conn: Connection) -> Result[t.Any]:
            if runner.db.is_postgres and self._session_settings_safe(conn):
                conn.exec_driver_sql(
                    f"SET lock_timeout = '{format_ms(runner.lock_timeout_for(migration))}'"
                )
                statement_timeout = runner.statement_timeout_for(migration)
                if statement_timeout is not None:
                    conn.exec_driver_sql(
                        f"SET statement_timeout = '{format_ms(statement_timeout)}'"
                    )
            if statement is not None and statement.node_type == "IndexStmt":
                runner._clear_invalid_index(conn, statement)
            if statement is not None:
                result = conn.exec_driver_sql(sql, execution_options=RAW)
            else:
                result = conn.execute(text(sql), dict(params or {}))
            # The connection closes after this attempt: keep the rows.
            return result.freeze()() if result.returns_rows else result

        try:
            result, attempts = run_with_retry(
                runner.db.engine,
                work,
                policy=runner.policy,
                transaction=False,
                on_retry=self.on_retry,
                label=self.label,
            )
        except SafeMigrateError:
            raise
        except Exception as exc:
            site = FailureSite(statement)
            if statement is None:
                site.enter_call(sql, str(migration.path))
            raise failure(migration, site, exc, reverting=self.reverting) from exc
        self.attempts = max(self.attempts, len(attempts))
        return result

    def batch(self, work: t.Callable[[Connection], t.Any]) -> t.Any:
        """One ``m.backfill`` batch: its own transaction, with SET LOCAL timeouts, retried."""
        runner, migration = self.runner, self.migration
        lock_timeout = runner.lock_timeout_for(migration)

        def attempt(conn: Connection) -> t.Any:
            runner._set_locals(conn, migration, lock_timeout)
            return work(conn)

        try:
            result, attempts = run_with_retry(
                runner.db.engine,
                attempt,
                policy=runner.policy,
                on_retry=self.on_retry,
                label=f"{self.label} (backfill batch)",
            )
        except SafeMigrateError:
            raise
        except Exception as exc:
            site = FailureSite(line=caller_line(str(migration.path)))
            raise failure(migration, site, exc, reverting=self.reverting) from exc
        self.attempts = max(self.attempts, len(attempts))
        return result
