"""Apply pending migrations exactly once, whatever the network does.

The shape of a run:

1. Read the migration files (bad names, duplicates, a missing directory:
   error before the database is touched).
2. One query reads the ledger. Nothing pending: done. That is the whole cost
   of a boot with nothing to do.
3. Refuse on checksum drift, and on a late-merged lower version unless
   ``out_of_order``. Parse every pending file (bad SQL, non-idempotent
   no-transaction statements: error before the database is touched).
4. Take the lease (waiting, bounded by the deadline, while another instance
   migrates), re-read the ledger, and apply each pending migration:

   * transactional: one transaction is one unit of retry: READ COMMITTED,
     ``SET LOCAL`` timeouts, an advisory xact lock, re-read the ledger row (a
     previous attempt whose COMMIT reply was lost may have applied it: then
     it is done), run the statements, insert the ledger row, commit. Every
     retry runs on a new connection; a first attempt may run on the
     connection on which the previous migration just committed cleanly (see
     :class:`~.executor.ConnectionKeeper`);
   * no-transaction: statements one by one in autocommit, each retried on
     its own (they are of idempotent forms), then the ledger row.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing as t

from sqlalchemy import text

from . import rawsql
from .classify import Transience
from .classify import first_line
from .classify import is_database_error
from .context import MigrationContext
from .context import migrating
from .context import on_connection
from .database import MigrationDatabase
from .database import holder_name
from .durations import format_ms
from .errors import BadInputError
from .errors import ChecksumDriftError
from .errors import MigrationError
from .errors import OutOfOrderError
from .errors import SafeMigrateError
from .executor import Attempt
from .executor import ConnectionKeeper
from .executor import RetryPolicy
from .executor import run_with_retry
from .lease import Lease
from .lease import unique_holder
from .ledger import AppliedMigration
from .ledger import ensure_tables
from .ledger import insert_row
from .ledger import insert_sql
from .ledger import read_applied
from .ledger import read_applied_raw
from .ledger import read_one
from .ledger import read_raw
from .ledger import select_one_sql
from .loader import Migration
from .loader import discover
from .log import logger
from .rawsql import literal
from .units import RAW
from .units import Autocommit
from .units import FailureSite
from .units import failure
from .units import leaves_session_clean
from .units import recording
from .urls import display_url

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .rollback import Reverted
    from .sqlsplit import Statement

T = t.TypeVar("T")
S = t.TypeVar("S", bound=str)

State = t.Literal["applied", "pending", "drift", "missing"]

#: Largest lock_timeout the lock-retry schedule grows to (ms).
LOCK_TIMEOUT_CEILING_MS = 10_000


class DatabaseRefused(SafeMigrateError):
    """The database refused the run's own work (reading or creating the ledger, the lease).

    A permanent driver error outside any migration's statements: no such
    database, a wrong password, no permission to create the ledger tables.
    Raised as a package error so callers (the CLI, boot-time auto-migrate in
    ``"log"`` mode) handle it like every other expected failure; the driver's
    error is chained as ``__cause__``.
    """


#: Hints for the permanent errors a run meets before any migration starts.
_REFUSAL_HINTS = (
    (
        "permission denied",
        "grant the migrating role that privilege, or point"
        " SAFE_MIGRATE_DATABASE_URI at a role that owns the schema",
    ),
    ("does not exist", "check the database and role names in the URL"),
    ("authentication failed", "check the user name and password in the URL"),
)


def raise_refused(
    db: MigrationDatabase, exc: Exception, doing: str, migration: Migration | None = None
) -> t.NoReturn:
    """Raise ``exc`` again, as a :class:`DatabaseRefused` if it is a raw driver error.

    Call it in the ``except`` block that caught ``exc``: a package error (a
    migration's, the retries') or a non-database error goes on as it is,
    its own cause chain intact.
    """
    if isinstance(exc, SafeMigrateError) or not is_database_error(exc):
        raise exc
    during = f" (during migration {migration.version}_{migration.name})" if migration else ""
    text = first_line(exc)
    hint = next((h for marker, h in _REFUSAL_HINTS if marker in text.lower()), None)
    raise DatabaseRefused(
        f"{display_url(db.url)}: {doing} failed{during}: {text}."
        + (f" Fix: {hint}." if hint else "")
    ) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationState:
    """One line of ``status``: a file, a ledger row, or both."""

    version: str
    name: str
    checksum: str
    state: State
    migration: Migration | None = None
    applied: AppliedMigration | None = None
    #: for a squash file: the ledger versions of the files it replaced (see :mod:`.squash`)
    covered: tuple[str, ...] = ()

    @property
    def number(self) -> int:
        return int(self.version)


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """Everything ``status`` reports, from one ledger query."""

    items: tuple[MigrationState, ...]

    def of(self, state: State) -> list[MigrationState]:
        return [item for item in self.items if item.state == state]

    @property
    def pending(self) -> list[Migration]:
        return [item.migration for item in self.of("pending") if item.migration is not None]

    @property
    def clean(self) -> bool:
        """Nothing pending, drifted or missing (the ``status --check`` gate)."""
        return all(item.state == "applied" for item in self.items)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one migration during ``run``."""

    version: str
    name: str
    checksum: str
    state: t.Literal["applied", "already_applied"]
    attempts: int
    duration_ms: int
    retries: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Progress reported while running (the CLI prints these as they come)."""

    kind: t.Literal[
        "waiting",
        "applying",
        "retry",
        "applied",
        "already_applied",
        "warning",
        "reverting",
        "reverted",
        "already_reverted",
        "progress",
    ]
    version: str | None = None
    name: str | None = None
    detail: str = ""
    outcome: Outcome | None = None


def compute_status(migrations: list[Migration], applied: dict[str, AppliedMigration]) -> Status:
    """Join files and ledger rows by version number.

    A squash file (``-- safe-migrate: squashes=...``) also takes the ledger
    rows of the files it replaced (rows at or below its version without a
    file), so they are never reported ``missing``; it is ``applied`` when
    its own row has its checksum (a database that ran the squash file) or
    when every version it lists is in the ledger (one that ran the originals).
    """
    by_number = {int(version): row for version, row in applied.items()}
    files = {migration.number for migration in migrations}
    covered: dict[int, tuple[AppliedMigration, ...]] = {}
    for migration in migrations:
        if migration.squashes:
            claimed = [n for n in sorted(by_number) if n < migration.number and n not in files]
            covered[migration.number] = tuple(by_number.pop(n) for n in claimed)
    items: list[MigrationState] = []
    for migration in migrations:
        row = by_number.pop(migration.number, None)
        if migration.squashes:
            items.append(_squash_state(migration, row, covered[migration.number]))
            continue
        if row is None:
            state: State = "pending"
        elif row.checksum != migration.checksum:
            state = "drift"
        else:
            state = "applied"
        items.append(
            MigrationState(
                migration.version, migration.name, migration.checksum, state, migration, row
            )
        )
    for row in by_number.values():
        items.append(MigrationState(row.version, row.name, row.checksum, "missing", None, row))
    items.sort(key=lambda item: item.number)
    return Status(tuple(items))


def _squash_state(
    migration: Migration, row: AppliedMigration | None, claimed: tuple[AppliedMigration, ...]
) -> MigrationState:
    have = {int(r.version) for r in claimed} | ({migration.number} if row is not None else set())
    if row is not None and row.checksum == migration.checksum:
        state: State = "applied"
    elif {int(v) for v in migration.squashes} <= have:
        state = "applied"  # through the original files, whatever the old checksum of its row
    elif row is not None:
        state = "drift"
    else:
        state = "pending"
    return MigrationState(
        migration.version,
        migration.name,
        migration.checksum,
        state,
        migration,
        row,
        tuple(r.version for r in claimed),
    )


def lock_timeout_schedule(base_ms: int, lock_failures: int) -> int:
    """``lock_timeout`` for the next attempt after ``lock_failures`` lock timeouts.

    In the spirit of GitLab's ``with_lock_retries``: start short, so a
    migration queued behind a long transaction blocks the app's queries for
    at most ``base`` at a time, and grow (x2 every second failure, up to
    10 s) so a busy table is eventually won. Between attempts the lock is
    released and the app runs freely.
    """
    if base_ms == 0:
        return 0
    grown: int = base_ms * 2 ** (lock_failures // 2)
    return min(grown, max(base_ms, LOCK_TIMEOUT_CEILING_MS))


class Runner:
    """Applies one migrations directory to one database."""

    def __init__(
        self,
        db: MigrationDatabase,
        directory: str | os.PathLike[str],
        *,
        policy: RetryPolicy | None = None,
        lock_timeout_ms: int = 2000,
        statement_timeout_ms: int | None = None,
        dedicated_url: bool = False,
        lease_ttl: float = 15.0,
    ) -> None:
        self.db = db
        self.directory = os.fspath(directory)
        self.policy = policy or RetryPolicy()
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        #: migrations connect over SAFE_MIGRATE_DATABASE_URI (direct or session mode),
        #: so session settings are safe for no-transaction statements
        self.dedicated_url = dedicated_url
        #: who applied a migration, as recorded in the ledger (``host:pid``)
        self.applied_by = holder_name()
        #: this runner's lease holder name: unique even within one process
        self.holder = unique_holder(self.applied_by)
        self.lease_ttl = lease_ttl
        #: during :meth:`run` on Postgres: the connection carried from one migration to the next
        self._kept: ConnectionKeeper | None = None

    # -- reading --------------------------------------------------------------

    def migrations(self) -> list[Migration]:
        return discover(self.directory)

    def read_applied(self) -> dict[str, AppliedMigration]:
        """The ledger, in one query on a raw connection (retried like everything else)."""
        return self._read_ledger() or {}

    def _read_ledger(self) -> dict[str, AppliedMigration] | None:
        """Like :meth:`read_applied`, but ``None`` when the ledger does not exist yet."""
        try:
            return read_raw(self.db, self.policy, read_applied_raw)
        except Exception as exc:
            raise_refused(self.db, exc, "reading the migration ledger")

    def status(self) -> Status:
        return compute_status(self.migrations(), self.read_applied())

    def pending(self) -> list[Migration]:
        return self.status().pending

    # -- checks ---------------------------------------------------------------

    def _targets(self, status: Status, to: str | None, out_of_order: bool) -> list[Migration]:
        drifted = status.of("drift")
        if drifted:
            item = drifted[0]
            assert item.migration is not None and item.applied is not None
            raise ChecksumDriftError(
                f"{item.migration.path}: migration {item.version} was edited after it was applied"
                f" (checksum {item.applied.checksum[:12]}... in the ledger, {item.checksum[:12]}..."
                " on disk); nothing was applied. Restore the file, or accept the edit with"
                f" `flask safe-migrate repair {item.version}`.",
                version=item.version,
                path=str(item.migration.path),
            )
        for item in status.of("pending"):
            if item.covered and item.migration is not None:
                missing = sorted(set(item.migration.squashes) - set(item.covered), key=int)
                raise MigrationError(
                    f"{item.migration.path}: this database applied only part of the migrations"
                    f" squashed into {item.version}_{item.name} ({', '.join(item.covered)} of"
                    f" {', '.join(item.migration.squashes)}); the squash file recreates them all"
                    " and cannot run here. Apply the missing ones"
                    f" ({', '.join(missing)}) first with the files from before the squash (they"
                    " are in squashed/), e.g. from the release before it; nothing was applied.",
                    version=item.version,
                    path=str(item.migration.path),
                )
        pending = status.pending
        if to is not None:
            known = {item.number for item in status.items}
            try:
                limit = int(to)
            except ValueError:
                raise BadInputError(
                    f"--to {to!r}: not a migration version (use e.g. 0004)"
                ) from None
            if limit not in known:
                raise BadInputError(f"--to {to}: no migration has version {to}")
            pending = [m for m in pending if m.number <= limit]
        applied_numbers = [
            item.number for item in status.items if item.state in ("applied", "missing")
        ]
        highest = max(applied_numbers, default=None)
        if highest is not None and not out_of_order:
            late = [m for m in pending if m.number < highest]
            if late:
                raise OutOfOrderError(
                    f"{late[0].path}: migration {late[0].version} is pending but a higher version"
                    f" ({highest}) is already applied (a late-merged branch?). Renumber it above"
                    " the highest applied version, or apply it anyway with --out-of-order.",
                    version=late[0].version,
                    path=str(late[0].path),
                )
        return pending

    def _prepare(self, migrations: list[Migration]) -> dict[str, list[Statement] | None]:
        """Parse everything first: a bad file fails before anything is applied."""
        parsed: dict[str, list[Statement] | None] = {}
        for migration in migrations:
            if migration.kind == "sql":
                parsed[migration.version] = migration.statements(dialect=self.db.backend)
            else:
                migration.load_module()
                parsed[migration.version] = None
        return parsed

    def plan(
        self, *, to: str | None = None, out_of_order: bool = False
    ) -> list[tuple[Migration, list[Statement] | None]]:
        """What :meth:`run` would apply, checked and parsed, without writing anything.

        The same checks as a real run (drift, out-of-order, bad SQL,
        non-idempotent no-transaction statements, Python migrations that do
        not import), so ``run --dry-run`` and ``plan`` fail exactly where
        ``run`` would. ``.py`` migrations come with ``None`` statements.
        """
        targets = self._targets(self.status(), to, out_of_order)
        parsed = self._prepare(targets)
        return [(migration, parsed[migration.version]) for migration in targets]

    def rollback(
        self, *, to: str, on_event: t.Callable[[Event], None] | None = None
    ) -> list[Reverted]:
        """Revert applied migrations above ``to``, newest first; see :mod:`.rollback`."""
        from .rollback import rollback

        return rollback(self, to=to, on_event=on_event)

    # -- running --------------------------------------------------------------

    def run(
        self,
        *,
        to: str | None = None,
        out_of_order: bool = False,
        on_event: t.Callable[[Event], None] | None = None,
    ) -> list[Outcome]:
        """Apply pending migrations (up to ``to``, inclusive); returns what happened.

        :raises MigrationError: a migration failed; it was rolled back and
            earlier ones stay applied.
        """
        started = time.monotonic()
        outcomes: list[Outcome] = []
        in_flight: list[Migration] = []
        step = ["reading the migration ledger"]
        try:
            try:
                self._run(to, out_of_order, on_event, outcomes, in_flight, step)
            except Exception as exc:
                raise_refused(self.db, exc, step[0], in_flight[0] if in_flight else None)
        except BaseException as exc:
            if in_flight:
                _log_migration_failed(in_flight[0], exc)
            _log_run(outcomes, started, exc)
            raise
        _log_run(outcomes, started, None)
        return outcomes

    def _run(
        self,
        to: str | None,
        out_of_order: bool,
        on_event: t.Callable[[Event], None] | None,
        outcomes: list[Outcome],
        in_flight: list[Migration],
        step: list[str],
    ) -> None:
        """The body of :meth:`run`: fills ``outcomes``; ``in_flight`` holds the one being applied.

        ``step[0]`` names what the run is doing, for the message of a database refusal.
        """
        emit = on_event or (lambda event: None)
        # The files first: a bad one is an error before the database is touched.
        migrations = self.migrations()
        ledger = self._read_ledger()
        status = compute_status(migrations, ledger or {})
        targets = self._targets(status, to, out_of_order)
        if not targets:
            return
        parsed = self._prepare(targets)

        kept = self._kept = ConnectionKeeper() if self.db.is_postgres else None
        try:
            self._run_pending(
                migrations, parsed, ledger, to, out_of_order, emit, outcomes, in_flight, step
            )
        finally:
            self._kept = None
            if kept is not None:
                kept.close()

    def _run_pending(
        self,
        migrations: list[Migration],
        parsed: dict[str, list[Statement] | None],
        ledger: dict[str, AppliedMigration] | None,
        to: str | None,
        out_of_order: bool,
        emit: t.Callable[[Event], None],
        outcomes: list[Outcome],
        in_flight: list[Migration],
        step: list[str],
    ) -> None:
        """Create the ledger if needed, take the lease, and apply what is still pending."""
        engine = self.db.engine
        if ledger is None:
            step[0] = "creating the ledger tables"
            run_with_retry(
                engine,
                lambda conn: ensure_tables(conn, self.db),
                policy=self.policy,
                label="creating the ledger",
            )
        step[0] = "taking the migration lease"
        lease = Lease(self.db, self.holder, ttl=self.lease_ttl, policy=self.policy)
        # Polls on the connection the run then goes on with.
        lease.acquire(on_wait=lambda other: emit(Event("waiting", detail=other)), keeper=self._kept)
        try:
            # Another instance may have applied some while we waited.
            step[0] = "reading the migration ledger"
            applied, _ = run_with_retry(
                engine,
                lambda conn: read_applied(conn, self.db),
                policy=self.policy,
                transaction=False,  # one SELECT; and the kept connection stays in autocommit
                label="reading the migration ledger",
                keeper=self._kept,
                keep=True,
            )
            targets = self._targets(compute_status(migrations, applied), to, out_of_order)
            step[0] = "the ledger bookkeeping"
            for migration in targets:
                lease.check()
                in_flight[:] = [migration]
                emit(Event("applying", migration.version, migration.name))
                outcome = self._apply(migration, parsed[migration.version], emit)
                outcomes.append(outcome)
                in_flight.clear()
                _log_migration(outcome)
                emit(Event(outcome.state, migration.version, migration.name, outcome=outcome))
        finally:
            lease.release(keeper=self._kept)

    def _apply(
        self,
        migration: Migration,
        statements: list[Statement] | None,
        emit: t.Callable[[Event], None],
    ) -> Outcome:
        def in_transaction(
            on_retry: t.Callable[[Attempt], None], started: float
        ) -> tuple[t.Literal["applied", "already_applied"], int]:
            return self._apply_in_transaction(migration, statements, on_retry, started)

        def without_transaction(
            on_retry: t.Callable[[Attempt], None], started: float
        ) -> tuple[t.Literal["applied", "already_applied"], int]:
            return self._apply_without_transaction(migration, statements, on_retry, started, emit)

        state, attempts, duration_ms, retries = self._unit(
            migration,
            emit,
            f"{migration.version}_{migration.name}",
            in_transaction if migration.transactional else without_transaction,
        )
        return Outcome(
            migration.version,
            migration.name,
            migration.checksum,
            state,
            attempts,
            duration_ms,
            retries,
        )

    def _unit(
        self,
        migration: Migration,
        emit: t.Callable[[Event], None],
        guard_label: str,
        work: t.Callable[[t.Callable[[Attempt], None], float], tuple[S, int]],
    ) -> tuple[S, int, int, tuple[str, ...]]:
        """Apply or revert one migration: ``work(on_retry, started)`` under the session guard.

        Every retry is reported as an ``Event("retry", ...)`` whose detail is
        "attempt N after: <reason>" (what the CLI prints) and kept for the result.

        :returns: ``work``'s state and attempts, the duration (ms) and the retry reasons.
        """
        retries: list[str] = []

        def on_retry(attempt: Attempt) -> None:
            reason = f"attempt {attempt.number + 1} after: {attempt.reason}"
            retries.append(reason)
            emit(Event("retry", migration.version, migration.name, reason))

        started = time.monotonic()
        with migrating(guard_label):
            state, attempts = work(on_retry, started)
        return state, attempts, int((time.monotonic() - started) * 1000), tuple(retries)

    # -- transactional ----------------------------------------------------------

    def lock_timeout_for(self, migration: Migration) -> int:
        """The migration's base ``lock_timeout`` (ms): its header, else the config."""
        own = migration.lock_timeout_ms
        return self.lock_timeout_ms if own is None else own

    def statement_timeout_for(self, migration: Migration) -> int | None:
        """The migration's ``statement_timeout`` (ms): its header, else the config (None: server's)."""
        own = migration.statement_timeout_ms
        return self.statement_timeout_ms if own is None else own

    def _set_locals(
        self, conn: Connection, migration: Migration, lock_timeout_ms: int, *, begin: bool = False
    ) -> tuple[int, str] | None:
        """READ COMMITTED and the ``SET LOCAL`` timeouts, in one round trip.

        With ``begin`` the transaction is opened here too (``BEGIN ISOLATION
        LEVEL READ COMMITTED``, for a connection in driver autocommit); else
        it is the driver's, and ``SET TRANSACTION`` sets its isolation.

        :returns: on Postgres, this attempt's backend pid and transaction id
            (fetched by the same message, so they cost nothing extra).
        """
        if not self.db.is_postgres:
            return None
        settings = {"lock_timeout": format_ms(lock_timeout_ms)}
        statement_timeout = self.statement_timeout_for(migration)
        if statement_timeout is not None:
            settings["statement_timeout"] = format_ms(statement_timeout)
        if conn.dialect.server_version_info and conn.dialect.server_version_info >= (14,):
            # Lets the server notice a vanished client during a long statement
            # and free its locks, instead of running on as an orphan.
            settings["client_connection_check_interval"] = "1000ms"
        calls = ", ".join(
            f"set_config({literal(name)}, {literal(value)}, true)"
            for name, value in settings.items()
        )
        # Forced whatever the role's default: a REPEATABLE READ snapshot would
        # hide a ledger row committed by the attempt whose reply was lost.
        isolation = "BEGIN" if begin else "SET TRANSACTION"
        ((pid, xid, *_),) = rawsql.run(
            conn,
            f"{isolation} ISOLATION LEVEL READ COMMITTED;"
            f" SELECT pg_backend_pid(), CAST(pg_current_xact_id() AS text), {calls}",
        )
        return int(pid), str(xid)

    def _start_unit(
        self,
        conn: Connection,
        migration: Migration,
        lock_timeout_ms: int,
        orphans: list[tuple[int, str]],
    ) -> AppliedMigration | None:
        """Begin one attempt of a transactional unit (a migration, or its down part).

        On Postgres the attempt opens its own transaction (the connection is
        in driver autocommit; :meth:`_commit` ends it), so the ``BEGIN``, the
        isolation level, the ``SET LOCAL`` settings and the backend's pid and
        transaction id take one round trip. After a client-side cut the server
        backend of an earlier attempt may run on (or sit idle in its
        transaction), holding its locks: those in ``orphans`` are ended next.
        This attempt's own backend is added to ``orphans`` *before* it waits
        for the advisory lock, so an attempt cut while waiting (or whose lock
        reply was lost) is still known to the next one. Then the advisory xact
        lock, the second line of exclusion after the lease, and the migration's
        ledger row, read by the same message: under READ COMMITTED every
        statement of a message takes its own snapshot when it starts, so the
        re-read sees whatever was committed before the lock was granted.

        :returns: the ledger row of ``migration`` as it is once the lock is held.
        """
        backend = self._set_locals(conn, migration, lock_timeout_ms, begin=True)
        if backend is None:  # SQLite: BEGIN IMMEDIATE (see engines.py) already excludes
            return read_one(conn, self.db, migration.version)
        if orphans:
            self._terminate_orphans(conn, orphans)
        orphans.append(backend)
        rows = rawsql.run(
            conn,
            f"SELECT pg_advisory_xact_lock({int(self.db.lock_key)});"
            f" {select_one_sql(self.db, migration.version)}",
        )
        return AppliedMigration(*rows[0]) if rows else None

    def _commit(self, conn: Connection) -> None:
        """Commit the unit's transaction (on Postgres the runner's own, see :meth:`_start_unit`)."""
        if not self.db.is_postgres:
            return  # the executor's transaction (conn.begin()), committed when the attempt returns
        rawsql.run(conn, "COMMIT")
        if conn.in_transaction():
            conn.commit()  # SQLAlchemy's own bookkeeping; the driver has nothing left to commit

    def _terminate_orphans(self, conn: Connection, orphans: list[tuple[int, str]]) -> None:
        """End earlier attempts' backends that are still inside those attempts' transactions.

        Matching on the transaction id (not the pid alone) means a pooler's
        reused server connection serving someone else is never hit.
        """
        pids = ", ".join(str(int(pid)) for pid, _ in orphans)
        xids = ", ".join(literal(xid) for _, xid in orphans)
        ended = rawsql.run(
            conn,
            "SELECT a.pid, pg_terminate_backend(a.pid) FROM pg_stat_activity a"
            f" JOIN unnest(ARRAY[{pids}]::integer[], ARRAY[{xids}]::text[]) AS o(pid, xid)"
            " ON a.pid = o.pid AND a.backend_xid = xid(CAST(o.xid AS xid8))"
            " WHERE a.pid <> pg_backend_pid()",
        )
        for pid, _ in ended:
            logger.warning(
                "terminated backend %s: an earlier attempt cut off on the client side was still"
                " inside its transaction, holding its locks",
                pid,
            )

    def _transactional(
        self,
        migration: Migration,
        body: t.Callable[[Connection, FailureSite, int], T],
        *,
        on_retry: t.Callable[[Attempt], None],
        label: str,
        reverting: bool = False,
        keep: bool = False,
        found: list[AppliedMigration | None] | None = None,
    ) -> tuple[T, int]:
        """Run ``body`` as one transactional unit of retry: a migration, or its down part.

        Each attempt is a transaction: :meth:`_start_unit` (READ COMMITTED,
        ``SET LOCAL`` timeouts, earlier attempts' orphans ended, the advisory
        lock), then ``body(conn, site, attempt_number)``, committed when it
        returns; a transient error anywhere reruns it all on a new connection.
        During :meth:`run` the first attempt may start on the connection the
        previous migration committed on, and with ``keep`` (nothing ``body``
        runs can outlive its transaction on the session) this unit's
        connection is kept for the next one. ``found``, if given, holds the
        attempt's ledger row of ``migration`` (read once the lock was granted)
        while ``body`` runs.
        A lock timeout grows the next attempt's ``lock_timeout`` (see
        :func:`lock_timeout_schedule`). A non-transient error becomes a
        :class:`MigrationError` naming the file, the statement ``body`` was at
        (``site``) and the database error.

        :returns: what ``body`` returned, and the number of attempts.
        """
        base = self.lock_timeout_for(migration)
        orphans: list[tuple[int, str]] = []
        site = FailureSite()
        count = {"attempt": 0, "lock_failures": 0}

        def work(conn: Connection) -> T:
            count["attempt"] += 1
            site.clear()
            lock_timeout = lock_timeout_schedule(base, count["lock_failures"])
            row = self._start_unit(conn, migration, lock_timeout, orphans)
            if found is not None:
                found[:] = [row]
            result = body(conn, site, count["attempt"])
            self._commit(conn)
            return result

        def note_retry(attempt: Attempt) -> None:
            if attempt.transience is Transience.LOCK_TIMEOUT:
                count["lock_failures"] += 1
                logger.warning(
                    "migration %s: lock_timeout (%s) expired; the lock was released and the"
                    " migration retries with lock_timeout %s",
                    migration.version,
                    format_ms(lock_timeout_schedule(base, count["lock_failures"] - 1)),
                    format_ms(lock_timeout_schedule(base, count["lock_failures"])),
                )
            on_retry(attempt)

        try:
            result, attempts = run_with_retry(
                self.db.engine,
                work,
                policy=self.policy,
                # Postgres: the unit opens and commits its own transaction (one
                # round trip fewer); SQLite: BEGIN IMMEDIATE, see engines.py.
                transaction=not self.db.is_postgres,
                on_retry=note_retry,
                label=label,
                keeper=self._kept,
                keep=keep,
            )
        except SafeMigrateError:
            raise
        except Exception as exc:
            raise failure(migration, site, exc, reverting=reverting) from exc
        return result, len(attempts)

    def _execute(
        self,
        conn: Connection,
        migration: Migration,
        statements: list[Statement] | None,
        site: FailureSite,
        function: str,
    ) -> None:
        """Run a unit's work on ``conn``: its parsed SQL, or the ``.py`` file's ``function(m)``.

        Each statement is a message of its own, sent as written: the drill and
        the fault proxy find a migration's statements on the wire by their text.
        """
        if statements is not None:
            for statement in statements:
                site.statement = statement
                conn.exec_driver_sql(statement.sql, execution_options=RAW)
            site.clear()
            return
        context = MigrationContext(
            version=migration.version,
            name=migration.name,
            dialect=self.db.backend,
            run=recording(on_connection(conn), site, str(migration.path)),
        )
        getattr(migration.load_module(), function)(context)

    def _apply_in_transaction(
        self,
        migration: Migration,
        statements: list[Statement] | None,
        on_retry: t.Callable[[Attempt], None],
        started: float,
    ) -> tuple[t.Literal["applied", "already_applied"], int]:
        found: list[AppliedMigration | None] = [None]

        def body(
            conn: Connection, site: FailureSite, attempt: int
        ) -> t.Literal["applied", "already_applied"]:
            existing = found[0]
            if existing is not None:
                # Applied by another instance, or by our own earlier attempt
                # whose COMMIT reply was lost: done, not re-run.
                if existing.checksum != migration.checksum:
                    raise ChecksumDriftError(
                        f"{migration.path}: version {migration.version} was applied meanwhile with"
                        " a different checksum; restore the file or run repair",
                        version=migration.version,
                        path=str(migration.path),
                    )
                # Our own earlier attempt committed it if it failed after
                # writing this very row: report it as applied by this run.
                if attempt > 1 and existing.applied_by == self.applied_by:
                    return "applied"
                return "already_applied"
            self._execute(conn, migration, statements, site, "upgrade")
            self._record(conn, migration, started, attempt)
            return "applied"

        return self._transactional(
            migration,
            body,
            on_retry=on_retry,
            label=f"migration {migration.version}_{migration.name}",
            keep=leaves_session_clean(statements),
            found=found,
        )

    def _record(
        self,
        conn: Connection,
        migration: Migration,
        started: float,
        attempts: int,
        *,
        if_absent: bool = False,
    ) -> None:
        """Write ``migration``'s ledger row (``if_absent``: a no-op if it is there already).

        In a Postgres unit's transaction the ``INSERT`` goes as a simple query,
        values inlined (see :func:`.ledger.insert_sql`); elsewhere, bound.
        """
        values: dict[str, t.Any] = {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "attempts": attempts,
            "applied_by": self.applied_by,
        }
        if self.db.is_postgres and not if_absent:
            rawsql.run(conn, insert_sql(self.db, **values))
        else:
            insert_row(conn, self.db, **values, if_absent=if_absent)

    # -- no transaction -----------------------------------------------------------

    def _apply_without_transaction(
        self,
        migration: Migration,
        statements: list[Statement] | None,
        on_retry: t.Callable[[Attempt], None],
        started: float,
        emit: t.Callable[[Event], None],
    ) -> tuple[t.Literal["applied", "already_applied"], int]:
        if self._kept is not None:
            # Statements outside a transaction may run for long (an index built
            # concurrently): no idle connection waits meanwhile to time out.
            self._kept.close()
        existing, _ = run_with_retry(
            self.db.engine,
            lambda conn: read_one(conn, self.db, migration.version),
            policy=self.policy,
        )
        if existing is not None:
            return "already_applied", 1
        unit = Autocommit(
            self,
            migration,
            on_retry=on_retry,
            emit=emit,
            label=f"migration {migration.version}_{migration.name}",
        )
        unit.run(statements, "upgrade")
        run_with_retry(
            self.db.engine,
            lambda conn: self._record(conn, migration, started, unit.attempts, if_absent=True),
            policy=self.policy,
            label=f"recording migration {migration.version}",
        )
        return "applied", unit.attempts

    def _clear_invalid_index(self, conn: Connection, statement: Statement) -> None:
        """Before (re)running CREATE INDEX CONCURRENTLY, remove a half-built INVALID index.

        ``IF NOT EXISTS`` alone reports success and keeps the INVALID index.
        An orphaned backend of an earlier attempt may still be building it:
        it is terminated first (we hold the lease, so no one else is).
        """
        node = statement.node or {}
        name = node.get("idxname")
        if not name:
            return
        schema = (node.get("relation") or {}).get("schemaname")
        row = conn.execute(
            text(
                "SELECT c.oid, i.indisvalid FROM pg_class c"
                " JOIN pg_index i ON i.indexrelid = c.oid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relname = :name AND n.nspname = coalesce(:schema, current_schema())"
            ),
            {"name": name, "schema": schema},
        ).first()
        if row is None or row.indisvalid:
            return
        for _ in range(50):
            builders = conn.execute(
                text(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_progress_create_index"
                    " WHERE index_relid = :oid AND pid <> pg_backend_pid()"
                ),
                {"oid": row.oid},
            ).all()
            if not builders:
                break
            time.sleep(0.1)
        qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
        logger.warning(
            "dropping INVALID index %s left by an interrupted CREATE INDEX CONCURRENTLY", qualified
        )
        conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")


# -- structured log records (one per migration, one per run) -------------------------------
#
# ``extra`` keys are stable, for log pipelines that index them: ``safe_migrate_event``
# names the record; ``version``, ``migration`` (version_name), ``duration_ms`` and
# ``attempts`` describe it. (``name`` is taken by ``logging.LogRecord`` itself.)


def log_unit_done(outcome: Outcome | Reverted, *, event: str, done: str, already: str) -> None:
    """The record of one migration applied (``run``) or reverted (``rollback``)."""
    logger.info(
        "migration %s_%s %s in %d ms (%d attempt%s)",
        outcome.version,
        outcome.name,
        already if outcome.state.startswith("already") else done,
        outcome.duration_ms,
        outcome.attempts,
        "" if outcome.attempts == 1 else "s",
        extra={
            "safe_migrate_event": event,
            "version": outcome.version,
            "migration": f"{outcome.version}_{outcome.name}",
            "result": outcome.state,
            "duration_ms": outcome.duration_ms,
            "attempts": outcome.attempts,
            "retries": list(outcome.retries),
        },
    )


def log_unit_failed(
    migration: Migration, exc: BaseException, *, event: str, doing: str = ""
) -> None:
    """The record of one migration whose application (or revert: ``doing``) failed."""
    logger.error(
        "%smigration %s_%s failed: %s",
        doing,
        migration.version,
        migration.name,
        first_line(exc),
        extra={
            "safe_migrate_event": event,
            "version": migration.version,
            "migration": f"{migration.version}_{migration.name}",
            "error_type": type(exc).__name__,
            "error": first_line(exc),
        },
    )


def _log_migration(outcome: Outcome) -> None:
    log_unit_done(
        outcome,
        event="migration_applied",
        done="applied",
        already="was already applied by another instance",
    )


def _log_migration_failed(migration: Migration, exc: BaseException) -> None:
    log_unit_failed(migration, exc, event="migration_failed")


def _log_run(outcomes: list[Outcome], started: float, exc: BaseException | None) -> None:
    applied = sum(1 for o in outcomes if o.state == "applied")
    duration_ms = int((time.monotonic() - started) * 1000)
    extra = {
        "safe_migrate_event": "run_finished",
        "ok": exc is None,
        "applied": applied,
        "already_applied": len(outcomes) - applied,
        "duration_ms": duration_ms,
        "versions": [o.version for o in outcomes],
        "error_type": type(exc).__name__ if exc is not None else None,
        "error": first_line(exc) if exc is not None else None,
    }
    if exc is not None:
        logger.error(
            "migration run failed after %d ms (%d applied): %s",
            duration_ms,
            applied,
            first_line(exc),
            extra=extra,
        )
    elif outcomes:
        logger.info(
            "migration run finished: %d applied in %d ms", applied, duration_ms, extra=extra
        )
    else:  # every boot with nothing to do: not worth an INFO line
        logger.debug("migration run: nothing to apply", extra=extra)
