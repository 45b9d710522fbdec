"""Small helpers shared by the runner tests: an app per test, ledger and fingerprint reads."""

from __future__ import annotations

import os
import shutil
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import NullPool

from flask_safe_migrate import SafeMigrate
from flask_safe_migrate.fingerprint import Fingerprint
from flask_safe_migrate.fingerprint import take

EXAMPLE_MIGRATIONS = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "example_app", "migrations"
)
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
