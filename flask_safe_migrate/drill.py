"""The drill: cut the connection at every point of every migration, and check nothing changed.

The runner promises that a dropped connection never leaves a migration applied twice or half
applied. The drill checks that promise for *your* history, before a deploy: a migration that runs
outside a transaction and is not idempotent, or a Python migration with a side effect the retry
repeats, is found here instead of in production.

How (the decisions are explained in ``docs/drill.md``):

1. Scratch databases, on the server of the configured URL (or ``scratch_url``), through a direct
   admin connection: a pooler would keep connections to a template open, and
   ``CREATE DATABASE ... TEMPLATE`` refuses a template anyone is connected to.
2. A chain of checkpoints: checkpoint *k* is a copy of checkpoint *k - 1* on which migration *k*
   was applied once, cleanly, through the package's fault proxy (armed with nothing). That clean
   run gives the reference (fingerprint and ledger after *k*) and the recording of every query it
   sent, from which the fault points of *k* are planned; a second clean run on another copy tells
   which columns vary by themselves. So the cost is linear in the history: each faulty run copies
   one checkpoint and applies one migration. A migration before ``--from`` is applied in place:
   no copy of the state before it is ever needed.
3. For every fault point (the connection cut before each statement, after each statement with
   its reply lost, while the ``COMMIT`` is in flight, after the ``COMMIT`` with its reply lost),
   a fresh copy of checkpoint *k - 1* is migrated to *k* through the proxy armed with that one
   cut; the runner retries as it would in production (with a short backoff), and the end state
   is compared with the reference: fingerprint (schema and data) and ledger.

Postgres only: SQLite has no server to cut the connection to.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import time
import typing as t

from .classify import first_line
from .database import MigrationDatabase
from .drill_scratch import SCRATCH_PREFIX
from .drill_scratch import DrillInterrupted
from .drill_scratch import ScratchServer
from .drill_scratch import stop_drill_on_signals
from .errors import BadInputError
from .errors import ConfigError
from .errors import RetriesExhausted
from .errors import SafeMigrateError
from .executor import RetryPolicy
from .faults import Cut
from .faults import FaultProxy
from .faults import ProxyEvent
from .fingerprint import Fingerprint
from .fingerprint import take
from .loader import Migration
from .loader import discover
from .row_graph import ColumnName
from .runner import Event
from .runner import Runner
from .urls import display_url
from .urls import normalize_url

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "SCRATCH_PREFIX",
    "Drill",
    "DrillCouldNotRun",
    "DrillInterrupted",
    "DrillReport",
    "FaultPoint",
    "MigrationReport",
    "PointResult",
]

#: Random mode: a run where no cut landed is repeated with this many other seeds at most.
_RESEEDS = 3
#: The proxy records at most this many characters of a query (see :class:`.faults.ProxyEvent`).
_DETAIL = 200
_COMMIT_RE = re.compile(r"^\s*(COMMIT|END)\b", re.IGNORECASE)
#: Queries the runner sends around a Python migration's own: not "statements" of the migration.
_BOOKKEEPING = re.compile(
    r"^\s*(BEGIN|COMMIT|END|ROLLBACK|SET\b|SHOW\b|SELECT\s+set_config\(|SELECT\s+pg_advisory"
    r"|SELECT\s+pg_backend_pid\(\)|SELECT\s+pg_terminate_backend)",
    re.IGNORECASE,
)

Mode = t.Literal["systematic", "random"]


class DrillCouldNotRun(SafeMigrateError):
    """The drill could not reach a verdict: the scratch server failed it, or the drill broke.

    Exit 1 ("the operation failed", as for every command, shared with "not retry-safe"), not
    2, which is for usage or configuration (SQLite, a pooler URL, a role without CREATEDB).
    The message and the JSON error ``type`` tell it from "a migration is not retry-safe".
    """


@dataclasses.dataclass(frozen=True)
class FaultPoint:
    """One place to cut: a :class:`.faults.Cut` recipe and how to say it to a person."""

    label: str
    when: t.Literal["before_query", "after_query", "commit_in_flight", "commit_reply_lost"]
    match: str | None
    nth: int
    statement: int | None = None

    def cut(self) -> Cut:
        return Cut(self.when, match=self.match, nth=self.nth)


@dataclasses.dataclass
class PointResult:
    """What one faulty apply did, compared with the clean one."""

    point: str
    ok: bool
    fired: bool = True
    differences: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    attempts: int = 1
    inconclusive: bool = False

    def summary(self) -> str:
        """The first thing that went wrong, with where: "<difference> after <point>"."""
        what = self.error or (self.differences[0] if self.differences else "no difference")
        more = len(self.differences) - (0 if self.error else 1)
        extra = f" (+{more} more)" if more > 0 else ""
        return f"{what}{extra} after {self.point}"

    def document(self) -> dict[str, t.Any]:
        return {
            "point": self.point,
            "ok": self.ok,
            "fired": self.fired,
            "attempts": self.attempts,
            "error": self.error,
            "differences": list(self.differences),
            "inconclusive": self.inconclusive,
        }


@dataclasses.dataclass
class MigrationReport:
    """One row of the drill's table."""

    version: str
    name: str
    checksum: str
    transactional: bool
    drilled: bool = True
    #: Random mode: ``points`` are runs with random cuts, not systematic fault points.
    random: bool = False
    points: list[PointResult] = dataclasses.field(default_factory=list)
    #: Why no reference could be made: the clean apply failed, or two clean applies differ.
    clean_error: str | None = None
    #: Set when an earlier migration stopped the drill before this one: why.
    not_reached: str | None = None
    #: ``schema.table.column`` whose values differed between two clean runs: not compared.
    volatile: list[str] = dataclasses.field(default_factory=list)

    @property
    def failures(self) -> list[PointResult]:
        return [p for p in self.points if not p.ok]

    @property
    def unreached(self) -> list[PointResult]:
        return [p for p in self.points if not p.fired]

    @property
    def state(self) -> t.Literal["retry_safe", "unsafe", "failed", "not_reached", "not_drilled"]:
        if self.clean_error is not None:
            return "failed"
        if self.not_reached is not None:
            return "not_reached"
        if not self.drilled:
            return "not_drilled"
        return "unsafe" if self.failures else "retry_safe"

    @property
    def ok(self) -> bool:
        return self.state in ("retry_safe", "not_drilled")

    def detail(self) -> str:
        """The table's last column: what broke it, or why it is safe."""
        if self.clean_error is not None:
            return self.clean_error
        if self.not_reached is not None:
            return f"not reached: {self.not_reached}"
        if not self.drilled:
            return "applied cleanly, not drilled"
        if self.failures:
            first = self.failures[0].summary()
            others = len(self.failures) - 1
            return first + (f" (and {others} more point(s))" if others else "")
        skipped = len(self.unreached)
        inconclusive = sum(1 for p in self.points if p.inconclusive)
        notes = []
        if skipped:
            notes.append(
                f"{skipped} run(s) without a cut"
                if self.random
                else f"{skipped} point(s) not reached"
            )
        if inconclusive:
            notes.append(f"{inconclusive} run(s) gave up retrying")
        if self.volatile:
            notes.append(f"not compared, varied between clean runs: {', '.join(self.volatile)}")
        return "retry-safe" + (f" ({'; '.join(notes)})" if notes else "")

    def document(self) -> dict[str, t.Any]:
        return {
            "version": self.version,
            "name": self.name,
            "checksum": self.checksum,
            "state": self.state,
            "transactional": self.transactional,
            # Random mode has runs, not fault points.
            "fault_points": None if self.random else len(self.points),
            "runs": len(self.points),
            "failures": [p.document() for p in self.failures],
            "unreached": [p.point for p in self.unreached],
            "points": [p.document() for p in self.points],
            "clean_error": self.clean_error,
            "not_reached": self.not_reached,
            "volatile_columns": list(self.volatile),
        }


@dataclasses.dataclass
class DrillReport:
    """Everything the drill found; ``ok`` is what the exit code says."""

    mode: Mode
    server: str
    migrations: list[MigrationReport]
    applies: int
    duration_s: float

    @property
    def runs(self) -> int:
        """Faulty applies: one per fault point, or the random runs."""
        return sum(len(m.points) for m in self.migrations)

    @property
    def unreached(self) -> int:
        """Fault points that never fired, or random runs where no cut landed."""
        return sum(len(m.unreached) for m in self.migrations)

    @property
    def failures(self) -> int:
        return sum(len(m.failures) for m in self.migrations) + sum(
            1 for m in self.migrations if m.clean_error is not None
        )

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.migrations)

    @property
    def exit_code(self) -> int:
        """0 all retry-safe; 1 any ❌ not retry-safe, or a migration could not be drilled."""
        return 0 if self.ok else 1

    def document(self) -> dict[str, t.Any]:
        return {
            "ok": self.ok,
            "mode": self.mode,
            "server": self.server,
            "fault_points": None if self.mode == "random" else self.runs,
            "runs": self.runs,
            "unreached": self.unreached,
            "failures": self.failures,
            "applies": self.applies,
            "duration_ms": int(self.duration_s * 1000),
            "migrations": [m.document() for m in self.migrations],
        }


# -- planning fault points ----------------------------------------------------------------------


def _query_regex(detail: str) -> str:
    """A regex matching exactly the query the proxy recorded as ``detail`` (maybe truncated)."""
    return r"\A" + re.escape(detail) + (r"\Z" if len(detail) < _DETAIL else "")


def plan_points(
    migration: Migration,
    queries: list[str],
    window: tuple[int, int],
    ledger_table: str = "safe_migrate_ledger",
) -> tuple[list[FaultPoint], list[str]]:
    """Fault points for ``migration`` from the queries its clean apply sent.

    :param queries: every query of the clean run, in order, as the proxy recorded them.
    :param window: ``queries[start:end]`` were sent while this migration was being applied
        (between the runner's ``applying`` and ``applied`` events).
    :returns: the points, and the migration's statements as sent.

    A point targets its query by text and occurrence (``nth``) across the whole run, so the
    runner's own queries before it (lease, ledger) are counted the same way in the faulty run.
    """
    start, end = window
    in_window = list(range(start, end))
    if migration.kind == "sql":
        wanted = [s.sql[:_DETAIL] for s in migration.statements(dialect="postgresql")]
        found: list[int] = []
        for index in in_window:
            if len(found) < len(wanted) and queries[index] == wanted[len(found)]:
                found.append(index)
    else:
        found = [i for i in in_window if not _BOOKKEEPING.match(queries[i])]
        # The ledger re-read and insert (the lease table's name starts with the ledger's too).
        found = [i for i in found if ledger_table not in queries[i]]
    points: list[FaultPoint] = []
    statements: list[str] = []
    for number, index in enumerate(found, start=1):
        detail = queries[index]
        regex = _query_regex(detail)
        pattern = re.compile(regex, re.IGNORECASE)
        nth = sum(1 for q in queries[: index + 1] if pattern.search(q))
        short = " ".join(detail.split())
        short = short if len(short) <= 60 else short[:59] + "…"
        statements.append(short)
        points.append(
            FaultPoint(
                f"cut before statement {number} ({short})", "before_query", regex, nth, number
            )
        )
        points.append(
            FaultPoint(
                f"cut after statement {number} ({short}), its reply lost",
                "after_query",
                regex,
                nth,
                number,
            )
        )
    after = found[-1] + 1 if found else start
    commit = next((i for i in range(after, end) if _COMMIT_RE.match(queries[i])), None)
    if commit is not None:
        nth = sum(1 for q in queries[: commit + 1] if _COMMIT_RE.match(q))
        # A no-transaction migration's statements autocommit: its COMMIT is the ledger row's.
        what = "COMMIT" if migration.transactional else "the ledger row's COMMIT"
        points.append(FaultPoint(f"cut while {what} is in flight", "commit_in_flight", None, nth))
        points.append(FaultPoint(f"lost reply to {what}", "commit_reply_lost", None, nth))
    return points, statements


# -- the drill ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Reference:
    fingerprint: Fingerprint
    ledger: list[tuple[str, str, str]]


class Drill:
    """Drill one migrations directory on scratch databases of one Postgres server.

    :param url: the server to create scratch databases on (a direct URL, role with CREATEDB);
        its database is only used to issue ``CREATE``/``DROP DATABASE``.
    :param random_runs: with ``N > 0``, N runs per migration with random cuts (probability
        ``rate`` per relayed chunk, seeded, FIN on even seeds and RST on odd ones) instead of
        the systematic points.
    :param from_version: drill only this version and later ones (earlier ones are applied cleanly
        to build the state); ``to_version``: stop after this one.
    :param on_progress: called with one line of progress at a time.
    """

    def __init__(
        self,
        url: str | URL,
        directory: str,
        *,
        ledger_table: str = "safe_migrate_ledger",
        ledger_schema: str | None = None,
        lock_timeout_ms: int = 2000,
        statement_timeout_ms: int | None = None,
        connect_timeout: float = 10.0,
        random_runs: int = 0,
        rate: float = 0.02,
        seed: int = 0,
        from_version: str | None = None,
        to_version: str | None = None,
        on_progress: t.Callable[[str], None] | None = None,
    ) -> None:
        self.url = normalize_url(url, key="--scratch-url")
        if self.url.get_backend_name() != "postgresql":
            raise ConfigError(
                f"the drill needs PostgreSQL ({display_url(self.url)} is"
                f" {self.url.get_backend_name()}): it cuts the connection to a database server,"
                " and SQLite has none. Run it against a Postgres server with the same history,"
                " e.g. with --scratch-url."
            )
        if random_runs < 0 or not 0.0 < rate <= 1.0:
            raise ConfigError("--random must be >= 0 and --rate within (0, 1]")
        self.directory = directory
        self.ledger_table = ledger_table
        self.ledger_schema = ledger_schema
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout = connect_timeout
        self.random_runs = random_runs
        self.rate = rate
        self.seed = seed
        self.from_version = from_version
        self.to_version = to_version
        self.progress = on_progress or (lambda line: None)
        self.applies = 0
        #: Scratch databases the last :meth:`run` could not drop.
        self.left_behind: list[str] = []
        # Retries as in production, only faster: a drill runs hundreds of applies.
        self.policy = RetryPolicy(
            max_attempts=20 if random_runs else 8,
            backoff_base=0.01,
            backoff_cap=0.1,
            deadline=120.0,
        )

    @property
    def mode(self) -> Mode:
        return "random" if self.random_runs else "systematic"

    # -- selection ----------------------------------------------------------------------------

    def _migrations(self) -> tuple[list[Migration], set[str]]:
        migrations = discover(self.directory)
        known = {m.number for m in migrations}
        for option, value in (("--from", self.from_version), ("--to", self.to_version)):
            if value is not None and (not value.isdigit() or int(value) not in known):
                raise BadInputError(f"{option} {value}: no migration has this version")
        if self.to_version is not None:
            migrations = [m for m in migrations if m.number <= int(self.to_version)]
        low = int(self.from_version) if self.from_version is not None else None
        drilled = {m.version for m in migrations if low is None or m.number >= low}
        for migration in migrations:  # a broken file fails now, not after minutes
            if migration.kind == "sql":
                migration.statements(dialect="postgresql")
            else:
                migration.load_module()
        return migrations, drilled

    # -- one apply ----------------------------------------------------------------------------

    def _proxied(self, proxy: FaultProxy, name: str) -> str:
        """The URL of scratch database ``name`` through the proxy, in plaintext on its leg."""
        url = self.url.set(database=name)
        rendered = proxy.url(url.render_as_string(hide_password=False))
        # The proxy answers SSLRequest with 'N': the client leg is plaintext on loopback.
        from sqlalchemy.engine import make_url

        plain = make_url(rendered).update_query_dict({"sslmode": "disable"})
        return plain.render_as_string(hide_password=False)

    def _apply(
        self, url: str, version: str, on_event: t.Callable[[Event], None] | None = None
    ) -> tuple[str | None, int, bool]:
        """Migrate ``url`` up to ``version``; (error or None, attempts, gave up retrying)."""
        self.applies += 1
        db = MigrationDatabase(
            url,
            ledger_table=self.ledger_table,
            ledger_schema=self.ledger_schema,
            connect_timeout=min(self.connect_timeout, 5.0),
        )
        runner = Runner(
            db,
            self.directory,
            policy=self.policy,
            lock_timeout_ms=self.lock_timeout_ms,
            statement_timeout_ms=self.statement_timeout_ms,
            # Connections go straight to Postgres through the proxy: session settings are ours.
            dedicated_url=True,
            # No heartbeat during a short apply, so the query sequence is the same every run.
            lease_ttl=600.0,
        )
        retries = 0

        def count(event: Event) -> None:
            nonlocal retries
            retries += event.kind == "retry"
            if on_event is not None:
                on_event(event)

        try:
            runner.run(to=version, on_event=count)
        except RetriesExhausted as exc:
            return first_line(exc), len(exc.attempts), True
        except Exception as exc:
            return first_line(exc), 1 + retries, False
        finally:
            db.dispose()
        # The retries the runner reported (a retried ledger-row insert is not reported).
        return None, 1 + retries, False

    def _reference(self, name: str, volatile: t.Iterable[ColumnName] = ()) -> _Reference:
        """Fingerprint and ledger of scratch database ``name``; ``volatile`` columns not compared."""
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        db = MigrationDatabase(
            self.url.set(database=name),
            ledger_table=self.ledger_table,
            ledger_schema=self.ledger_schema,
        )
        engine = create_engine(self.url.set(database=name), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                fingerprint = take(
                    conn,
                    exclude=(self.ledger_table, f"{self.ledger_table}_lease"),
                    keep_rows=True,
                    volatile=set(volatile),
                )
                ledger = [
                    (str(r[0]), str(r[1]), str(r[2]))
                    for r in conn.exec_driver_sql(
                        f"SELECT version, name, checksum FROM {db.ledger} ORDER BY version"
                    )
                ]
        finally:
            engine.dispose()
        return _Reference(fingerprint, ledger)

    @staticmethod
    def _compare(expected: _Reference, got: _Reference) -> list[str]:
        found = expected.fingerprint.differences(got.fingerprint)
        if got.ledger != expected.ledger:
            want = [v for v, _, _ in expected.ledger]
            have = [v for v, _, _ in got.ledger]
            if want != have:
                found.append(f"ledger versions {', '.join(want)} → {', '.join(have) or 'none'}")
            else:
                found.append("ledger rows differ (name or checksum)")
        return found

    # -- the whole drill ----------------------------------------------------------------------

    def run(self, *, linger_on_interrupt: bool = False) -> DrillReport:
        """Run the drill; scratch databases are dropped however it ends.

        :param linger_on_interrupt: after an interrupt, leave those signals ignored (for a
            process that exits right after; see :class:`.interrupt.StopSignals`).
        :raises DrillInterrupted: on SIGINT, SIGTERM or SIGHUP, once the databases are dropped
            (:attr:`left_behind` names any that could not be).
        """
        started = time.monotonic()
        migrations, drilled = self._migrations()
        scratch = ScratchServer(self.url, connect_timeout=self.connect_timeout)
        reports: list[MigrationReport] = []
        proxy: FaultProxy | None = None
        with stop_drill_on_signals(linger=linger_on_interrupt) as interrupts:
            try:
                scratch.open()
                proxy = FaultProxy.for_url(
                    self.url.render_as_string(hide_password=False),
                    protocol=True,
                    upstream_tls=_upstream_tls(self.url),
                ).start()
                self._run(scratch, proxy, migrations, drilled, reports)
            finally:
                interrupts.cleaning()
                if proxy is not None:
                    proxy.stop()
                self.left_behind = scratch.drop_all()
                if self.left_behind:
                    self.progress(
                        "could not drop scratch database(s): "
                        + ", ".join(self.left_behind)
                        + " (drop them with `flask safe-migrate drill --cleanup`)"
                    )
                elif interrupts.interrupted:
                    self.progress("interrupted: scratch databases dropped")
        return DrillReport(
            self.mode, display_url(self.url), reports, self.applies, time.monotonic() - started
        )

    def _run(
        self,
        scratch: ScratchServer,
        proxy: FaultProxy,
        migrations: list[Migration],
        drilled: set[str],
        reports: list[MigrationReport],
    ) -> None:
        # The state before the next migration: empty, then each checkpoint in turn.
        previous = scratch.create("start")
        self.progress(
            f"Drilling {len(drilled)} of {len(migrations)} migration(s) from {self.directory} on"
            f" scratch databases of {display_url(self.url)} ({self.mode})"
        )
        for position, migration in enumerate(migrations, start=1):
            report = self._report(migration, drilled)
            reports.append(report)
            label = f"{migration.version}_{migration.name}"
            if report.drilled:
                # `previous` is copied for each apply of this migration: the second clean one's
                # copy is made in the background while the checkpoint is made and applied.
                scratch.prefetch(f"f{migration.version}", previous, 1)
                checkpoint = scratch.create(f"c{migration.version}", template=previous)
            else:
                checkpoint = previous  # nothing needs the state before it: applied in place
            # The clean apply, through the idle proxy: the reference, and the queries to cut.
            first = len(proxy.events)
            marks: dict[str, int] = {}

            def mark(event: Event, marks: dict[str, int] = marks) -> None:
                if event.kind in ("applying", "applied", "already_applied"):
                    marks[event.kind] = len(proxy.events)

            error, _, _ = self._apply(
                self._proxied(proxy, checkpoint), migration.version, on_event=mark
            )
            if error is not None and "SCRAM-SHA-256-PLUS" in error:
                raise ConfigError(
                    f"{display_url(self.url)}: the server asks for SCRAM with channel binding"
                    " over TLS, which the drill's proxy (plaintext towards the client) cannot"
                    " relay. Pass --scratch-url with a URL that allows a plaintext login (see"
                    " docs/drill.md)."
                )
            if error is not None or "applying" not in marks:
                report.clean_error = f"the clean apply failed: {error or 'not applied'}"
                self.progress(f"[{position}/{len(migrations)}] ❌ {label}: {report.detail()}")
                self._not_reached(migrations[position:], migration, drilled, reports)
                return
            if report.drilled:
                reference, volatile, twin_error = self._clean_twice(
                    scratch, previous, checkpoint, migration
                )
                report.volatile = sorted(".".join(column) for column in volatile)
                if twin_error is not None:
                    report.clean_error = twin_error
                    self.progress(f"[{position}/{len(migrations)}] ❌ {label}: {report.detail()}")
                    self._not_reached(migrations[position:], migration, drilled, reports)
                    return
                events = proxy.events
                queries, index_of = _queries(events[first:])
                window = (
                    index_of(marks["applying"] - first),
                    index_of(marks.get("applied", len(events)) - first),
                )
                points, _ = plan_points(migration, queries, window, self.ledger_table)
                runs = self._runs(points)
                # One copy per faulty apply, made a few ahead while the applies run.
                scratch.prefetch(f"f{migration.version}", previous, len(runs))
                self.progress(
                    f"[{position}/{len(migrations)}] {label}: {len(runs)} faulty apply(s)"
                    f" ({'random' if self.random_runs else 'one per fault point'})"
                )
                for number, (point, arm) in enumerate(runs, start=1):
                    result = self._faulty(
                        scratch, proxy, previous, migration, point, arm, reference, volatile
                    )
                    # A random run where no cut landed proved nothing: again with other seeds.
                    for retry in range(1, _RESEEDS + 1):
                        if not (self.random_runs and result.ok and not result.fired):
                            break
                        point, arm = self._random_run(
                            self.seed + number - 1 + retry * self.random_runs
                        )
                        result = self._faulty(
                            scratch, proxy, previous, migration, point, arm, reference, volatile
                        )
                    report.points.append(result)
                    if not result.ok:
                        self.progress(f"    ❌ {result.summary()}")
                    elif number % 10 == 0:
                        self.progress(f"    {number}/{len(runs)} done")
                mark_ = "✅" if report.ok else "❌"
                self.progress(f"[{position}/{len(migrations)}] {mark_} {label}: {report.detail()}")
                scratch.release(previous)
            previous = checkpoint

    def _report(self, migration: Migration, drilled: set[str], **state: t.Any) -> MigrationReport:
        """A fresh row of the table for ``migration``."""
        return MigrationReport(
            migration.version,
            migration.name,
            migration.checksum,
            migration.transactional,
            drilled=migration.version in drilled,
            random=self.random_runs > 0,
            **state,
        )

    def _not_reached(
        self,
        rest: list[Migration],
        failed: Migration,
        drilled: set[str],
        reports: list[MigrationReport],
    ) -> None:
        """One row per migration after ``failed``: there is no state to build them on."""
        why = f"{failed.version} failed even when applied cleanly"
        reports.extend(self._report(migration, drilled, not_reached=why) for migration in rest)

    def _clean_twice(
        self, scratch: ScratchServer, template: str, checkpoint: str, migration: Migration
    ) -> tuple[_Reference, set[ColumnName], str | None]:
        """The reference for ``migration``, with the columns that vary between two clean runs.

        ``checkpoint`` already had ``migration`` applied cleanly; a second copy of ``template``
        gets it applied cleanly too. A column whose values differ between the two (filled from
        ``now()``, ``clock_timestamp()``, ``gen_random_uuid()``...) depends on time or chance,
        not on a retry: it is not compared, and a foreign key onto it is compared through the
        row it joins to. Every other column is, whatever its type or default.

        :returns: the reference, the volatile columns, and an error when the two clean runs
            differ even without them.
        """
        twin = scratch.copy(f"f{migration.version}", template)
        try:
            error, _, _ = self._apply(
                self.url.set(database=twin).render_as_string(hide_password=False),
                migration.version,
            )
            if error is not None:
                return self._reference(checkpoint), set(), f"the second clean apply failed: {error}"
            first, second = self._reference(checkpoint), self._reference(twin)
            volatile = first.fingerprint.varying(second.fingerprint)
            if volatile:
                first, second = (
                    self._reference(checkpoint, volatile),
                    self._reference(twin, volatile),
                )
            differences = self._compare(first, second)
            if differences:
                return first, volatile, f"two clean applies ended differently: {differences[0]}"
            return first, volatile, None
        finally:
            scratch.drop_later(twin)

    def _runs(
        self, points: list[FaultPoint]
    ) -> list[tuple[str, t.Callable[[FaultProxy], Cut | None]]]:
        """(label, arm) per faulty apply: one per point, or the random runs."""
        runs: list[tuple[str, t.Callable[[FaultProxy], Cut | None]]] = []
        if not self.random_runs:
            for point in points:

                def arm_cut(proxy: FaultProxy, point: FaultPoint = point) -> Cut | None:
                    return proxy.add_cut(point.cut())

                runs.append((point.label, arm_cut))
            return runs
        return [self._random_run(self.seed + run) for run in range(self.random_runs)]

    def _random_run(self, seed: int) -> tuple[str, t.Callable[[FaultProxy], Cut | None]]:
        """(label, arm) of one run with random cuts, FIN on even seeds and RST on odd ones.

        By the seed, not the run number: ``--random 1 --seed S`` replays the run labelled S.
        """
        how: t.Literal["fin", "rst"] = "fin" if seed % 2 == 0 else "rst"

        def arm(proxy: FaultProxy) -> None:
            proxy.set_random(self.rate, seed=seed, how=how)

        return f"random cuts (rate {self.rate}, seed {seed}, {how.upper()})", arm

    def _faulty(
        self,
        scratch: ScratchServer,
        proxy: FaultProxy,
        template: str,
        migration: Migration,
        point: str,
        arm: t.Callable[[FaultProxy], Cut | None],
        reference: _Reference,
        volatile: set[ColumnName],
    ) -> PointResult:
        name = scratch.copy(f"f{migration.version}", template)
        try:
            first = len(proxy.events)
            proxy.clear()
            cut = arm(proxy)
            try:
                error, attempts, gave_up = self._apply(
                    self._proxied(proxy, name), migration.version
                )
            finally:
                proxy.clear()
            events = proxy.events[first:]
            cuts = [e for e in events if e.kind == "cut"]
            fired = cut.fired > 0 if cut is not None else bool(cuts)
            if cut is None:  # random: say where the cuts landed, so a failure can be replayed
                point = f"{point}: {_describe_cuts(events, cuts)}"
            result = PointResult(point, ok=True, fired=fired, attempts=attempts)
            if gave_up and self.random_runs:
                # Bad luck with the dice, not a retry-safety finding: reported, not failed.
                result.inconclusive, result.error = True, error
                return result
            if error is not None:
                result.ok, result.error = False, f"the run failed: {error}"
            result.differences = self._compare(reference, self._reference(name, volatile))
            if result.differences:
                result.ok = False
            return result
        finally:
            scratch.drop_later(name)


def _queries(events: list[ProxyEvent]) -> tuple[list[str], t.Callable[[int], int]]:
    """The query texts among ``events``, and a map from an event index to a query index."""
    queries: list[str] = []
    starts: list[int] = []
    for event in events:
        starts.append(len(queries))
        if event.kind == "query":
            queries.append(event.detail)

    def index_of(event_index: int) -> int:
        return starts[event_index] if event_index < len(starts) else len(queries)

    return queries, index_of


def _describe_cuts(events: list[ProxyEvent], cuts: list[ProxyEvent]) -> str:
    if not cuts:
        return "no cut landed"
    last_query: dict[int, str] = {}
    where: list[str] = []
    for event in events:
        if event.kind == "query":
            last_query[event.conn] = event.detail
        elif event.kind == "cut":
            query = last_query.get(event.conn)
            short = " ".join(query.split())[:50] if query else "connection start-up"
            where.append(f"after {short!r}")
    return f"{len(cuts)} cut(s), " + "; ".join(where[:3]) + ("; …" if len(where) > 3 else "")


def _upstream_tls(url: URL) -> ssl.SSLContext | None:
    """TLS from the proxy to the server when the URL demands it (the client leg is plaintext).

    Note that a server offering SCRAM with channel binding over TLS cannot be reached this way:
    libpq refuses ``SCRAM-SHA-256-PLUS`` on its non-TLS leg. Use a scratch URL that allows a
    plaintext connection from the drill's host (see docs/drill.md).
    """
    mode = str(url.query.get("sslmode") or "")
    if mode not in ("require", "verify-ca", "verify-full"):
        return None
    context = ssl.create_default_context()
    if mode != "verify-full":
        context.check_hostname = False
    if mode == "require":
        context.verify_mode = ssl.CERT_NONE
    return context
