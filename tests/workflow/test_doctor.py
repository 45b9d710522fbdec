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


def test_doctor_live_kills_its_backend_and_prints_the_three_points(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", NO_TX))
    result = invoke(app, "doctor", "--live")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "✅ 1. a new connection each retry, after disposing the pool" in out
    assert "- the kill was seen as a lost connection" in out
    assert "engine_disposed event(s)) and replaced by a new pool object" in out
    assert "✅ 2. no outer transaction around the executor: each attempt is its own" in out
    assert "in its own new transaction" in out
    assert "✅ 3. DDL only, or safe DML (verify on the migrations)" in out
    assert "2 SQL statement(s): 2 DDL" in out  # verify's evidence on the directory
    assert "Verdict:    all three points hold" in out
    live = json.loads(invoke(app, "doctor", "--live", "--json").stdout)["live"]
    assert live["attempts"] == 2 and len(set(live["backend_pids"])) == 2
    assert len(set(live["transaction_ids"])) == 2 and live["disposals_before_retry"] >= 1
    assert [p["id"] for p in live["points"]] == [1, 2, 3]
    assert all(live["checks"].values()), live["checks"]


def test_doctor_live_fails_point_3_on_unsafe_dml(pg_url, tmp_path) -> None:
    files = dict(NO_TX)
    files["0003_lower.sql"] = "UPDATE t SET a = a + 1;\n"
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "doctor", "--live")
    assert result.exit_code == 1, result.output
    assert "✅ 1. a new connection each retry" in result.output
    assert "❌ 3. DDL only, or safe DML" in result.output
    assert "Verdict:    FAILED" in result.output


def test_doctor_live_fails_points_2_and_3_when_verify_cannot_read_the_migrations(
    pg_url, tmp_path
) -> None:
    app, _ = make_app(pg_url, tmp_path / "not_created")
    result = invoke(app, "doctor", "--live")
    assert result.exit_code == 1, result.output
    assert "✅ 1. a new connection each retry" in result.output
    assert "❌ 3. DDL only, or safe DML" in result.output
    assert "not_created: no such file or directory" in result.output
    assert "Verdict:    FAILED" in result.output


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


def test_doctor_sees_tls_with_psycopg3(tls_cluster, tls_db, pgbouncer, tmp_path) -> None:
    # psycopg 3 keeps ssl_in_use on conn.pgconn, not on conn.info (psycopg2)
    directory = write_migrations(tmp_path / "m", NO_TX)
    direct = tls_cluster.app_url(tls_db).replace("+psycopg2://", "+psycopg://")
    app, _ = make_app(direct, directory)
    document = json.loads(invoke(app, "doctor", "--json").stdout)
    assert document["tls_client"] is True and document["tls_server"] is True
    assert document["pooler"] == "none"
    pooled = pgbouncer.app_url(tls_db).replace("+psycopg2://", "+psycopg://")
    app, _ = make_app(pooled, directory)
    result = invoke(app, "doctor")
    assert result.exit_code == 0, result.output
    assert "TLS:        client leg yes" in result.output
    assert "Pooler:     yes, transaction mode" in result.output
