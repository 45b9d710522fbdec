"""`doctor [--live]`: direct Postgres, PgBouncer in transaction mode, SQLite."""

from __future__ import annotations

import json

from tests.helpers import make_app
from tests.helpers import write_migrations
from tests.workflow.conftest import invoke

NO_TX = {
    "0001_t.sql": "CREATE TABLE t (a int);\n",
    "0002_i.sql": "-- safe-migrate: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n",
}


def test_doctor_on_a_direct_connection(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor")
    assert result.exit_code == 0, result.output
    assert "Pooler:     none (direct connection)" in result.output
    assert "lock_timeout:" in result.output and "statement_timeout:" in result.output
    document = json.loads(invoke(app, "doctor", "--json").stdout)
    assert document["schema_version"] == 1 and document["pooler"] == "none"
    assert document["server_version"] and document["latency_ms"] >= 0
    told, first, second = document["pids"]
    assert told == first and first != second


def test_doctor_live_kills_its_backend_and_sees_the_retry(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor", "--live")
    assert result.exit_code == 0, result.output
    assert "✅ 1. the kill was seen as a lost connection" in result.output
    assert "✅ 3. the retry ran on a new connection (new backend pid)" in result.output
    assert "Verdict:    all three points hold" in result.output
    live = json.loads(invoke(app, "doctor", "--live", "--json").stdout)["live"]
    assert live["attempts"] == 2 and len(set(live["backend_pids"])) == 2


def test_doctor_detects_a_transaction_pooler_and_advises(pgb_url, tmp_path) -> None:
    app, _ = make_app(pgb_url, write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["pooler"] == "transaction"
    assert document["tls_client"] is True
    advice = " ".join(document["advice"])
    assert "SAFE_MIGRATE_DATABASE_URI" in advice and "1 no-transaction migration" in advice
    from sqlalchemy.engine import make_url

    password = make_url(pgb_url).password
    assert password and password not in result.stdout and "***" in document["url"]


def test_doctor_live_through_pgbouncer(pgb_url, tmp_path) -> None:
    app, _ = make_app(pgb_url, write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor", "--live")
    assert result.exit_code == 0, result.output
    assert "Verdict:    all three points hold" in result.output


def test_doctor_on_sqlite(tmp_path) -> None:
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor")
    assert result.exit_code == 0 and "SQLite" in result.output
