"""The embedded development database (``flask_safe_migrate.embedded``, pgserver).

Each test that starts a server stops it in teardown: the module starts it with
``cleanup_mode=None`` on purpose (so the next CLI command reuses it), so
nothing else would.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flask_safe_migrate.embedded import EmbeddedDatabase
from flask_safe_migrate.embedded import _import_pgserver
from flask_safe_migrate.embedded import embedded_database_url
from flask_safe_migrate.errors import ConfigError
from tests.conftest import cannot_run
from tests.example_cli import REPO
from tests.example_cli import example_app_cli
from tests.example_cli import example_app_env

HAVE_PGSERVER = importlib.util.find_spec("pgserver") is not None
SOCKET_NAME = ".s.PGSQL.5432"


def _require_pgserver() -> None:
    if HAVE_PGSERVER:
        return
    cannot_run("pgserver is not installed: pip install 'flask-safe-migrate[embedded]'")


def _stop_server(pgdata: pathlib.Path) -> None:
    """Stop the cluster in ``pgdata`` and forget pgserver's in-process handle."""
    if not (pgdata / "postmaster.pid").exists():
        return
    # Typed as Any: pg_ctl is generated at import time, so type checkers cannot see it.
    pgserver: t.Any = _import_pgserver()  # quiet: pgserver warns at import without XDG_RUNTIME_DIR
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # the cached handle
    server.cleanup()  # cleanup_mode=None: only drops the handle, leaves the server up
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)


@pytest.fixture
def instance(tmp_path: pathlib.Path) -> t.Iterator[pathlib.Path]:
    """A not-yet-existing instance folder; its embedded server is stopped afterwards."""
    _require_pgserver()
    path = tmp_path / "instance"
    try:
        yield path
    finally:
        _stop_server(path / "pgdata")


def _start_time(url: str) -> t.Any:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("select 1")) == 1
            return conn.scalar(sa.text("select pg_postmaster_start_time()"))
    finally:
        engine.dispose()


def test_url_connects_and_server_is_reused(instance: pathlib.Path) -> None:
    url = embedded_database_url(instance)

    assert instance.is_dir()  # created on demand
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"  # not SQLAlchemy 2.1's psycopg 3 default
    assert parsed.username == "postgres"
    assert parsed.password is None  # pgserver's empty 'postgres:@' password is dropped
    assert parsed.database == "app"
    # The socket dir: pgdata itself, unless that path is too long for a socket.
    assert (pathlib.Path(str(parsed.query["host"])) / SOCKET_NAME).is_socket()
    started = _start_time(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select current_database()")) == "app"
    engine.dispose()

    # Same process, second call: the same server, and CREATE DATABASE is not retried.
    assert embedded_database_url(instance) == url
    assert _start_time(url) == started

    # A new process (the next `flask` command) finds the running server via
    # postmaster.pid instead of starting another one, and leaves it running.
    code = "import sys; from flask_safe_migrate.embedded import embedded_database_url as e; "
    code += "print(e(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(instance)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == url
    assert _start_time(url) == started


def test_other_database_name(instance: pathlib.Path) -> None:
    url = embedded_database_url(instance, database="crm_dev")

    assert make_url(url).database == "crm_dev"
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select current_database()")) == "crm_dev"
    engine.dispose()


def test_long_instance_path_falls_back_to_short_socket_dir(tmp_path: pathlib.Path) -> None:
    _require_pgserver()
    instance = tmp_path / ("i" * 60) / ("j" * 60)
    pgdata = instance / "pgdata"
    assert len(os.fsencode(pgdata / SOCKET_NAME)) > 108  # over the sun_path limit everywhere
    try:
        url = embedded_database_url(instance)

        socket_dir = pathlib.Path(str(make_url(url).query["host"]))
        assert socket_dir != pgdata.resolve()
        assert (socket_dir / SOCKET_NAME).is_socket()
        _start_time(url)
    finally:
        _stop_server(pgdata)


@pytest.mark.parametrize("name", ["", "App", "my-db", "x;drop", "1db", "a" * 64])
def test_bad_database_name(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(ConfigError, match="embedded database name"):
        embedded_database_url(tmp_path / "instance", database=name)
    assert not (tmp_path / "instance").exists()  # refused before anything is started


def test_missing_pgserver_says_what_to_do(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pgserver", None)  # makes `import pgserver` fail

    with pytest.raises(ConfigError) as info:
        embedded_database_url(tmp_path / "instance")

    message = str(info.value)
    assert "flask-safe-migrate[embedded]" in message
    assert "DATABASE_URL" in message


def test_the_example_app_starts_its_embedded_server_only_when_a_command_connects(
    instance: pathlib.Path,
) -> None:
    for args in (["safe-migrate", "--help"], ["safe-migrate", "status", "--help"], ["routes"]):
        result = example_app_cli(*args, CRM_INSTANCE_PATH=str(instance))
        assert result.returncode == 0, result.stderr
        assert not (instance / "pgdata").exists(), args  # nothing started, nothing created

    status = example_app_cli("safe-migrate", "status", CRM_INSTANCE_PATH=str(instance))
    assert status.returncode == 0, status.stderr
    assert "pending" in status.stdout
    assert (instance / "pgdata" / "postmaster.pid").exists()  # started on demand, left running


def test_creating_the_example_app_imports_and_starts_nothing(tmp_path: pathlib.Path) -> None:
    code = (
        "import os, sys; os.environ.pop('DATABASE_URL', None); "
        "from example_app import create_app; app = create_app(); "
        "print('pgserver' in sys.modules, app.config['SQLALCHEMY_DATABASE_URI'])"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=example_app_env(CRM_INSTANCE_PATH=str(tmp_path / "instance")),
            cwd=REPO,
            timeout=60,
            check=True,
        ).stdout.split()
        assert out == ["False", "postgresql+psycopg2://postgres@/app"]
        assert not (tmp_path / "instance").exists()
    finally:
        _stop_server(tmp_path / "instance" / "pgdata")  # only if a regression started one


def test_embedded_database_connects_lazily_and_validates_at_once(instance: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="embedded database name"):
        EmbeddedDatabase(instance, database="Bad-Name")
    embedded = EmbeddedDatabase(instance, database="lazy_db")
    assert not instance.exists()
    conn = embedded.connect()  # starts the server, creates the database
    try:
        with conn.cursor() as cur:
            cur.execute("select current_database()")
            assert cur.fetchone() == ("lazy_db",)
    finally:
        conn.close()
    assert embedded.url() == embedded_database_url(instance, database="lazy_db")
