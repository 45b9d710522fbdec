"""`plan`, `run --dry-run` and `wait`."""

from __future__ import annotations

import json
import threading
import time

from flask_safe_migrate.redact import MASK
from tests.helpers import make_app
from tests.helpers import write_migrations
from tests.workflow.conftest import invoke

FILES = {
    "0001_create_leads.sql": "-- safe-migrate: lock-timeout=5s\n"
    "CREATE TABLE leads (id serial PRIMARY KEY, email text);\n"
    "INSERT INTO leads (email) VALUES ('a@example.com');\n",
    "0002_index_email.sql": "-- safe-migrate: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_email_idx ON leads (email);\n",
    "0003_score.py": "statement_timeout = '30s'\n"
    "def upgrade(m):\n    m.execute('ALTER TABLE leads ADD COLUMN score int')\n",
}


def test_plan_lists_statements_modes_and_timeouts_and_touches_nothing(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", FILES))
    result = invoke(app, "plan")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "0001_create_leads (sql): one transaction; lock_timeout 5000ms" in out
    assert "2: CREATE TABLE leads (id serial PRIMARY KEY, email text)" in out
    assert "3: INSERT INTO leads (email) VALUES ('a@example.com')" in out
    assert (
        "0002_index_email (sql): no transaction (statement by statement); lock_timeout 2000ms"
        in out
    )
    assert "0003_score (py): one transaction" in out and "statement_timeout 30000ms" in out
    assert "verdict safe" in out
    assert "3 migrations would be applied." in out
    # nothing was written: not even the ledger table
    status = json.loads(invoke(app, "status", "--json").stdout)
    assert status["counts"]["pending"] == 3
    from tests.helpers import scalar

    assert scalar(pg_url, "SELECT to_regclass('safe_migrate_ledger') IS NULL") is True


def test_plan_to_and_json(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", FILES))
    document = json.loads(invoke(app, "plan", "--to", "0002", "--json").stdout)
    assert document["schema_version"] == 1 and document["pending"] == 2
    first, second = document["migrations"]
    assert first["state"] == "pending" and first["transaction"] == "per-migration"
    assert first["lock_timeout_ms"] == 5000 and first["verdict"] == "safe"
    assert [s["line"] for s in first["statements"]] == [2, 3]
    assert second["transaction"] == "none"


def test_plan_fails_where_run_would(pg_url, tmp_path) -> None:
    files = {
        "0001_bad.sql": "-- safe-migrate: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
    }
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "plan")
    assert result.exit_code == 2 and "is not idempotent" in result.stderr
    assert "Traceback" not in result.output


def test_run_dry_run_prints_the_plan_and_applies_nothing(any_url, tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a integer);\n",
        "0002_u.sql": "CREATE TABLE u (a integer);\n",
    }
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", files))
    dry = invoke(app, "run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (
        "0001_t (sql): one transaction" in dry.output
        and "2 migrations would be applied" in dry.output
    )
    assert json.loads(invoke(app, "run", "--dry-run", "--json").stdout)["dry_run"] is True
    assert json.loads(invoke(app, "status", "--json").stdout)["counts"]["pending"] == 2
    invoke(app, "run")
    assert "Nothing to apply" in invoke(app, "run", "--dry-run").output


def test_wait_returns_when_up_to_date_and_exits_1_on_timeout(pg_url, tmp_path) -> None:
    files = {"0001_t.sql": "CREATE TABLE t (a integer);\n"}
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", files))
    timed_out = invoke(app, "wait", "--timeout", "0.3", "--interval", "0.1")
    assert timed_out.exit_code == 1
    assert "still 1 pending after 0.3s (0001_t)" in timed_out.stderr
    as_json = invoke(app, "wait", "--timeout", "0", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["pending"] == 1

    def migrate_later() -> None:
        time.sleep(0.5)
        ext.upgrade(app)

    worker = threading.Thread(target=migrate_later)
    worker.start()
    started = time.monotonic()
    result = invoke(app, "wait", "--timeout", "20", "--interval", "0.1")
    worker.join()
    assert result.exit_code == 0, result.output
    assert "Up to date" in result.output and time.monotonic() - started >= 0.4


def test_plan_shows_the_verify_verdict_of_an_unsafe_migration(pg_url, tmp_path) -> None:
    files = dict(FILES)
    files["0004_lowercase.sql"] = "UPDATE leads SET email = lower(email);\n"
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    document = json.loads(invoke(app, "plan", "--json").stdout)
    verdicts = {m["version"]: m["verdict"] for m in document["migrations"]}
    assert verdicts["0001"] == "safe"
    assert verdicts["0004"] == "1 error(s)"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_respects_its_timeout_while_the_database_is_down(tmp_path) -> None:
    # A real closed port: every connection is refused. With the full retry
    # policy per check (10 attempts, up to 300 s) one check alone would outlive
    # --timeout and end in "gave up after 10 attempt(s)"; wait must instead
    # count each refusal as "not ready yet" and keep polling until --timeout.
    url = f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{_closed_port()}/nowhere"
    files = {"0001_t.sql": "CREATE TABLE t (a integer);\n"}
    app, _ = make_app(url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "wait", "--timeout", "1", "--interval", "0.2")
    assert result.exit_code == 1, result.output
    assert "the database did not answer within 1s" in result.stderr
    assert "last error:" in result.stderr and "gave up after" not in result.output
    document = json.loads(
        invoke(app, "wait", "--timeout", "1", "--interval", "0.2", "--json").stdout
    )
    assert document["ok"] is False and document["pending"] is None
    assert document["checks"] >= 2  # it kept polling instead of retrying one check
    assert "Connection refused" in document["last_error"], document


def test_wait_masks_a_password_quoted_in_the_driver_error(tmp_path) -> None:
    # libpq quotes the socket path it tried, and this one contains the
    # password: the error wait prints must still not show it.
    secret = "wait-pw-s3cret"
    sockets = tmp_path / secret
    sockets.mkdir()  # no server listens here: the database is down
    url = f"postgresql+psycopg2://postgres:{secret}@/nowhere?host={sockets}"
    files = {"0001_t.sql": "CREATE TABLE t (a integer);\n"}
    app, _ = make_app(url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "wait", "--timeout", "0.3", "--interval", "0.1")
    assert result.exit_code == 1, result.output
    assert "No such file or directory" in result.stderr, result.stderr  # the driver's error
    assert f"/{MASK}/.s.PGSQL.5432" in result.stderr and secret not in result.output
    document = json.loads(
        invoke(app, "wait", "--timeout", "0.3", "--interval", "0.1", "--json").stdout
    )
    assert f"/{MASK}/.s.PGSQL.5432" in document["last_error"]
    assert secret not in document["last_error"]


def test_wait_on_sqlite(tmp_path) -> None:
    files = {"0001_t.sql": "CREATE TABLE t (a integer);\n"}
    app, ext = make_app(f"sqlite:///{tmp_path / 'a.db'}", write_migrations(tmp_path / "m", files))
    timed_out = invoke(app, "wait", "--timeout", "0.2", "--interval", "0.1")
    assert timed_out.exit_code == 1 and "still 1 pending after 0.2s (0001_t)" in timed_out.stderr
    ext.upgrade(app)
    done = invoke(app, "wait", "--timeout", "5", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["pending"] == 0


def test_plan_verdicts_agree_with_verify_on_the_example_app(pg_url, tmp_path) -> None:
    # 0010 cleans up bad references before validating the key 0009 added NOT
    # VALID: only a verify of the whole directory sees that evidence.
    from tests.helpers import copy_example_migrations

    app, _ = make_app(pg_url, copy_example_migrations(tmp_path / "migrations"))
    verified = invoke(app, "verify", "--format", "json")
    assert verified.exit_code == 0, verified.output
    findings = json.loads(verified.stdout)["findings"]
    assert not [f for f in findings if f["severity"] == "error" and not f.get("suppressed")]
    document = json.loads(invoke(app, "plan", "--json").stdout)
    verdicts = {m["version"]: m["verdict"] for m in document["migrations"]}
    assert len(verdicts) == 10
    assert not [v for v, verdict in verdicts.items() if "error" in verdict], verdicts
    assert verdicts["0010"] == "safe"
    text = invoke(app, "plan")
    assert "0010_validate_leads_owner_fk (sql)" in text.output and "error(s)" not in text.output


def test_plan_on_sqlite_has_no_verdict(tmp_path) -> None:
    files = {"0001_t.sql": "CREATE TABLE t (a integer);\n"}
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", write_migrations(tmp_path / "m", files))
    result = invoke(app, "plan")
    assert result.exit_code == 0, result.output
    assert "0001_t (sql): one transaction" in result.output and "verdict n/a" in result.output
    assert "1: CREATE TABLE t (a integer)" in result.output
