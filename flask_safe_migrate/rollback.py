"""``rollback --to VERSION``: run down parts, newest first, with the upgrade's guarantees.

A down part is the SQL below ``-- safe-migrate: down`` in a ``.sql`` file, or
``downgrade(m)`` in a ``.py`` file. Reverting is the mirror of applying:

* transactional: one transaction per migration, on a new connection per
  attempt: ``SET LOCAL`` timeouts, the advisory xact lock, re-read the
  ledger row (gone: an earlier attempt whose COMMIT reply was lost already
  reverted it, so it is not reverted twice), run the down statements,
  delete the row, commit;
* no-transaction: the down statements one by one in autocommit, each
  retried on its own (they must be idempotent, as on the way up), then the
  row is deleted.

Both run on the runner's own machinery (:meth:`.Runner._transactional`,
:class:`.units.Autocommit`), so a down part gets exactly what an upgrade
gets: orphaned backends of cut attempts ended, growing lock timeouts,
session settings only where the session is ours, the INVALID-index check
before ``CREATE INDEX CONCURRENTLY``, and errors naming the statement.

Everything that can refuse is checked before anything runs: every migration
to revert must have its file, unchanged since it was applied, with a
non-empty down part. A rollback that would stop half-way because version 3
has no down part is refused up front, naming version 3.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t

from .bookkeeping import parse_version
from .classify import first_line
from .errors import BadInputError
from .errors import ChecksumDriftError
from .errors import MigrationError
from .executor import Attempt
from .executor import run_with_retry
from .lease import Lease
from .ledger import delete_row
from .ledger import read_applied
from .ledger import read_one
from .loader import Migration
from .log import logger
from .runner import Event
from .runner import MigrationState
from .runner import Runner
from .runner import compute_status
from .runner import log_unit_done
from .runner import log_unit_failed
from .units import Autocommit
from .units import FailureSite

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .sqlsplit import Statement


class RollbackRefused(MigrationError):
    """A migration to revert has no down part, no file, or was edited; nothing was run."""


@dataclasses.dataclass(frozen=True, slots=True)
class Reverted:
    """What happened to one migration during ``rollback``."""

    version: str
    name: str
    checksum: str
    state: t.Literal["reverted", "already_reverted"]
    attempts: int
    duration_ms: int
    retries: tuple[str, ...] = ()


def _targets(status_items: t.Sequence[MigrationState], limit: int) -> list[MigrationState]:
    return [
        item for item in reversed(status_items) if item.state != "pending" and item.number > limit
    ]


def _check(items: list[MigrationState], dialect: str) -> dict[str, list[Statement] | None]:
    """Refuse before running anything; parse every down part."""
    parsed: dict[str, list[Statement] | None] = {}
    for item in items:
        label = f"{item.version}_{item.name}"
        if item.state == "missing" or item.migration is None:
            raise RollbackRefused(
                f"cannot roll back {label}: it is applied but its file is gone, so its down "
                "part is unknown; restore the file, or roll back only to a version above it. "
                "Nothing was rolled back.",
                version=item.version,
            )
        migration = item.migration
        if item.state == "drift":
            raise ChecksumDriftError(
                f"{migration.path}: cannot roll back {label}: the file was edited after it was "
                "applied, so its down part may not match what ran; restore it, or accept the "
                f"edit with `repair {item.version}`. Nothing was rolled back.",
                version=item.version,
                path=str(migration.path),
            )
        if migration.kind == "sql":
            statements = migration.down_statements(dialect=dialect)
            if not statements:
                why = (
                    "has no '-- safe-migrate: down' part"
                    if statements is None
                    else ("has an empty down part (only comments after '-- safe-migrate: down')")
                )
                raise RollbackRefused(
                    f"{migration.path}: cannot roll back {label}: it {why}. Add the SQL "
                    "that reverts it below a '-- safe-migrate: down' line, or roll back only "
                    f"to version {item.version} or above. Nothing was rolled back.",
                    version=item.version,
                    path=str(migration.path),
                )
            parsed[item.version] = statements
        else:
            stub = migration.has_down and _is_stub(migration.load_module().downgrade)
            if not migration.has_down or stub:
                why = (
                    "its downgrade(m) is only a stub (pass / raise NotImplementedError)"
                    if stub
                    else "it defines no downgrade(m)"
                )
                raise RollbackRefused(
                    f"{migration.path}: cannot roll back {label}: {why}. Write one that "
                    f"reverts upgrade(m), or roll back only to version {item.version} or "
                    "above. Nothing was rolled back.",
                    version=item.version,
                    path=str(migration.path),
                )
            parsed[item.version] = None
    return parsed


def _is_stub(function: t.Callable[..., t.Any]) -> bool:
    """Whether ``function``'s body does nothing but ``pass`` / ``...`` / ``raise NotImplementedError``.

    Such a ``downgrade`` would let the up-front check pass and then stop the
    rollback half-way, after the newer migrations were already reverted.
    """
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    body = list(definition.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring

    def idle(node: ast.stmt) -> bool:
        if isinstance(node, ast.Pass):
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return node.value.value is Ellipsis
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            return isinstance(target, ast.Name) and target.id == "NotImplementedError"
        return False

    return all(idle(node) for node in body)


def rollback(
    runner: Runner,
    *,
    to: str,
    on_event: t.Callable[[Event], None] | None = None,
    on_reverted: t.Callable[[Reverted], None] | None = None,
) -> list[Reverted]:
    """Revert every applied migration above ``to`` (``0``: all of them), newest first.

    Logs a structured record per migration (``migration_reverted``,
    ``migration_revert_failed``) and one per rollback (``rollback_finished``),
    like ``run``. ``on_reverted`` receives each :class:`Reverted` as it happens.

    :raises RollbackRefused: a migration to revert cannot be (nothing was run).
    :raises MigrationError: a down part failed; it was rolled back (transactional)
        and the migrations reverted before it stay reverted.
    """
    started = time.monotonic()
    done: list[Reverted] = []
    try:
        _rollback(runner, to, on_event or (lambda event: None), on_reverted, done)
    except BaseException as exc:
        _log_rollback(done, started, exc)
        raise
    _log_rollback(done, started, None)
    return done


def _rollback(
    runner: Runner,
    to: str,
    emit: t.Callable[[Event], None],
    on_reverted: t.Callable[[Reverted], None] | None,
    done: list[Reverted],
) -> None:
    limit = parse_version(to, option="--to")
    migrations = runner.migrations()
    applied = runner.read_applied()
    known = {m.number for m in migrations} | {int(v) for v in applied}
    if limit != 0 and limit not in known:
        raise BadInputError(
            f"--to {to}: no migration has version {to} (neither a file nor a ledger row); "
            "`flask safe-migrate status` lists the versions"
        )
    status = compute_status(migrations, applied)
    targets = _targets(status.items, limit)
    if not targets:
        return
    parsed = _check(targets, runner.db.backend)

    lease = Lease(runner.db, runner.holder, ttl=runner.lease_ttl, policy=runner.policy)
    lease.acquire(on_wait=lambda other: emit(Event("waiting", detail=other)))
    try:
        applied, _ = run_with_retry(
            runner.db.engine,
            lambda conn: read_applied(conn, runner.db),
            policy=runner.policy,
            label="reading the migration ledger",
        )
        targets = _targets(compute_status(migrations, applied).items, limit)
        parsed = _check(targets, runner.db.backend)
        for item in targets:
            lease.check()
            migration = item.migration
            assert migration is not None
            emit(Event("reverting", migration.version, migration.name))
            try:
                outcome = _revert(runner, migration, parsed[migration.version], emit)
            except BaseException as exc:
                _log_revert_failed(migration, exc)
                raise
            done.append(outcome)
            _log_reverted(outcome)
            if on_reverted is not None:
                on_reverted(outcome)
            emit(
                Event(
                    outcome.state,
                    migration.version,
                    migration.name,
                    detail=f"{outcome.duration_ms} ms, {outcome.attempts} attempt"
                    + ("" if outcome.attempts == 1 else "s"),
                )
            )
    finally:
        lease.release()


def _log_reverted(outcome: Reverted) -> None:
    log_unit_done(
        outcome, event="migration_reverted", done="rolled back", already="was already rolled back"
    )


def _log_revert_failed(migration: Migration, exc: BaseException) -> None:
    log_unit_failed(migration, exc, event="migration_revert_failed", doing="rolling back ")


def _log_rollback(done: list[Reverted], started: float, exc: BaseException | None) -> None:
    duration_ms = int((time.monotonic() - started) * 1000)
    extra = {
        "safe_migrate_event": "rollback_finished",
        "ok": exc is None,
        "reverted": sum(1 for d in done if d.state == "reverted"),
        "duration_ms": duration_ms,
        "versions": [d.version for d in done],
        "error_type": type(exc).__name__ if exc is not None else None,
        "error": first_line(exc) if exc is not None else None,
    }
    if exc is not None:
        logger.error(
            "rollback failed after %d ms (%d rolled back): %s",
            duration_ms,
            len(done),
            first_line(exc),
            extra=extra,
        )
    else:
        logger.info(
            "rollback finished: %d rolled back in %d ms", len(done), duration_ms, extra=extra
        )


def _revert(
    runner: Runner,
    migration: Migration,
    statements: list[Statement] | None,
    emit: t.Callable[[Event], None],
) -> Reverted:
    def in_transaction(
        on_retry: t.Callable[[Attempt], None], started: float
    ) -> tuple[t.Literal["reverted", "already_reverted"], int]:
        return _revert_in_transaction(runner, migration, statements, on_retry)

    def without_transaction(
        on_retry: t.Callable[[Attempt], None], started: float
    ) -> tuple[t.Literal["reverted", "already_reverted"], int]:
        return _revert_without_transaction(runner, migration, statements, on_retry, emit)

    state, attempts, duration_ms, retries = runner._unit(
        migration,
        emit,
        f"{migration.version}_{migration.name} (down)",
        in_transaction if migration.transactional else without_transaction,
    )
    return Reverted(
        migration.version, migration.name, migration.checksum, state, attempts, duration_ms, retries
    )


def _revert_in_transaction(
    runner: Runner,
    migration: Migration,
    statements: list[Statement] | None,
    on_retry: t.Callable[[Attempt], None],
) -> tuple[t.Literal["reverted", "already_reverted"], int]:
    db = runner.db
    committing = False

    def body(
        conn: Connection, site: FailureSite, attempt: int
    ) -> t.Literal["reverted", "already_reverted"]:
        nonlocal committing
        existing = read_one(conn, db, migration.version)
        if existing is None:
            # Gone: our own earlier attempt committed it (its reply was lost),
            # or another instance rolled it back meanwhile. Never reverted twice.
            return "reverted" if committing else "already_reverted"
        if existing.checksum != migration.checksum:
            raise ChecksumDriftError(
                f"{migration.path}: version {migration.version} changed in the ledger meanwhile;"
                " nothing was rolled back for it",
                version=migration.version,
                path=str(migration.path),
            )
        runner._execute(conn, migration, statements, site, "downgrade")
        delete_row(conn, db, migration.version)
        committing = True
        return "reverted"

    return runner._transactional(
        migration,
        body,
        on_retry=on_retry,
        label=f"rolling back {migration.version}_{migration.name}",
        reverting=True,
    )


def _revert_without_transaction(
    runner: Runner,
    migration: Migration,
    statements: list[Statement] | None,
    on_retry: t.Callable[[Attempt], None],
    emit: t.Callable[[Event], None],
) -> tuple[t.Literal["reverted", "already_reverted"], int]:
    db = runner.db
    existing, _ = run_with_retry(
        db.engine, lambda conn: read_one(conn, db, migration.version), policy=runner.policy
    )
    if existing is None:
        return "already_reverted", 1
    unit = Autocommit(
        runner,
        migration,
        on_retry=on_retry,
        emit=emit,
        label=f"rolling back {migration.version}_{migration.name}",
        reverting=True,
    )
    unit.run(statements, "downgrade")
    run_with_retry(
        db.engine,
        lambda conn: delete_row(conn, db, migration.version),
        policy=runner.policy,
        label=f"forgetting migration {migration.version}",
    )
    return "reverted", unit.attempts
