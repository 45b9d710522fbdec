"""``doctor [--live]``: what sits between the app and Postgres, and whether retries work there.

Most migration incidents come from the path, not the SQL: a transaction
pooler that hands session settings to other clients, TLS that was assumed
but is off, a server-wide ``statement_timeout`` that kills a long index
build. ``doctor`` measures the path instead of trusting the URL:

* a pooler is detected from the pid the server reports (``pg_backend_pid()``)
  versus the one the driver was told at connect time (a pooler sends its
  own key); its mode from two client connections open at once: a
  transaction pooler hands the second, while the first is idle, the same
  server connection, so both report the same backend pid;
* ``--live`` runs the seed report's "three critical points" on this very
  path: it kills its own backend mid-statement from a second connection and
  shows (1) the executor retried on a new connection (new backend pid) after
  disposing the pool, (2) each attempt was the executor's own transaction,
  with no outer one around it (a new transaction id per attempt), and, from
  ``verify`` on the migrations directory, (2) no migration code wraps the
  executor in a transaction and (3) the migrations are DDL or safe DML.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
import typing as t

from .urls import display_url

if t.TYPE_CHECKING:
    from .runner import Runner


@dataclasses.dataclass
class Diagnosis:
    """What ``doctor`` found (JSON: :meth:`document`)."""

    url: str
    backend: str
    server_version: str | None = None
    tls_client: bool | None = None
    tls_server: bool | None = None
    pooler: t.Literal["none", "transaction", "session", "unknown"] | None = None
    pids: tuple[int | None, int | None, int | None] | None = None
    latency_ms: float | None = None
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    advice: list[str] = dataclasses.field(default_factory=list)
    live: dict[str, t.Any] | None = None

    def document(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


def _pg_info(conn: t.Any) -> tuple[int | None, bool | None]:
    """(pid the driver was told at connect time, whether the client leg uses TLS).

    psycopg2 has ``conn.info.ssl_in_use``; psycopg 3 has it on the libpq
    wrapper, ``conn.pgconn.ssl_in_use``.
    """
    info = getattr(conn, "info", None)
    told = getattr(info, "backend_pid", None)
    ssl = getattr(info, "ssl_in_use", None)
    if ssl is None:
        ssl = getattr(getattr(conn, "pgconn", None), "ssl_in_use", None)
    return told, None if ssl is None else bool(ssl)


def _one(conn: t.Any, sql: str) -> t.Any:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
        return row[0] if row else None
    finally:
        cursor.close()


def diagnose(runner: Runner) -> Diagnosis:
    """Connect twice, measure, and advise (read-only: nothing is written)."""
    db = runner.db
    found = Diagnosis(url=display_url(db.url), backend=db.backend)
    if not db.is_postgres:
        found.server_version = _sqlite_version(runner)
        found.advice.append(
            "SQLite: no pooler and no network; migrations run in BEGIN IMMEDIATE transactions"
        )
        return found
    first = db.raw_connect()
    try:
        told, found.tls_client = _pg_info(first)
        found.server_version = str(_one(first, "SHOW server_version"))
        pid_one = _one(first, "SELECT pg_backend_pid()")
        found.tls_server = _one(first, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            _one(first, "SELECT 1")
            timings.append((time.perf_counter() - started) * 1000)
        found.latency_ms = round(statistics.median(timings), 2)
        for name in ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout"):
            found.settings[name] = str(_one(first, f"SHOW {name}"))
        # The first connection stays open and idle while the second asks.
        second = db.raw_connect()
        try:
            pid_two = _one(second, "SELECT pg_backend_pid()")
        finally:
            second.close()
    finally:
        first.close()
    found.pids = (told, pid_one, pid_two)
    if told is not None and told == pid_one:
        found.pooler = "none"
    elif pid_one == pid_two:
        found.pooler = "transaction"
    elif told is not None:
        found.pooler = "session"
    else:
        found.pooler = "unknown"
    _advise(runner, found)
    return found


def _sqlite_version(runner: Runner) -> str:
    conn = runner.db.raw_connect()
    try:
        return "SQLite " + str(_one(conn, "SELECT sqlite_version()"))
    finally:
        conn.close()


def _advise(runner: Runner, found: Diagnosis) -> None:
    advice = found.advice
    if found.pooler == "transaction":
        no_tx = []
        try:
            no_tx = [m for m in runner.migrations() if m.kind == "sql" and not m.transactional]
        except Exception:  # a broken directory is `status`'s business, not doctor's
            pass
        if not runner.dedicated_url:
            advice.append(
                "a transaction-mode pooler is in front: migrations work through it (each one is a "
                "transaction), but no-transaction migrations then run without lock_timeout and "
                "statement_timeout, since session settings would leak to other clients. Set "
                "SAFE_MIGRATE_DATABASE_URI to a direct or session-mode port"
                + (f" ({len(no_tx)} no-transaction migration(s) exist)" if no_tx else "")
            )
    elif found.pooler == "session":
        advice.append("a session-mode pooler is in front: fine for migrations")
    host = runner.db.url.host or ""
    local = host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")
    if found.tls_client is False and not local:
        advice.append(
            f"the connection to {host} is not encrypted: add ?sslmode=require (or verify-full)"
        )
    statement_timeout = found.settings.get("statement_timeout", "0")
    if statement_timeout not in ("0", "0ms"):
        advice.append(
            f"the server's statement_timeout is {statement_timeout}: a long migration "
            "(an index build) is cut at that point; set SAFE_MIGRATE_STATEMENT_TIMEOUT or "
            "'-- safe-migrate: statement-timeout=0' on that migration"
        )
    if found.latency_ms is not None and found.latency_ms > 50:
        advice.append(
            f"round trips take {found.latency_ms} ms: run migrations from the same region"
        )
    if not advice:
        advice.append("nothing to change")


def live_check(
    runner: Runner,
    *,
    delay: float = 0.3,
    seed_max_rows: int = 10,
    retry_functions: t.Sequence[str] = ("execute_with_retry",),
) -> dict[str, t.Any]:
    """The seed's three critical points, for real on this database and its migrations.

    1. a new connection each retry, with the pool disposed: the backend is
       killed mid-statement; the error must be classified as a lost
       connection, the engine's pool disposed (counted by its
       ``engine_disposed`` event, and the pool object replaced), and the
       retry must report a different backend pid;
    2. no outer transaction: each attempt runs in its own transaction (a new
       transaction id after the kill), and ``verify`` finds no migration code
       that wraps the executor in ``engine.begin()`` or ``db.session``;
    3. DDL only, or safe DML: ``verify``'s verdict on the migrations.

    Writes nothing: the statement is ``SELECT pg_sleep(...)``.
    """
    import sqlalchemy as sa

    from .classify import Transience
    from .engines import connect_args
    from .executor import run_with_retry

    if not runner.db.is_postgres:
        return {"ok": False, "skipped": "--live needs PostgreSQL"}
    url = runner.db.url
    engine = sa.create_engine(
        url, pool_size=2, connect_args=connect_args(url, runner.db.connect_timeout)
    )
    disposals: list[int] = []
    sa.event.listen(engine, "engine_disposed", lambda _engine: disposals.append(1))
    killer_errors: list[str] = []
    pools: list[t.Any] = []  # the pool objects themselves, kept alive: compared by identity
    pids: list[int] = []
    transactions: list[str] = []
    seen_disposals: list[int] = []  # disposals counted when each attempt started

    def kill_later(pid: int) -> None:
        time.sleep(delay)
        try:
            conn = runner.db.raw_connect()
            try:
                _one(conn, f"SELECT pg_terminate_backend({int(pid)})")
            finally:
                conn.close()
        except Exception as exc:  # reported in the verdict
            killer_errors.append(str(exc))

    def work(conn: sa.Connection) -> int:
        pid, xid = conn.exec_driver_sql(
            "SELECT pg_backend_pid(), CAST(txid_current() AS text)"
        ).one()
        pids.append(int(pid))
        transactions.append(str(xid))
        pools.append(engine.pool)
        seen_disposals.append(len(disposals))
        if len(pids) == 1:
            threading.Thread(target=kill_later, args=(pid,), daemon=True).start()
            conn.exec_driver_sql("SELECT pg_sleep(5)")
        return int(pid)

    try:
        _, attempts = run_with_retry(
            engine,
            work,
            policy=runner.policy.replace(max_attempts=3),
            label="doctor --live",
        )
    finally:
        engine.dispose()
    first = attempts[0] if attempts else None
    checks = {
        "classified_as_disconnect": bool(
            first is not None and first.transience is Transience.DISCONNECT
        ),
        "pool_disposed": len(pools) >= 2
        and seen_disposals[-1] > seen_disposals[0]
        and pools[0] is not pools[-1],
        "new_backend_pid": len(pids) >= 2 and pids[0] != pids[-1],
        "new_transaction": len(transactions) >= 2 and transactions[0] != transactions[-1],
    }
    static = _verify_points(runner.directory, seed_max_rows, retry_functions)
    one = [
        f"the kill was seen as a lost connection ({first.reason if first else 'no error'})"
        if checks["classified_as_disconnect"]
        else f"the kill was NOT classified as a lost connection ({first.reason if first else '-'})",
        f"the pool was disposed ({seen_disposals[-1]} engine_disposed event(s)) and "
        "replaced by a new pool object before the retry"
        if checks["pool_disposed"]
        else "the pool was NOT disposed before the retry",
        f"the retry ran on backend {pids[-1]}, not {pids[0]}"
        if checks["new_backend_pid"]
        else f"the retry did NOT get a new backend (pids {pids})",
    ]
    two = [
        f"attempt 1 ran in transaction {transactions[0]} (lost with the killed connection), "
        f"attempt {len(transactions)} in its own new transaction {transactions[-1]}"
        if checks["new_transaction"]
        else f"the attempts did NOT run in separate transactions ({transactions})",
        *static["2"][1],
    ]
    points = [
        {
            "id": 1,
            "title": "a new connection each retry, after disposing the pool",
            "ok": checks["classified_as_disconnect"]
            and checks["pool_disposed"]
            and checks["new_backend_pid"],
            "evidence": one,
        },
        {
            "id": 2,
            "title": "no outer transaction around the executor: each attempt is its own",
            "ok": checks["new_transaction"] and static["2"][0],
            "evidence": two,
        },
        {
            "id": 3,
            "title": "DDL only, or safe DML (verify on the migrations)",
            "ok": static["3"][0],
            "evidence": static["3"][1],
        },
    ]
    return {
        "ok": all(point["ok"] for point in points),
        "points": points,
        "checks": checks,
        "attempts": len(attempts),
        "backend_pids": pids,
        "transaction_ids": transactions,
        "disposals_before_retry": seen_disposals[-1] if seen_disposals else 0,
        "first_error": first.reason if first is not None else None,
        "killer_errors": killer_errors,
    }


def _verify_points(
    directory: str, seed_max_rows: int, retry_functions: t.Sequence[str]
) -> dict[str, tuple[bool, list[str]]]:
    """Points 2 and 3 from ``verify`` on the migrations directory: (ok, evidence lines)."""
    import os

    from .errors import BadInputError
    from .verify import verify_paths

    where = os.path.relpath(directory) if os.path.isabs(directory) else directory
    try:
        report = verify_paths(
            [directory], seed_max_rows=seed_max_rows, retry_functions=retry_functions
        )
    except BadInputError as exc:  # a missing or unreadable directory, a .py that does not parse
        why = [f"verify could not read the migrations: {exc}"]
        return {"2": (False, why), "3": (False, why)}
    found = {}
    for point in report.points:
        if point.id in (2, 3):
            lines = [f"verify {where}: {point.summary}", *point.evidence[:5]]
            found[str(point.id)] = (point.ok, lines)
    return found
