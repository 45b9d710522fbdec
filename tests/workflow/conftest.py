"""Shared bits of the workflow command tests."""

from __future__ import annotations

import importlib
import typing as t

import pytest
from click.testing import Result
from flask import Flask

from tests.conftest import cannot_run

if t.TYPE_CHECKING:
    from flask_safe_migrate.fingerprint import Fingerprint


def require(module: str, package: str) -> t.Any:
    """Import ``module`` or skip, naming the package; under SAFE_MIGRATE_REQUIRE_ALL=1, fail.

    For Python packages a test needs that only some extras install (like the
    root conftest's ``missing()`` for binaries): a skip never hides them in CI.
    Usable at a test module's top level.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        cannot_run(f"{package} is not installed: pip install {package}")


def invoke(app: Flask, *args: str, input: str | None = None) -> Result:
    """Run ``flask safe-migrate ARGS`` through Flask's CLI test runner."""
    return app.test_cli_runner().invoke(args=["safe-migrate", *args], input=input)


@pytest.fixture(params=["postgres", "sqlite"])
def any_url(request: pytest.FixtureRequest, tmp_path: t.Any) -> str:
    """A fresh database: Postgres, then SQLite (for commands that work on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("pg_url"))


def execute(url: str, *statements: str) -> None:
    """Run statements (DDL included) on ``url`` in one transaction."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.fixture
def fresh_url(pg_server: t.Any) -> t.Iterator[str]:
    """A second fresh database on the everyday server, next to ``pg_url``."""
    name = pg_server.create_database()
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.drop_database(name)


def schema(url: str) -> Fingerprint:
    """The schema of ``url`` without the bookkeeping tables (ours and Alembic's)."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from flask_safe_migrate.fingerprint import take
    from tests.helpers import LEDGER_TABLES

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return take(conn, exclude=(*LEDGER_TABLES, "alembic_version"))
    finally:
        engine.dispose()
