"""The reliability suite, the part ``tests/test_runner_faults.py`` does not already cover.

Together with the ``reliability``-marked tests there (SIGKILL then rerun, a dozen processes
auto-migrating through PgBouncer) and its fault tests (every COMMIT reply lost, PgBouncer
``KILL``/``RECONNECT``, ``pg_terminate_backend``, lock-timeout retries), this is the runner's
promise held in CI:

* the drill on the example app's history: every migration ✅ at every fault point;
* 20 runs with random cuts (FIN and RST) through real PgBouncer in transaction mode with TLS, on
  a history with data whose foreign keys point at sequence-drawn keys;
* PgBouncer ``PAUSE``/``RESUME`` from its admin console mid-run;
* Postgres restarted (immediate stop, crash recovery) mid-run, on a private cluster this test
  starts and destroys itself.

Every test says what it injects and checks the end state against a clean run's fingerprint
(schema + data) and the ledger, not only the exit code.
"""

from __future__ import annotations

import faulthandler
import json
import re
import threading
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from flask_safe_migrate.faults import FaultProxy
from flask_safe_migrate.loader import discover
from flask_safe_migrate.runner import Event
from tests.helpers import EXAMPLE_MIGRATIONS
from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.infra.pgbouncer import PgBouncer
from tests.infra.postgres import APP_USER
from tests.infra.postgres import MissingBinary
from tests.infra.postgres import TlsCluster
from tests.test_runner_faults import Background
from tests.test_runner_faults import assert_exactly_once
from tests.test_runner_faults import backend_alive
from tests.test_runner_faults import by_version
from tests.test_runner_faults import clean_fingerprint
from tests.test_runner_faults import ledger_rows
from tests.test_runner_faults import slow_history
from tests.test_runner_faults import wait_for_backend
from tests.test_runner_faults import wait_until

pytestmark = pytest.mark.reliability

#: Random-cut runs through PgBouncer + TLS (the issue asks for at least 20).
RANDOM_RUNS = 20
RANDOM_RATE = 0.02
#: A random run where no cut landed is repeated with at most this many other seeds.
RESEEDS = 3


@pytest.fixture(autouse=True)
def _hang_guard() -> Iterator[None]:
    """A run that hangs (a paused pooler never resumed, a server never back) fails loudly."""
    faulthandler.dump_traceback_later(170, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# -- the drill on the example history ----------------------------------------------------------


def test_drill_reports_every_example_migration_retry_safe(pg_url: str) -> None:
    """Injects: ``flask safe-migrate drill`` on the example app's history: for every migration,
    the connection cut before and after each statement (reply lost), while its COMMIT is in
    flight and with the COMMIT's reply lost, each on a fresh copy of the state before it.

    Checks: exit 0 and ``ok``; every migration ``retry_safe``; every point fired (none vacuous)
    and every statement point was retried; the drill compared each end state with the clean
    run's fingerprint and ledger (a difference would have made it ❌); the fault points cover
    each statement of each migration twice plus two COMMIT points.
    """
    app, _ = make_app(pg_url, EXAMPLE_MIGRATIONS)
    result = app.test_cli_runner().invoke(args=["safe-migrate", "drill", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["failures"] == 0, document
    migrations = document["migrations"]
    assert [m["version"] for m in migrations] == [m.version for m in discover(EXAMPLE_MIGRATIONS)]
    for migration in migrations:
        assert migration["state"] == "retry_safe", migration
        assert migration["unreached"] == [], migration
        points = migration["points"]
        statement_points = [p for p in points if "statement" in p["point"]]
        assert len(points) == len(statement_points) + 2, points
        assert statement_points and all(p["attempts"] >= 2 for p in statement_points), points
    sql = [m for m in discover(EXAMPLE_MIGRATIONS) if m.kind == "sql"]
    expected = sum(2 * len(m.statements()) + 2 for m in sql)
    drilled_sql = sum(m["fault_points"] for m in migrations if m["name"] in {s.name for s in sql})
    assert drilled_sql == expected


# -- random cuts through PgBouncer + TLS ---------------------------------------------------------


#: Data whose foreign keys point at identity/serial keys: a rolled-back attempt consumes sequence
#: values, so a retried run's keys differ from a clean run's; the fingerprint compares them
#: through the rows they join. A no-transaction index and a Python migration with parameters too.
DATA_HISTORY = {
    "0001_customers.sql": (
        "CREATE TABLE customers (\n"
        "    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
        "    email text NOT NULL UNIQUE,\n"
        "    created_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        "INSERT INTO customers (email) SELECT 'c' || g || '@example.com'"
        " FROM generate_series(1, 40) AS g;\n"
    ),
    "0002_orders.sql": (
        "CREATE TABLE orders (\n"
        "    id bigserial PRIMARY KEY,\n"
        "    customer_id integer NOT NULL REFERENCES customers (id),\n"
        "    amount integer NOT NULL\n"
        ");\n"
        "INSERT INTO orders (customer_id, amount)"
        " SELECT c.id, g FROM customers c, generate_series(1, 3) AS g;\n"
    ),
    "0003_order_status.sql": (
        "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'open';\n"
        "UPDATE orders SET status = 'paid' WHERE amount = 2;\n"
        "DELETE FROM orders WHERE amount = 3 AND customer_id IN"
        " (SELECT id FROM customers WHERE email LIKE 'c1%');\n"
    ),
    "0004_orders_status_index.sql": (
        "-- safe-migrate: no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_idx ON orders (status);\n"
    ),
    "0005_vip_orders.py": (
        "def upgrade(m):\n"
        '    m.execute("INSERT INTO orders (customer_id, amount, status)"\n'
        '              " SELECT id, :amount, :status FROM customers WHERE email LIKE :pattern",\n'
        '              {"amount": 100, "status": "vip", "pattern": "c2%"})\n'
    ),
}


def test_twenty_random_cut_runs_through_pgbouncer_with_tls(
    tls_cluster: TlsCluster, pgbouncer: PgBouncer, tmp_path: Path
) -> None:
    """Injects: ``RANDOM_RUNS`` (20) runs of ``DATA_HISTORY``, each on a fresh database, through
    a blind fault proxy in front of PgBouncer (transaction mode), TLS end to end from the client
    to PgBouncer (and PgBouncer to Postgres); random cuts at ``RANDOM_RATE`` per relayed chunk in
    both directions, FIN on even runs and RST on odd ones, seeded per run (replayable). A run
    where no cut landed proves nothing: it is done again with another seed (up to
    ``RESEEDS`` times), and only a run that was cut counts.

    Checks, per run: at least one cut landed, every cut of the run was of the run's kind (FIN or
    RST), the upgrade succeeds, each version once in the ledger, fingerprint (schema, data,
    foreign keys through the rows they join) equals a clean run's; so 10 runs were cut with FIN
    and 10 with RST. In total: the runner really retried.
    """
    directory = write_migrations(tmp_path / "migrations", DATA_HISTORY)
    reference = clean_fingerprint(tls_cluster, directory)
    versions = [m.version for m in discover(directory)]
    retries = 0
    with FaultProxy.for_url(pgbouncer.app_url("postgres"), protocol=False) as proxy:
        for run in range(RANDOM_RUNS):
            how: t.Literal["fin", "rst"] = "fin" if run % 2 == 0 else "rst"
            cuts: list[str] = []
            for attempt in range(1 + RESEEDS):
                seed = 1000 + run + attempt * RANDOM_RUNS  # seeds no other run uses
                name = tls_cluster.server.create_database(owner=APP_USER)
                try:
                    app, ext = make_app(
                        proxy.url(pgbouncer.app_url(name)),
                        directory,
                        SAFE_MIGRATE_MAX_ATTEMPTS=30,
                        SAFE_MIGRATE_DEADLINE=90,
                        SAFE_MIGRATE_CONNECT_TIMEOUT=5,
                    )
                    first = len(proxy.events)
                    events: list[Event] = []
                    proxy.set_random(RANDOM_RATE, seed=seed, how=how)
                    try:
                        outcomes = ext.upgrade(app, on_event=events.append)
                    finally:
                        proxy.set_random(0.0)
                    cuts = [e.detail for e in proxy.events[first:] if e.kind == "cut"]
                    retries += sum(1 for e in events if e.kind == "retry")
                    where = f"run {run} ({how}, seed {seed})"
                    assert [o.version for o in outcomes] == versions, where
                    # A lease release whose retries were all cut is left to expire: not checked.
                    assert_exactly_once(
                        tls_cluster.app_url(name), directory, reference, lease_released=False
                    )
                finally:
                    tls_cluster.server.drop_database(name)
                if cuts:
                    break
            assert cuts, f"run {run} ({how}): no cut landed with {1 + RESEEDS} seeds"
            assert all(f"how={how}" in cut for cut in cuts), cuts
    assert retries >= 1, "connections were cut but no migration was ever retried"


# -- PgBouncer PAUSE / RESUME ------------------------------------------------------------------


def _waiting_clients(pgbouncer: PgBouncer, database: str) -> int:
    """``cl_waiting`` of ``database`` in ``SHOW POOLS`` (clients queued for a server)."""
    return sum(
        int(t.cast(int, row[3])) for row in pgbouncer.admin("SHOW POOLS") if row[0] == database
    )


def test_pgbouncer_pause_and_resume_mid_run(
    tls_cluster: TlsCluster, pgbouncer: PgBouncer, tls_db: str, pgb_url: str, tmp_path: Path
) -> None:
    """Injects: PgBouncer admin ``PAUSE <db>`` while 0002 sits in ``pg_sleep(2)`` (PAUSE waits
    for that transaction to finish, then holds every new one), ``RESUME <db>`` 1.5 s later; run
    through PgBouncer (transaction mode, TLS).

    Checks: the pause really held the runner (PgBouncer showed it waiting for a server, and the
    run took the pause's length longer), the run then completed, each version once in the
    ledger, the data once, fingerprint equals a clean run's, and the lease was released.
    """
    directory = write_migrations(tmp_path / "migrations", slow_history(2))
    reference = clean_fingerprint(tls_cluster, directory)
    app, ext = make_app(pgb_url, directory, SAFE_MIGRATE_MAX_ATTEMPTS=20)
    stop = threading.Event()
    seen_waiting: list[int] = []
    paused_for: list[float] = []

    def pause_then_resume() -> None:
        if wait_for_backend(tls_cluster, tls_db, stop=stop) is None:
            return
        pgbouncer.admin(f"PAUSE {tls_db}")  # returns once 0002's transaction has ended
        paused = time.monotonic()
        try:
            wait_until(lambda: _waiting_clients(pgbouncer, tls_db) > 0, timeout=1.5)
            seen_waiting.append(_waiting_clients(pgbouncer, tls_db))
            time.sleep(max(0.0, 1.5 - (time.monotonic() - paused)))
        finally:
            pgbouncer.admin(f"RESUME {tls_db}")
            paused_for.append(time.monotonic() - paused)

    started = time.monotonic()
    disruptor = Background(pause_then_resume)
    try:
        outcomes = ext.upgrade(app)
    finally:
        stop.set()
        disruptor.join()
    elapsed = time.monotonic() - started
    assert paused_for, "PAUSE was never sent"
    assert seen_waiting and seen_waiting[0] > 0, "no client waited while PgBouncer was paused"
    assert elapsed >= 2 + 1.4, f"the run took {elapsed:.1f}s: the pause did not hold it"
    assert [o.version for o in outcomes] == ["0001", "0002", "0003"]
    url = tls_cluster.app_url(tls_db)
    assert scalar(url, "SELECT count(*) FROM items WHERE name = 'second'") == 1
    assert_exactly_once(url, directory, reference)


# -- Postgres restarted mid-run --------------------------------------------------------------------


@pytest.fixture
def private_cluster() -> Iterator[TlsCluster]:
    """A TLS cluster of this test's own: restarting the shared one would break other tests."""
    from tests.conftest import missing

    try:
        cluster = TlsCluster()
    except MissingBinary as exc:
        missing(str(exc))
    try:
        cluster.start()
        # The shared clusters run with synchronous_commit = off (fast): an immediate stop then
        # loses commits already acknowledged, e.g. 0001 and its ledger row, which no migration
        # tool can survive. A restart test needs a durable server, like production's.
        engine = sa.create_engine(
            cluster.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("ALTER SYSTEM SET synchronous_commit = on")
                conn.exec_driver_sql("SELECT pg_reload_conf()")
        finally:
            engine.dispose()
        assert scalar(cluster.admin_url, "SHOW synchronous_commit") == "on"
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_restarted_mid_run_on_a_private_cluster(
    private_cluster: TlsCluster, tmp_path: Path
) -> None:
    """Injects: an immediate-mode stop of the whole Postgres server (no shutdown checkpoint:
    crash recovery on start; ``synchronous_commit = on``, as in production), down for 1 s, then
    started again, while 0002 sits in ``pg_sleep(2)`` after its first INSERT (0001 committed);
    over TLS, on a cluster this test started itself.

    Checks: 0002 was retried through the outage (connection lost, refused, "starting up") and
    applied once: its INSERT there once, the sleeping backend gone, each version once in the
    ledger, fingerprint equals a clean run's on the same cluster, the lease released.
    """
    cluster = private_cluster
    directory = write_migrations(tmp_path / "migrations", slow_history(2))
    reference = clean_fingerprint(cluster, directory)
    name = cluster.server.create_database(owner=APP_USER)
    url = cluster.app_url(name)
    app, ext = make_app(
        url,
        directory,
        SAFE_MIGRATE_MAX_ATTEMPTS=60,
        SAFE_MIGRATE_DEADLINE=90,
        SAFE_MIGRATE_CONNECT_TIMEOUT=3,
    )
    restarted: list[int] = []
    stop = threading.Event()

    def restart_once() -> None:
        pid = wait_for_backend(cluster, name, stop=stop)
        if pid is None:
            return
        cluster.restart(down_for=1.0)
        restarted.append(pid)

    events: list[Event] = []
    disruptor = Background(restart_once)
    try:
        outcomes = ext.upgrade(app, on_event=events.append)
    finally:
        stop.set()
        disruptor.join(timeout=90)
    assert len(restarted) == 1, "the server was never restarted mid-run"
    slow = by_version(outcomes)["0002"]
    assert slow.state == "applied" and slow.attempts >= 2, slow
    assert any(
        re.search(r"closed|terminat|refused|starting up|shut", reason) for reason in slow.retries
    ), slow.retries
    # The ledger counts attempts that reached the server (refused connects are not among them).
    assert 2 <= ledger_rows(url)["0002"][0] <= slow.attempts
    assert scalar(url, "SELECT count(*) FROM items WHERE name = 'second'") == 1
    assert not backend_alive(cluster, restarted[0])
    assert_exactly_once(url, directory, reference)
