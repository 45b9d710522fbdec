"""`flask safe-migrate run` and `status`: output, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from tests.helpers import backend_active
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import safe_migrate_cli
from tests.helpers import scalar
from tests.helpers import sigterm_during
from tests.helpers import subprocess_env
from tests.helpers import write_migrations
from tests.infra.postgres import DRIVERS
from tests.infra.postgres import with_driver
from tests.test_runner import BASIC


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=["safe-migrate", *args])


def test_run_prints_a_line_per_migration_and_a_summary(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    result = invoke(app, "run")
    assert result.exit_code == 0, result.output
    assert "0001_create_leads applied in" in result.output
    assert "0003_index_email applied in" in result.output
    assert "Done: 3 applied" in result.output
    again = invoke(app, "run")
    assert again.exit_code == 0 and "Nothing to apply" in again.output


def test_run_prints_attempts_on_every_line_and_the_reason_of_a_retry(pg_url, tmp_path) -> None:
    """A real fault: the proxy cuts the connection as 0002's first statement is sent."""
    directory = write_migrations(tmp_path / "m", BASIC)
    with FaultProxy.for_url(pg_url) as proxy:
        cut = proxy.add_cut(Cut("before_query", match=r"^ALTER TABLE leads ADD COLUMN score"))
        app, _ = make_app(proxy.url(pg_url), directory)
        result = invoke(app, "run")
    assert cut.fired == 1
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  0002_add_score: attempt 2 after: server closed the connection unexpectedly" in lines
    assert re.search(r"^  ✅ 0001_create_leads applied in \d+ ms, 1 attempt$", result.output, re.M)
    assert re.search(r"^  ✅ 0002_add_score applied in \d+ ms, 2 attempts$", result.output, re.M)
    assert re.search(r"^  ✅ 0003_index_email applied in \d+ ms, 1 attempt$", result.output, re.M)


def test_run_json_is_one_document_with_the_shared_keys(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    result = invoke(app, "run", "--json")
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["ok"] is True
    first = document["migrations"][0]
    assert set(first) >= {"version", "name", "checksum", "state", "attempts", "duration_ms"}
    assert first["version"] == "0001" and first["state"] == "applied"


def test_status_and_check_gate(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", BASIC))
    pending = invoke(app, "status", "--check")
    assert pending.exit_code == 1
    assert "⏳ 0001 create_leads" in pending.output and "0 applied, 3 pending" in pending.output
    invoke(app, "run")
    clean = invoke(app, "status", "--check", "--json")
    assert clean.exit_code == 0
    document = json.loads(clean.stdout)
    assert document["counts"] == {"applied": 3, "pending": 0, "drift": 0, "missing": 0}
    assert {m["state"] for m in document["migrations"]} == {"applied"}
    assert document["migrations"][0]["attempts"] == 1


def test_failures_are_messages_with_exit_codes_not_tracebacks(pg_url, tmp_path) -> None:
    files = {"0001_broken.sql": "CREATE TABLE t (a int);\nSELECT * FROM nope;\n"}
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "run")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert (
        "0001_broken.sql:2" in result.stderr and 'relation "nope" does not exist' in result.stderr
    )
    as_json = json.loads(invoke(app, "run", "--json").stdout)
    assert as_json["ok"] is False and as_json["error"]["type"] == "MigrationError"
    assert as_json["error"]["version"] == "0001"
    with_traceback = invoke(app, "run", "--traceback")
    assert "Traceback" in with_traceback.stderr


def test_bad_migration_file_name_exits_2(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", {"0004_Foo.SQL": "select 1;"}))
    result = invoke(app, "run")
    assert result.exit_code == 2
    assert "0004_Foo.SQL" in result.stderr


def test_missing_directory_exits_2(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, tmp_path / "nowhere")
    result = invoke(app, "status")
    assert result.exit_code == 2 and "nowhere" in result.stderr


def test_alembic_directory_points_to_adoption(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "migrations", {"env.py": "", "alembic.ini": ""})
    app, _ = make_app(pg_url, directory)
    result = invoke(app, "run")
    assert result.exit_code == 2 and "baseline" in result.stderr
    assert f"flask safe-migrate adopt-alembic --alembic {directory}" in result.stderr


def test_unreachable_database_is_an_error_without_password_or_traceback(tmp_path) -> None:
    from tests.infra.procs import free_port

    secret = "pw-never-printed-123"
    url = f"postgresql+psycopg2://app:{secret}@127.0.0.1:{free_port()}/db"
    app, _ = make_app(url, write_migrations(tmp_path / "m", BASIC), SAFE_MIGRATE_MAX_ATTEMPTS=2)
    for args in (("run",), ("status",), ("run", "--traceback")):
        result = invoke(app, *args)
        assert result.exit_code == 1
        assert secret not in result.output
        assert "refused" in result.output
    assert "Traceback" not in invoke(app, "run").output


def test_bad_password_fails_at_once_without_printing_it(pgb_url, tmp_path) -> None:
    bad = (
        sa.engine.make_url(pgb_url)
        .set(password="not-the-password-xyz")
        .render_as_string(hide_password=False)
    )
    app, _ = make_app(bad, write_migrations(tmp_path / "m", BASIC))
    result = invoke(app, "run")
    assert result.exit_code == 1
    assert "authentication failed" in result.output
    assert "not-the-password-xyz" not in result.output
    assert "attempt 2" not in result.output


def test_an_unexpected_error_shows_a_scrubbed_traceback(pg_url, tmp_path) -> None:
    files = {
        "0001_bug.py": "def upgrade(m):\n    raise ValueError('postgresql://app:leaked-pw-9@db/x is wrong')\n"
    }
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    result = invoke(app, "run")
    assert result.exit_code == 1
    assert "leaked-pw-9" not in result.output
    assert "0001_bug" in result.output


SIGNAL_APP = """
import os
from tests.helpers import make_app

app, ext = make_app(os.environ["SM_TEST_URL"], os.environ["SM_TEST_DIR"])
"""


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("body", "state"),
    [
        ("SELECT pg_sleep(600);\n", "0002_slow was rolled back and is not applied"),
        (
            "-- safe-migrate: no-transaction\nSELECT pg_sleep(600);\n",
            "0002_slow runs outside a transaction",
        ),
    ],
    ids=["transactional", "no-transaction"],
)
def test_sigterm_cancels_the_statement_in_flight(pg_url, tmp_path, driver, body, state) -> None:
    """A real `flask safe-migrate run` process, SIGTERM while 0002 sits in a 10-minute statement.

    With psycopg2 the signal handler cannot run while the driver waits for the server: the run
    must cancel the statement on the server, or it would wait the whole statement out.
    """
    directory = write_migrations(
        tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (a int);\n", "0002_slow.sql": body}
    )
    (tmp_path / "sm_signal_app.py").write_text(SIGNAL_APP)
    env = subprocess_env(tmp_path, SM_TEST_URL=with_driver(pg_url, driver), SM_TEST_DIR=directory)
    sleeping, process, _, err = sigterm_during(
        safe_migrate_cli("sm_signal_app", "run"),
        pg_url,
        "SELECT pg_sleep(600)",
        cwd=tmp_path,
        env=env,
    )
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM: 1 applied by this run (0001_t)" in err, err
    assert state in err and "the migration lease was released" in err, err
    # The statement was cancelled on the server before the process exited (the backend may
    # still be closing), and nothing was left behind.
    assert not backend_active(pg_url, sleeping), "the statement runs on without its client"
    assert ledger(pg_url) == [("0001", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM safe_migrate_ledger_lease") == 0
