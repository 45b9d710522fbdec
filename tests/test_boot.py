"""Auto-migrate at boot: runs in init_app, one query when nothing is pending, guarded."""

from __future__ import annotations

import typing as t
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from flask_safe_migrate import MigrationError
from flask_safe_migrate.boot import skip_reason
from flask_safe_migrate.faults import FaultProxy
from flask_safe_migrate.runner import DatabaseRefused
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import poll_while_running
from tests.helpers import scalar
from tests.helpers import subprocess_env
from tests.helpers import write_migrations
from tests.test_runner import BASIC


def test_auto_migrate_applies_during_init_app(pg_url, tmp_path) -> None:
    make_app(pg_url, write_migrations(tmp_path / "m", BASIC), SAFE_MIGRATE_AUTO_MIGRATE=True)
    assert [v for v, _ in ledger(pg_url)] == ["0001", "0002", "0003"]
    # Its own NullPool engine was disposed: no migration connection stays open.
    leftovers = scalar(
        pg_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'flask-safe-migrate%' AND pid <> pg_backend_pid()",
    )
    assert leftovers == 0


def test_boot_with_nothing_pending_costs_one_statement(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", BASIC)
    make_app(pg_url, directory, SAFE_MIGRATE_AUTO_MIGRATE=True)
    executed: list[str] = []
    listener = lambda conn, cursor, statement, *rest: executed.append(statement)  # noqa: E731
    event.listen(sa.engine.Engine, "before_cursor_execute", listener)
    try:
        with FaultProxy.for_url(pg_url) as proxy:
            make_app(proxy.url(pg_url), directory, SAFE_MIGRATE_AUTO_MIGRATE=True)
            on_the_wire = [e.detail for e in proxy.events if e.kind == "query"]
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", listener)
    # One query reached the server, and no SQLAlchemy engine ran anything.
    assert len(on_the_wire) == 1, on_the_wire
    assert executed == []


def test_failure_at_boot_raises_by_default_and_can_be_logged(pg_url, tmp_path, caplog) -> None:
    directory = write_migrations(tmp_path / "m", {"0001_bad.sql": "SELECT * FROM nope;\n"})
    with pytest.raises(MigrationError, match="0001_bad"):
        make_app(pg_url, directory, SAFE_MIGRATE_AUTO_MIGRATE=True)
    app, _ = make_app(
        pg_url, directory, SAFE_MIGRATE_AUTO_MIGRATE=True, SAFE_MIGRATE_AUTO_MIGRATE_ON_ERROR="log"
    )
    assert app is not None
    assert "auto-migrate failed; the app starts anyway" in caplog.text


def _superuser(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture
def refusing_database(request: pytest.FixtureRequest) -> t.Iterator[tuple[str, str, str | None]]:
    """(URL, what the database says, a secret that must never be printed) for one refusal."""
    case = request.param
    if case == "unknown database":
        url = request.getfixturevalue("pg_url")
        yield (
            make_url(url).set(database="sm_no_such_db").render_as_string(False),
            "does not exist",
            None,
        )
    elif case == "bad password":
        cluster = request.getfixturevalue("tls_cluster")
        url = cluster.app_url(request.getfixturevalue("tls_db"))
        secret = "wrong-pw-never-printed-7"
        bad = make_url(url).set(password=secret).render_as_string(hide_password=False)
        yield bad, "password authentication failed", secret
    else:  # a role that may connect but not create the ledger tables
        url = request.getfixturevalue("pg_url")
        role = f"sm_noperm_{uuid.uuid4().hex[:8]}"
        _superuser(url, f'CREATE ROLE "{role}" LOGIN', "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        try:
            limited = make_url(url).set(username=role, password=None)
            yield limited.render_as_string(hide_password=False), "permission denied", None
        finally:
            _superuser(url, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize(
    "refusing_database",
    ["unknown database", "bad password", "permission denied"],
    indirect=True,
)
def test_database_refusal_at_boot_raises_a_package_error_or_is_logged(
    refusing_database: tuple[str, str, str | None], tmp_path, caplog
) -> None:
    url, says, secret = refusing_database
    directory = write_migrations(tmp_path / "m", {"0001_t.sql": "CREATE TABLE t (a int);\n"})
    with pytest.raises(DatabaseRefused) as info:
        make_app(url, directory, SAFE_MIGRATE_AUTO_MIGRATE=True, SAFE_MIGRATE_MAX_ATTEMPTS=2)
    message = str(info.value)
    assert says in message and "Fix:" in message, message
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError | OSError) or type(
        info.value.__cause__
    ).__module__.startswith("psycopg2"), repr(info.value.__cause__)
    caplog.clear()
    app, _ = make_app(
        url,
        directory,
        SAFE_MIGRATE_AUTO_MIGRATE=True,
        SAFE_MIGRATE_AUTO_MIGRATE_ON_ERROR="log",
        SAFE_MIGRATE_MAX_ATTEMPTS=2,
    )
    assert app is not None
    assert "auto-migrate failed; the app starts anyway" in caplog.text and says in caplog.text
    if secret is not None:
        assert secret not in message and secret not in caplog.text


@pytest.mark.parametrize(
    ("argv", "environ", "skipped"),
    [
        (["flask", "safe-migrate", "run"], {}, True),
        (["flask", "--app", "x", "safe-migrate", "status"], {}, True),
        (["flask", "run", "--debug"], {}, True),
        (["flask", "run", "--debug"], {"WERKZEUG_RUN_MAIN": "true"}, False),
        (["flask", "run", "--debug", "--no-reload"], {}, False),
        (["flask", "run"], {"FLASK_DEBUG": "1"}, True),
        (["flask", "run"], {}, False),
        (["gunicorn", "app:app"], {}, False),
        (["gunicorn", "app:app"], {"SAFE_MIGRATE_SKIP_AUTO_MIGRATE": "1"}, True),
        # werkzeug's own signal for the reloader's serving child wins over argv
        (["flask", "run", "--reload"], {"WERKZEUG_RUN_MAIN": "true"}, False),
        (["app.py"], {"WERKZEUG_RUN_MAIN": "true", "FLASK_DEBUG": "1"}, False),
        (["flask", "run", "--reload"], {}, True),
    ],
)
def test_skip_rules(argv, environ, skipped) -> None:
    assert (skip_reason("safe-migrate", argv, environ) is not None) is skipped


def test_not_run_when_the_process_is_a_safe_migrate_command(pg_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sys.argv", ["flask", "safe-migrate", "status"])
    make_app(pg_url, write_migrations(tmp_path / "m", BASIC), SAFE_MIGRATE_AUTO_MIGRATE=True)
    assert scalar(pg_url, "SELECT to_regclass('safe_migrate_ledger')") is None


def test_flask_run_debug_migrates_in_the_reloader_child_only(pg_url, tmp_path) -> None:
    """A real `flask run --debug`: the watching parent loads the app too, but must not migrate."""
    import os
    import signal
    import subprocess
    import sys

    from tests.infra.procs import free_port

    directory = write_migrations(tmp_path / "m", BASIC)
    (tmp_path / "sm_reload_app.py").write_text(
        "from tests.helpers import make_app\n"
        f"app, ext = make_app({pg_url!r}, {directory!r}, SAFE_MIGRATE_AUTO_MIGRATE=True)\n"
    )
    env = subprocess_env(tmp_path)
    env.pop("WERKZEUG_RUN_MAIN", None)
    argv = [sys.executable, "-m", "flask", "--app", "sm_reload_app", "run", "--debug"]
    server = subprocess.Popen(
        [*argv, "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def migrated_by() -> str | None:
        """Who applied the last migration (so the run is over), once it is applied."""
        if not scalar(pg_url, "SELECT to_regclass('safe_migrate_ledger') IS NOT NULL"):
            return None
        return scalar(pg_url, "SELECT applied_by FROM safe_migrate_ledger WHERE version = '0003'")

    try:
        applied_by = poll_while_running(server, migrated_by, timeout=60)
        assert applied_by is not None, "nothing was migrated"
        pid = int(applied_by.rsplit(":", 1)[1])
        with open(f"/proc/{pid}/stat") as fh:
            parent_of_migrator = int(fh.read().rsplit(")", 1)[1].split()[1])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    assert pid != server.pid, "the reloader's watching parent migrated"
    assert parent_of_migrator == server.pid, "migrated by the reloader's child"
    assert [v for v, _ in ledger(pg_url)] == ["0001", "0002", "0003"]
