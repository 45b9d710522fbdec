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
* ``--live`` kills its own backend mid-statement from a second connection
  and shows the executor's three critical points on this very path: the
  error is classified as a lost connection, the pool is disposed, and the
  retry runs on a new backend.
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
    """(pid the driver was told at connect time, whether the client leg uses TLS)."""
    info = getattr(conn, "info", None)
    told = getattr(info, "backend_pid", None)
    ssl = getattr(info, "ssl_in_use", None)
    return told, ssl


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


def live_check(runner: Runner, *, delay: float = 0.3) -> dict[str, t.Any]:
    """Kill our own backend mid-statement and show the executor recover (three points).

    1. the error is recognised as a lost connection (transient), not a failure;
    2. the pool is disposed, so no sibling of the dead connection is reused;
    3. the retry runs on a new connection: a different backend pid.

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
    killer_errors: list[str] = []
    pools: list[int] = []
    pids: list[int] = []

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
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        pids.append(pid)
        pools.append(id(engine.pool))
        if len(pids) == 1:
            threading.Thread(target=kill_later, args=(pid,), daemon=True).start()
            conn.exec_driver_sql("SELECT pg_sleep(5)")
        return pid

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
    points = {
        "classified_as_disconnect": bool(
            first is not None and first.transience is Transience.DISCONNECT
        ),
        "pool_disposed": len(pools) >= 2 and pools[0] != pools[-1],
        "new_backend_pid": len(pids) >= 2 and pids[0] != pids[-1],
    }
    return {
        "ok": all(points.values()),
        "points": points,
        "attempts": len(attempts),
        "backend_pids": pids,
        "first_error": first.reason if first is not None else None,
        "killer_errors": killer_errors,
    }
