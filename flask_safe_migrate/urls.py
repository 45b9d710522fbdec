"""Normalise the database URLs this package builds its own engines from.

SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 and rejects
``postgres://`` (what Heroku, Render and Supabase hand out). The app's own
engine belongs to Flask-SQLAlchemy and is left alone; only the URLs we build
migration engines from are normalised here.
"""

from __future__ import annotations

import importlib.util
import typing as t

from .errors import ConfigError
from .redact import register_secret

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL

POSTGRES_DRIVERS = ("psycopg2", "psycopg")


def default_postgres_driver() -> str:
    """psycopg 3 when it is installed (SQLAlchemy 2.1's default), else psycopg2."""
    return "psycopg" if importlib.util.find_spec("psycopg") is not None else "psycopg2"


def normalize_url(raw: str | URL, *, key: str = "SAFE_MIGRATE_DATABASE_URI") -> URL:
    """Parse ``raw`` and pick an installed driver for bare ``postgres(ql)://`` URLs.

    :param key: named in the error message when ``raw`` is not a URL.
    :raises ConfigError: ``raw`` is not a database URL.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(raw, str) and raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"{key}: {raw!r} is not a database URL ({exc}); write e.g. "
            "'postgresql://user:password@host:5432/dbname'",
            key=key,
        ) from None
    register_secret(url.password if isinstance(url.password, str) else None)
    backend, _, driver = url.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if driver not in POSTGRES_DRIVERS:
            if driver:
                raise ConfigError(
                    f"{key}: driver {driver!r} is not supported for migrations; "
                    f"use postgresql+psycopg2:// or postgresql+psycopg://",
                    key=key,
                )
            driver = default_postgres_driver()
        return url.set(drivername=f"{backend}+{driver}")
    return url


def display_url(url: str | URL) -> str:
    """The URL as it may be printed: password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        from .redact import redact

        return redact(str(url))
