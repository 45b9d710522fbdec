"""The runner's contract on a real Postgres: apply, status, drift, order, failures, guards."""

from __future__ import annotations

import threading
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from flask_safe_migrate import ChecksumDriftError
from flask_safe_migrate import MigrationError
from flask_safe_migrate import MigrationSourceError
from flask_safe_migrate import OutOfOrderError
from flask_safe_migrate.faults import FaultProxy
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.infra.postgres import DRIVERS
from tests.infra.postgres import with_driver

BASIC = {
    "0001_create_leads.sql": "-- leads\nCREATE TABLE leads (id serial PRIMARY KEY, email text NOT NULL);\n"
    "INSERT INTO leads (email) VALUES ('a@example.com'), ('b@example.com');\n"
    "DELETE FROM leads WHERE email LIKE '%@spam.example';\n",
    "0002_add_score.py": "def upgrade(m):\n"
    "    m.execute('ALTER TABLE leads ADD COLUMN score int')\n"
    "    m.execute('UPDATE leads SET score = :s', {'s': 7})\n",
    "0003_index_email.sql": "-- safe-migrate: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_email_idx ON leads (email);\n",
}


def test_run_applies_everything_once_and_records_the_ledger(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    outcomes = ext.upgrade(app)
    assert [(o.version, o.state, o.attempts) for o in outcomes] == [
        ("0001", "applied", 1),
        ("0002", "applied", 1),
        ("0003", "applied", 1),
    ]
    assert ledger(pg_url) == [("0001", 1), ("0002", 1), ("0003", 1)]
    assert scalar(pg_url, "SELECT sum(score) FROM leads") == 14
    assert scalar(
        pg_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'leads_email_idx'::regclass"
    )
    assert ext.upgrade(app) == []
    assert ext.pending(app) == []
    row = scalar(pg_url, "SELECT applied_by FROM safe_migrate_ledger WHERE version = '0001'")
    assert ":" in row  # host:pid


def test_nothing_pending_costs_one_statement_on_the_wire(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    ext.upgrade(app)
    with FaultProxy.for_url(pg_url) as proxy:
        app2, ext2 = make_app(proxy.url(pg_url), tmp_path / "m")
        assert ext2.upgrade(app2) == []
        queries = [e.detail for e in proxy.events if e.kind == "query"]
    assert len(queries) == 1, queries
    assert queries[0].startswith("SELECT version, name, checksum")


def test_status_reports_applied_pending_drift_and_missing(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", BASIC)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app, to="0002")
    status = ext.status(app)
    assert [(i.version, i.state) for i in status.items] == [
        ("0001", "applied"),
        ("0002", "applied"),
        ("0003", "pending"),
    ]
    (tmp_path / "m" / "0002_add_score.py").write_text(BASIC["0002_add_score.py"] + "# edited\n")
    (tmp_path / "m" / "0001_create_leads.sql").unlink()
    states = {i.version: i.state for i in ext.status(app).items}
    assert states == {"0001": "missing", "0002": "drift", "0003": "pending"}
    assert not ext.status(app).clean


def test_two_runners_in_one_process_never_hold_the_lease_together(pg_url, tmp_path) -> None:
    from flask_safe_migrate.executor import RetryPolicy
    from flask_safe_migrate.lease import Lease
    from flask_safe_migrate.lease import LeaseTimeout

    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    ext.upgrade(app, to="0001")  # creates the ledger and lease tables
    first, second = ext.runner(app), ext.runner(app)
    assert first.applied_by == second.applied_by  # host:pid, as the ledger records it
    assert first.holder != second.holder
    policy = RetryPolicy(deadline=1.0)
    held = Lease(first.db, first.holder, policy=policy)
    held.acquire()
    try:
        with pytest.raises(LeaseTimeout, match=first.holder):
            Lease(second.db, second.holder, policy=policy).acquire()
    finally:
        held.release()
        first.db.dispose()
        second.db.dispose()


def test_checksum_drift_refuses_to_apply_anything(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    ext.upgrade(app, to="0001")
    (tmp_path / "m" / "0001_create_leads.sql").write_text(
        BASIC["0001_create_leads.sql"] + "-- tweak\n"
    )
    with pytest.raises(ChecksumDriftError) as info:
        ext.upgrade(app)
    assert "0001_create_leads.sql" in str(info.value) and "repair 0001" in str(info.value)
    assert ledger(pg_url) == [("0001", 1)]


def test_checksum_ignores_bom_and_crlf(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    ext.upgrade(app)
    path = tmp_path / "m" / "0001_create_leads.sql"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert ext.status(app).clean


def test_late_merged_version_needs_out_of_order(pg_url, tmp_path) -> None:
    files = {k: v for k, v in BASIC.items() if not k.startswith("0002")}
    directory = write_migrations(tmp_path / "m", files)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app)
    write_migrations(directory, {"0002_add_score.py": BASIC["0002_add_score.py"]})
    with pytest.raises(OutOfOrderError, match="--out-of-order"):
        ext.upgrade(app)
    outcomes = ext.upgrade(app, out_of_order=True)
    assert [o.version for o in outcomes] == ["0002"]


def test_to_is_inclusive_and_must_exist(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    assert [o.version for o in ext.upgrade(app, to="2")] == ["0001", "0002"]
    from flask_safe_migrate import BadInputError

    with pytest.raises(BadInputError, match="no migration has version 0042"):
        ext.upgrade(app, to="0042")


def test_a_failing_statement_is_named_rolled_back_and_stops_the_run(pg_url, tmp_path) -> None:
    files = dict(BASIC)
    files["0002_add_score.py"] = (
        "def upgrade(m):\n    m.execute('ALTER TABLE leads ADD COLUMN score int')\n"
    )
    files["0003_broken.sql"] = "CREATE TABLE half (id int);\nINSERT INTO nope VALUES (1);\n"
    files.pop("0003_index_email.sql")
    files["0004_never.sql"] = "CREATE TABLE never (id int);\n"
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    with pytest.raises(MigrationError) as info:
        ext.upgrade(app)
    message = str(info.value)
    assert "0003_broken.sql:2" in message and "statement 2" in message
    assert 'relation "nope" does not exist' in message and "rolled back" in message
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert scalar(pg_url, "SELECT to_regclass('half')") is None  # the whole migration rolled back
    assert scalar(pg_url, "SELECT to_regclass('never')") is None


@pytest.mark.parametrize("header", ["", "transaction = False\n"], ids=["transactional", "no-tx"])
def test_a_failing_python_migration_names_its_statement_and_line(pg_url, tmp_path, header) -> None:
    files = {
        "0001_py.py": header + "\n"
        "def upgrade(m):\n"
        "    m.execute('CREATE TABLE IF NOT EXISTS a (x int)')\n"
        "    assert m.scalar('SELECT count(*) FROM a') == 0\n"
        "    m.execute(\n"
        "        'INSERT INTO nope VALUES (:v)',\n"
        "        {'v': 1},\n"
        "    )\n",
    }
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    with pytest.raises(MigrationError) as info:
        ext.upgrade(app)
    message = str(info.value)
    line = 6 if header else 5  # the line of the failing m.execute call
    assert f"0001_py.py:{line}: migration 0001_py failed" in message, message
    assert "at m.execute('INSERT INTO nope VALUES (:v)')" in message, message
    assert 'relation "nope" does not exist' in message
    assert info.value.statement == "INSERT INTO nope VALUES (:v)"
    assert ledger(pg_url) == []


def test_bad_files_fail_before_the_database_is_touched(pg_url, tmp_path) -> None:
    files = dict(BASIC)
    files["0004_bad.sql"] = "CREATE TABLE ok (id int);\nCREAT TABLE typo (id int);\n"
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    with pytest.raises(MigrationSourceError, match="0004_bad.sql"):
        ext.upgrade(app)
    assert scalar(pg_url, "SELECT to_regclass('leads')") is None
    (tmp_path / "m" / "0004_bad.sql").unlink()
    (tmp_path / "m" / "4-bad.sql").write_text("select 1;")
    with pytest.raises(MigrationSourceError, match="4-bad.sql"):
        ext.upgrade(app)


def test_a_bad_file_fails_before_any_connection(pg_url, tmp_path) -> None:
    """Every file problem is an error before anything connects: a bad name for every entry
    point, a file that cannot be read for run and status (pending reads only unapplied files,
    so it asks the ledger first)."""
    directory = write_migrations(tmp_path / "m", {**BASIC, "4-bad.sql": "select 1;"})
    with FaultProxy.for_url(pg_url) as proxy:
        app, ext = make_app(proxy.url(pg_url), directory)
        for call in (ext.upgrade, ext.status, ext.pending):
            with pytest.raises(MigrationSourceError, match="4-bad.sql"):
                call(app)
        (tmp_path / "m" / "4-bad.sql").unlink()
        (tmp_path / "m" / "0004_bad.sql").write_bytes(b"select 1; -- \xff\n")
        for call in (ext.upgrade, ext.status):
            with pytest.raises(MigrationSourceError, match=r"0004_bad\.sql:1: is not valid UTF-8"):
                call(app)
        assert [e for e in proxy.events if e.kind == "connect"] == []


def test_a_ledger_read_out_of_retries_keeps_the_driver_error_as_its_cause(tmp_path) -> None:
    from flask_safe_migrate.errors import RetriesExhausted
    from tests.infra.procs import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    app, ext = make_app(url, write_migrations(tmp_path / "m", BASIC), SAFE_MIGRATE_MAX_ATTEMPTS=2)
    for call in (ext.upgrade, ext.status, ext.pending):
        with pytest.raises(RetriesExhausted) as info:
            call(app)
        assert info.value.__cause__ is info.value.last_error is not None
        assert "Connection refused" in str(info.value.__cause__)


def test_non_idempotent_no_transaction_statement_is_refused(pg_url, tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a int);\n",
        "0002_idx.sql": "-- safe-migrate: no-transaction\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
    }
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    with pytest.raises(MigrationSourceError, match="IF NOT EXISTS"):
        ext.upgrade(app)
    assert scalar(pg_url, "SELECT to_regclass('t')") is None


def test_invalid_index_left_by_a_failed_concurrent_build_is_rebuilt(pg_url, tmp_path) -> None:
    engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1)")
        with pytest.raises(sa.exc.IntegrityError):
            conn.exec_driver_sql("CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a)")
        conn.exec_driver_sql("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
        assert (
            conn.exec_driver_sql(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_key'::regclass"
            ).scalar()
            is False
        )
    engine.dispose()
    files = {
        "0001_idx.sql": "-- safe-migrate: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_key ON t (a);\n"
    }
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    ext.upgrade(app)
    assert (
        scalar(pg_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_key'::regclass")
        is True
    )


def test_db_session_inside_a_migration_is_refused_but_requests_still_work(pg_url, tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a int);\n",
        "0002_uses_session.py": "from flask import current_app\n\n"
        "def upgrade(m):\n"
        "    db = current_app.extensions['sqlalchemy']\n"
        "    db.session.execute(__import__('sqlalchemy').text('INSERT INTO t VALUES (1)'))\n",
    }
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    db: SQLAlchemy = app.extensions["sqlalchemy"]
    with pytest.raises(MigrationError) as info:
        with app.app_context():
            ext.upgrade(app)
    assert "0002_uses_session" in str(info.value) and "use m.execute" in str(info.value)
    assert ledger(pg_url) == [("0001", 1)]
    # Another thread (a request) uses the session while a migration runs: unaffected.
    results: list[int] = []

    def request() -> None:
        with app.app_context():
            results.append(db.session.execute(sa.text("SELECT 42")).scalar_one())
            db.session.remove()

    from flask_safe_migrate.context import migrating

    with migrating("0009_demo"):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    assert results == [42]


def test_bind_migrations_come_from_their_own_directory(pg_url, pg_server, tmp_path) -> None:
    other = pg_server.create_database()
    try:
        directory = write_migrations(
            tmp_path / "m", {"0001_main.sql": "CREATE TABLE main_t (a int);\n"}
        )
        write_migrations(
            tmp_path / "m" / "audit", {"0001_audit.sql": "CREATE TABLE audit_t (a int);\n"}
        )
        app, ext = make_app(pg_url, directory, SQLALCHEMY_BINDS={"audit": pg_server.url_for(other)})
        assert [o.version for o in ext.upgrade(app, bind="audit")] == ["0001"]
        assert scalar(pg_server.url_for(other), "SELECT to_regclass('audit_t') IS NOT NULL")
        assert scalar(pg_url, "SELECT to_regclass('audit_t')") is None
        assert [m.name for m in ext.pending(app)] == ["main"]
    finally:
        pg_server.drop_database(other)


def test_sqlite_runs_the_same_contract_with_transactional_ddl(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/app.db"
    files = {
        "0001_users.sql": "CREATE TABLE users (id integer PRIMARY KEY, email text);\nINSERT INTO users (email) VALUES ('a');\n",
        "0002_broken.sql": "CREATE TABLE half (id integer);\nINSERT INTO missing VALUES (1);\n",
    }
    app, ext = make_app(url, write_migrations(tmp_path / "m", files))
    with pytest.raises(MigrationError, match="no such table: missing"):
        ext.upgrade(app)
    assert (
        scalar(url, "SELECT count(*) FROM sqlite_master WHERE name = 'half'") == 0
    )  # DDL rolled back
    assert ledger(url) == [("0001", 1)]
    (tmp_path / "m" / "0002_broken.sql").write_text("CREATE TABLE half (id integer);\n")
    assert [o.version for o in ext.upgrade(app)] == ["0002"]
    assert ext.status(app).clean


def test_sqlite_no_transaction_migrations_keep_their_effects(tmp_path) -> None:
    """Each statement commits by itself: nothing is rolled back when its connection closes."""
    url = f"sqlite:///{tmp_path}/app.db"
    files = {
        "0001_t.sql": "CREATE TABLE t (a integer);\n",
        "0002_t_a.sql": "-- safe-migrate: no-transaction\nCREATE INDEX IF NOT EXISTS t_a ON t (a);\n",
        "0003_rows.py": "transaction = False\n\n"
        "def upgrade(m):\n"
        "    m.execute('INSERT INTO t VALUES (:a)', {'a': 5})\n"
        "    m.execute('INSERT INTO t VALUES (6)')\n"
        "    assert m.scalar('SELECT count(*) FROM t') == 2\n",
    }
    app, ext = make_app(url, write_migrations(tmp_path / "m", files))
    assert [(o.version, o.state) for o in ext.upgrade(app)] == [
        ("0001", "applied"),
        ("0002", "applied"),
        ("0003", "applied"),
    ]
    # Read back on connections of their own, after the migration engine is gone.
    assert (
        scalar(url, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 't_a'") == 1
    )
    assert scalar(url, "SELECT group_concat(a) FROM (SELECT a FROM t ORDER BY a)") == "5,6"
    assert ledger(url) == [("0001", 1), ("0002", 1), ("0003", 1)]
    assert ext.status(app).clean


NO_TX_PROBE = {
    "0001_probe.py": "transaction = False\n\n"
    "def upgrade(m):\n"
    "    m.execute('CREATE TABLE IF NOT EXISTS seen (v text)')\n"
    "    m.execute('INSERT INTO seen VALUES (:v)', {'v': m.scalar('SHOW lock_timeout')})\n",
}


def test_no_transaction_statements_get_timeouts_on_a_direct_connection(pg_url, tmp_path) -> None:
    events = []
    app, ext = make_app(
        pg_url, write_migrations(tmp_path / "m", NO_TX_PROBE), SAFE_MIGRATE_LOCK_TIMEOUT="1500ms"
    )
    ext.upgrade(app, on_event=events.append)
    assert scalar(pg_url, "SELECT v FROM seen") == "1500ms"
    assert not [e for e in events if e.kind == "warning"]


def test_no_transaction_through_a_pooler_warns_and_sets_nothing(pgb_url, tmp_path) -> None:
    events = []
    app, ext = make_app(
        pgb_url, write_migrations(tmp_path / "m", NO_TX_PROBE), SAFE_MIGRATE_LOCK_TIMEOUT="1500ms"
    )
    ext.upgrade(app, on_event=events.append)
    warnings = [e.detail for e in events if e.kind == "warning"]
    assert len(warnings) == 1 and "SAFE_MIGRATE_DATABASE_URI" in warnings[0]
    # Nothing leaked into the pooler's shared server connections.
    assert scalar(pgb_url, "SHOW lock_timeout") == "0"
    assert scalar(pgb_url, "SELECT v FROM seen") == "0"


def _pid_probe(version: str) -> str:
    return (
        "INSERT INTO probe VALUES"
        f" ('{version}', pg_backend_pid(), current_setting('search_path'));\n"
    )


CARRY_OVER = {
    "0001_probe.sql": "CREATE TABLE probe (version text, pid int, search_path text);\n"
    + _pid_probe("0001"),
    "0002_plain.sql": _pid_probe("0002"),
    "0003_sets_search_path.sql": "SET search_path TO pg_catalog, public;\n" + _pid_probe("0003"),
    "0004_makes_temp.sql": _pid_probe("0004") + "CREATE TEMP TABLE scratch (a int);\n",
    "0005_makes_temp_too.sql": "CREATE TEMP TABLE scratch (a int);\n" + _pid_probe("0005"),
    "0006_python.py": "def upgrade(m):\n"
    "    m.execute(\"INSERT INTO probe VALUES ('0006', pg_backend_pid(),"
    " current_setting('search_path'))\")\n",
    "0007_plain.sql": "SET LOCAL search_path TO public;\n" + _pid_probe("0007"),
    "0008_plain.sql": _pid_probe("0008"),
}


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_connection_is_carried_to_the_next_migration_only_when_its_session_is_clean(
    pg_url, tmp_path, driver
) -> None:
    """Consecutive migrations share a connection while each leaves nothing in the session.

    After a session-level SET, a temporary table or a Python migration, the
    next migration starts on a new backend that has none of it (the second
    CREATE TEMP TABLE would fail on the same session).
    """
    app, ext = make_app(with_driver(pg_url, driver), write_migrations(tmp_path / "m", CARRY_OVER))
    assert [o.state for o in ext.upgrade(app)] == ["applied"] * len(CARRY_OVER)
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = {v: (pid, path) for v, pid, path in conn.exec_driver_sql("SELECT * FROM probe")}
    engine.dispose()
    pid = {version: rows[version][0] for version in rows}
    assert pid["0001"] == pid["0002"] == pid["0003"], "clean migrations share a connection"
    assert pid["0004"] != pid["0003"], "a session-level SET ends the carry-over"
    assert rows["0004"][1] == '"$user", public', "the SET did not leak into the next migration"
    assert pid["0005"] != pid["0004"], "a temporary table ends the carry-over"
    assert pid["0006"] != pid["0005"]
    assert pid["0007"] != pid["0006"], "a Python migration ends the carry-over"
    assert pid["0008"] == pid["0007"], "SET LOCAL ends with its transaction"
    assert rows["0008"][1] == '"$user", public'


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_ledger_duration_covers_the_last_statement(pg_url, tmp_path, driver) -> None:
    """The ledger row's duration includes the last statement (it is written after it)."""
    files = {"0001_slow.sql": "CREATE TABLE t (a int);\nSELECT pg_sleep(0.3);\n"}
    app, ext = make_app(with_driver(pg_url, driver), write_migrations(tmp_path / "m", files))
    (outcome,) = ext.upgrade(app)
    recorded = scalar(pg_url, "SELECT duration_ms FROM safe_migrate_ledger WHERE version = '0001'")
    assert 300 <= recorded <= outcome.duration_ms + 50, (recorded, outcome)


@pytest.mark.parametrize(
    ("sql", "clean"),
    [
        ("CREATE TABLE a (x int); CREATE INDEX a_x ON a (x); INSERT INTO a VALUES (1)", True),
        ("ALTER TABLE a ADD COLUMN y int; UPDATE a SET y = 1; COMMENT ON TABLE a IS 't'", True),
        ("CREATE TABLE attempts (x int)", True),  # "temp" in a name is not a temporary table
        ("SET LOCAL lock_timeout = '1s'", True),
        ("SET search_path TO a", False),
        ("RESET ALL", False),
        ("SET ROLE owner", False),
        ("SELECT 1", False),
        ("DO $$ BEGIN PERFORM set_config('x.y', '1', false); END $$", False),
        ("CREATE TEMP TABLE t (x int) ON COMMIT DROP", False),
        ("CREATE TABLE pg_temp.t (x int)", False),
        ("SET LOCAL search_path TO pg_temp, public; CREATE TABLE t (x int)", False),
        ("LISTEN channel", False),
        ("PREPARE q AS SELECT 1", False),
    ],
)
def test_what_may_leave_state_in_the_session(sql, clean) -> None:
    from flask_safe_migrate.sqlsplit import split_sql
    from flask_safe_migrate.units import leaves_session_clean

    assert leaves_session_clean(split_sql(sql)) is clean
    assert leaves_session_clean(None) is False  # a Python migration may do anything


def test_a_lease_waiter_polls_on_one_connection_outside_any_transaction(pg_url, tmp_path) -> None:
    """A waiter keeps one connection for all its polls (no TLS handshake per poll), in autocommit."""
    from flask_safe_migrate.executor import RetryPolicy
    from flask_safe_migrate.lease import Lease
    from flask_safe_migrate.lease import LeaseTimeout

    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    ext.upgrade(app, to="0001")  # creates the ledger and lease tables
    holder = ext.runner(app)
    held = Lease(holder.db, holder.holder)
    held.acquire()
    states: list[str] = []
    try:
        with FaultProxy.for_url(pg_url) as proxy:
            waiter = ext.runner(app, bind=None)
            waiter.db.url = make_url(proxy.url(pg_url))
            lease = Lease(waiter.db, waiter.holder, policy=RetryPolicy(deadline=2.5))
            done = threading.Event()

            def polled() -> bool:
                return any(e.kind == "query" and "_lease" in e.detail for e in proxy.events)

            def sample() -> None:
                # From the first poll on (not during SQLAlchemy's first-connect set-up).
                while not done.is_set():
                    if not polled():
                        time.sleep(0.01)
                        continue
                    states.extend(
                        str(s)
                        for s in scalar_all(
                            pg_url,
                            "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid() AND application_name LIKE"
                            " 'flask-safe-migrate%'",
                        )
                    )
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                with pytest.raises(LeaseTimeout, match=holder.holder):
                    lease.acquire()
            finally:
                done.set()
                sampler.join()
            polls = [e for e in proxy.events if e.kind == "query" and "_lease" in e.detail]
            connects = [e for e in proxy.events if e.kind == "connect"]
            waiter.db.dispose()
    finally:
        held.release()
        holder.db.dispose()
    assert len(polls) >= 4, polls  # it waited, polling
    assert len({e.conn for e in polls}) == 1 and len(connects) == 1, (polls, connects)
    assert states and not [s for s in states if s.startswith("idle in transaction")], states


def scalar_all(url: str, sql: str) -> list[t.Any]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.exec_driver_sql(sql, execution_options={"no_parameters": True}).scalars()
            )
    finally:
        engine.dispose()


def test_pending_costs_one_query_and_reads_only_the_unapplied_files(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", BASIC)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app, to="0002")
    # An applied file that cannot even be decoded: pending() never opens it; status() does.
    (tmp_path / "m" / "0001_create_leads.sql").write_bytes(b"-- \xff\n")
    with FaultProxy.for_url(pg_url) as proxy:
        app2, ext2 = make_app(proxy.url(pg_url), directory)
        assert [m.version for m in ext2.pending(app2)] == ["0003"]
        queries = [e.detail for e in proxy.events if e.kind == "query"]
    assert queries == ['SELECT version FROM "safe_migrate_ledger"'], queries
    with pytest.raises(MigrationSourceError, match="not valid UTF-8"):
        ext.status(app)
    (tmp_path / "m" / "4-bad.sql").write_text("select 1;")
    with pytest.raises(MigrationSourceError, match="4-bad.sql"):
        ext.pending(app)


def test_pending_counts_a_squash_file_applied_through_the_versions_it_replaced(
    pg_url, tmp_path
) -> None:
    files = {
        "0001_a.sql": "CREATE TABLE a (x int);\n",
        "0002_b.sql": "CREATE TABLE b (x int);\n",
    }
    directory = write_migrations(tmp_path / "m", files)
    app, ext = make_app(pg_url, directory)
    assert [m.version for m in ext.pending(app)] == ["0001", "0002"]  # no ledger yet
    ext.upgrade(app)
    for name in files:
        (tmp_path / "m" / name).unlink()
    write_migrations(
        directory,
        {
            "0003_squashed.sql": "-- safe-migrate: squashes=0001,0002\n"
            "CREATE TABLE a (x int);\nCREATE TABLE b (x int);\n"
        },
    )
    assert ext.pending(app) == ext.status(app).pending == []
