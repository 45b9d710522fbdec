"""Small helpers shared by the runner tests: an app per test, ledger and fingerprint reads,
real ``flask safe-migrate`` processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import NullPool

from flask_safe_migrate import SafeMigrate
from flask_safe_migrate.fingerprint import Fingerprint
from flask_safe_migrate.fingerprint import take

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_MIGRATIONS = os.path.join(REPO, "example_app", "migrations")
LEDGER_TABLES = ("safe_migrate_ledger", "safe_migrate_ledger_lease")


def make_app(
    url: str, directory: str | os.PathLike[str], **config: t.Any
) -> tuple[Flask, SafeMigrate]:
    """A minimal Flask + Flask-SQLAlchemy app bound to ``url`` and ``directory``."""
    app = Flask("sm_test_app")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.update(
        {"SAFE_MIGRATE_BACKOFF_BASE": 0.05, "SAFE_MIGRATE_BACKOFF_CAP": 0.5, **config}
    )
    db = SQLAlchemy(app)
    ext = SafeMigrate(app, db, directory=directory)
    return app, ext


def write_migrations(directory: str | os.PathLike[str], files: dict[str, str]) -> str:
    os.makedirs(directory, exist_ok=True)
    for name, body in files.items():
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(body)
    return os.fspath(directory)


def copy_example_migrations(target: str | os.PathLike[str]) -> str:
    shutil.copytree(EXAMPLE_MIGRATIONS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return os.fspath(target)


def ledger(url: str) -> list[tuple[str, int]]:
    """(version, attempts) rows of the ledger, ordered."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT version, attempts FROM safe_migrate_ledger ORDER BY version"
                )
            ]
    finally:
        engine.dispose()


def fingerprint(url: str) -> Fingerprint:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return take(conn, exclude=LEDGER_TABLES)
    finally:
        engine.dispose()


def scalar(url: str, sql: str) -> t.Any:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql, execution_options={"no_parameters": True}).scalar()
    finally:
        engine.dispose()


# -- real processes -----------------------------------------------------------------------------


def subprocess_env(*importable: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    """The environment for a child process: this one without ``SAFE_MIGRATE_*`` / ``FLASK_*``
    (the test's app sets what it means to), the repository and ``importable`` on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFE_MIGRATE_", "FLASK_"))}
    env["PYTHONPATH"] = os.pathsep.join([REPO, *map(os.fspath, importable)])
    env.update(extra)
    return env


def safe_migrate_cli(app_module: str, *args: str) -> list[str]:
    """The argv of ``flask --app <app_module> safe-migrate <args>``, run by this interpreter."""
    return [sys.executable, "-m", "flask", "--app", app_module, "safe-migrate", *args]


@contextlib.contextmanager
def started(argv: list[str], **popen: t.Any) -> t.Iterator[subprocess.Popen[t.Any]]:
    """``subprocess.Popen(argv, **popen)``, killed and reaped on the way out if still running."""
    process = subprocess.Popen(argv, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


T = t.TypeVar("T")


def poll_while_running(
    process: subprocess.Popen[t.Any], probe: t.Callable[[], T], timeout: float = 30.0
) -> T:
    """``probe()`` every 50 ms until it returns something truthy, ``process`` exits, or
    ``timeout``; returns its last answer."""
    deadline = time.monotonic() + timeout
    answer = probe()
    while not answer and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        answer = probe()
    return answer


def active_statement(url: str, starting: str, pid: int) -> int | None:
    """The backend pid of process ``pid``'s migration connection while it runs a statement that
    starts with ``starting`` (its ``application_name`` ends with the process id)."""
    return t.cast(
        "int | None",
        scalar(
            url,
            "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
            f" AND query LIKE '{starting}%' AND application_name LIKE 'flask-safe-migrate/%/{pid}'",
        ),
    )


def backend_active(url: str, pid: int) -> bool:
    return bool(
        scalar(url, f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'")
    )


def sigterm_during(
    argv: list[str], url: str, starting: str, **popen: t.Any
) -> tuple[int, subprocess.Popen[str], str, str]:
    """Run ``argv``; once its backend runs a statement starting with ``starting``, SIGTERM it.

    :returns: that backend's pid, the process (exited) and its stdout and stderr. Generous
        timeouts: without a cancel on the server, a long statement would be waited out.
    """
    with started(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    ) as process:
        backend = poll_while_running(process, lambda: active_statement(url, starting, process.pid))
        assert backend is not None, f"no statement {starting!r} ever ran"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    return backend, process, out, err
