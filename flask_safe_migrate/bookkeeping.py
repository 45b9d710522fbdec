"""Ledger edits that run no migration: ``baseline``, ``mark-applied``, ``unmark``, ``repair``.

They change what the database believes has been applied, so each one takes
the migration lease first: a ``run`` in progress on another instance is
never raced (it would otherwise apply a version that is being baselined, or
see a checksum change under it). Every write is a short transaction retried
on a new connection like any other ledger write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing as t

from .errors import BadInputError
from .executor import run_with_retry
from .lease import Lease
from .ledger import AppliedMigration
from .ledger import delete_row
from .ledger import ensure_tables
from .ledger import insert_row
from .ledger import read_applied
from .ledger import update_checksum
from .loader import Migration
from .runner import MigrationState
from .runner import Runner
from .runner import compute_status

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def parse_version(raw: str, *, option: str = "VERSION") -> int:
    """A version argument as its integer value (``4`` and ``0004`` are the same version)."""
    try:
        number = int(raw)
    except ValueError:
        raise BadInputError(f"{option} {raw!r}: not a migration version (use e.g. 0004)") from None
    if number < 0:
        raise BadInputError(f"{option} {raw!r}: not a migration version (use e.g. 0004)")
    return number


def find_file(migrations: list[Migration], raw: str) -> Migration:
    """The migration file with version ``raw``, or a clear error."""
    number = parse_version(raw)
    for migration in migrations:
        if migration.number == number:
            return migration
    raise BadInputError(f"no migration file has version {raw}")


@contextlib.contextmanager
def holding_lease(
    runner: Runner, on_wait: t.Callable[[str], None] | None = None
) -> t.Iterator[None]:
    """Create the ledger if needed and hold the migration lease for the block."""
    run_with_retry(
        runner.db.engine,
        lambda conn: ensure_tables(conn, runner.db),
        policy=runner.policy,
        label="creating the ledger",
    )
    lease = Lease(runner.db, runner.holder, ttl=runner.lease_ttl, policy=runner.policy)
    lease.acquire(on_wait=on_wait)
    try:
        yield
    finally:
        lease.release()


def _ledger(runner: Runner) -> dict[str, AppliedMigration]:
    applied, _ = run_with_retry(
        runner.db.engine,
        lambda conn: read_applied(conn, runner.db),
        policy=runner.policy,
        label="reading the migration ledger",
    )
    return applied


def _record(runner: Runner, migrations: list[Migration]) -> None:
    """Insert ledger rows for ``migrations`` in one transaction (rows already there stay)."""

    def work(conn: Connection) -> None:
        for migration in migrations:
            insert_row(
                conn,
                runner.db,
                version=migration.version,
                name=migration.name,
                checksum=migration.checksum,
                duration_ms=0,
                attempts=0,  # 0 attempts: recorded, never run here
                applied_by=runner.applied_by,
                if_absent=True,
            )

    run_with_retry(runner.db.engine, work, policy=runner.policy, label="recording migrations")


def baseline(runner: Runner, version: str) -> list[Migration]:
    """Record every file up to ``version`` (inclusive) as applied without running it.

    For a database whose schema already exists (created by hand, by
    ``db.create_all()``, or by another migration tool). Rows already in the
    ledger are left alone. Returns the migrations newly recorded.
    """
    migrations = runner.migrations()
    target = find_file(migrations, version)
    with holding_lease(runner):
        applied = {int(v) for v in _ledger(runner)}
        todo = [m for m in migrations if m.number <= target.number and m.number not in applied]
        _record(runner, todo)
    return todo


def mark_applied(runner: Runner, version: str) -> Migration | None:
    """Record one file as applied without running it; ``None`` if it already was."""
    migration = find_file(runner.migrations(), version)
    with holding_lease(runner):
        if migration.number in {int(v) for v in _ledger(runner)}:
            return None
        _record(runner, [migration])
    return migration


def unmark(runner: Runner, version: str) -> AppliedMigration:
    """Remove a version's ledger row (the next ``run`` applies the file again).

    :raises BadInputError: the version is not recorded as applied.
    """
    number = parse_version(version)
    with holding_lease(runner):
        row = next((r for v, r in _ledger(runner).items() if int(v) == number), None)
        if row is None:
            raise BadInputError(f"version {version} is not recorded as applied; nothing to unmark")
        found = row

        def work(conn: Connection) -> int:
            return delete_row(conn, runner.db, found.version)

        run_with_retry(runner.db.engine, work, policy=runner.policy, label="unmarking")
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class RepairItem:
    """One ledger row whose checksum ``repair`` would replace."""

    version: str
    name: str
    old_name: str
    old_checksum: str
    new_checksum: str
    path: str
    applied_at: t.Any
    applied_by: str


def repair_plan(runner: Runner, version: str | None = None) -> list[RepairItem]:
    """The drifted rows (or just ``version``'s) and the checksums they would get."""
    status = compute_status(runner.migrations(), runner.read_applied())
    drifted: list[MigrationState] = status.of("drift")
    if version is not None:
        number = parse_version(version)
        known = [item for item in status.items if item.number == number]
        if not known:
            raise BadInputError(f"no migration has version {version}")
        if known[0].state != "drift":
            raise BadInputError(
                f"version {version} is {known[0].state}, not drifted; there is nothing to repair"
            )
        drifted = known
    items = []
    for item in drifted:
        assert item.migration is not None and item.applied is not None
        items.append(
            RepairItem(
                version=item.applied.version,
                name=item.migration.name,
                old_name=item.applied.name,
                old_checksum=item.applied.checksum,
                new_checksum=item.migration.checksum,
                path=str(item.migration.path),
                applied_at=item.applied.applied_at,
                applied_by=item.applied.applied_by,
            )
        )
    return items


def repair(runner: Runner, items: list[RepairItem]) -> int:
    """Store the new checksums, under the lease, only where the ledger still has the old one.

    Returns how many rows changed (a row changed meanwhile by someone else is skipped).
    """
    if not items:
        return 0
    with holding_lease(runner):

        def work(conn: Connection) -> int:
            changed = 0
            current = read_applied(conn, runner.db)
            for item in items:
                row = current.get(item.version)
                if row is None or row.checksum != item.old_checksum:
                    continue
                changed += update_checksum(
                    conn, runner.db, item.version, item.new_checksum, item.name
                )
            return changed

        changed, _ = run_with_retry(runner.db.engine, work, policy=runner.policy, label="repair")
    return changed
