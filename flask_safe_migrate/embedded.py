"""A zero-setup PostgreSQL for development: the ``embedded`` extra.

``pip install flask-safe-migrate[embedded]`` brings `pgserver`_, which ships
the PostgreSQL binaries as a wheel. :func:`embedded_database_url` starts a
server whose data lives in the app's instance folder, so ``flask run`` works
on a fresh checkout without installing or configuring Postgres, and the
migrations run against the real thing (not SQLite).

This is for development only: the server listens on a unix socket (no TCP,
no TLS) with ``trust`` authentication. Set ``DATABASE_URL`` for anything else.

:class:`EmbeddedDatabase` defers all of it to the first connection, so an
app that defaults to the embedded server can still run ``flask --help`` or
``flask safe-migrate verify`` without starting (or even importing) anything.

.. _pgserver: https://pypi.org/project/pgserver/
"""

from __future__ import annotations

import os
import re
import typing as t
import warnings

from .errors import ConfigError

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL

#: The sub-directory of the instance folder that holds the cluster's data.
PGDATA_DIRNAME = "pgdata"

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def embedded_database_url(instance_path: str | os.PathLike[str], database: str = "app") -> str:
    """Start (or reuse) the embedded server and return a SQLAlchemy URL to ``database``.

    The cluster lives in ``<instance_path>/pgdata``. It is started with
    ``cleanup_mode=None``: it keeps running after this process exits, so the
    next ``flask`` command (and a second worker) finds it via
    ``postmaster.pid`` and reuses it instead of paying for a start-up each
    time. Stop it with ``pg_ctl -D <instance_path>/pgdata stop`` (the binary is
    in ``pgserver/pginstall/bin``) or just leave it; deleting ``pgdata`` resets
    the database.

    ``database`` is created when missing, so the app never writes into the
    ``postgres`` maintenance database that tools expect to be empty.

    The URL is ``postgresql+psycopg2://postgres@/<database>?host=<socket dir>``
    (the socket dir percent-encoded). The driver is named explicitly because
    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which this
    package does not require. The socket dir is ``pgdata`` itself, or, when
    that path is too long for a unix socket (about 104 bytes), a short
    directory under the user's runtime dir that pgserver picks on its own.

    Notes on pgserver's behaviour, when this process runs as root (containers):
    PostgreSQL refuses to run as root, so pgserver creates a system user
    ``pgserver`` (``useradd``), runs the server as that user, and adds
    ``g+rx,o+rx`` to every parent directory of ``pgdata`` so that user can
    reach it.

    :param instance_path: the Flask app's instance folder; created if missing.
    :param database: name of the application database (lower-case identifier).
    :raises ConfigError: pgserver is not installed, or ``database`` is not a
        plain lower-case identifier.
    """
    if not _DATABASE_NAME.match(database):
        raise ConfigError(
            f"embedded database name {database!r} is invalid: use lower-case letters, "
            "digits and '_' (at most 63), starting with a letter or '_'"
        )
    pgserver = _import_pgserver()
    # pgserver creates pgdata itself, but only when its parent exists.
    os.makedirs(instance_path, exist_ok=True)
    pgdata = os.path.join(os.path.abspath(os.fspath(instance_path)), PGDATA_DIRNAME)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    from sqlalchemy.engine import make_url

    admin = make_url(server.get_uri())
    _ensure_database(admin, database)
    return _app_url(admin, database).render_as_string(hide_password=False)


def _import_pgserver() -> t.Any:
    """Import pgserver lazily: it is an optional extra and its import is not free."""
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir at import time; without
            # XDG_RUNTIME_DIR (containers, CI) platformdirs warns and falls back to
            # /tmp/runtime-<uid>, which is fine for a lock file and a socket dir.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
            import pgserver
    except ImportError as exc:
        raise ConfigError(
            "No database configured and the embedded development database is not "
            "available: install `flask-safe-migrate[embedded]` (it brings pgserver), "
            f"or set DATABASE_URL to a PostgreSQL URL ({exc})"
        ) from exc
    return pgserver


def _app_url(admin: URL, database: str) -> URL:
    """pgserver's ``postgresql://postgres:@/postgres?host=...`` turned into the app's URL.

    Rebuilt with :meth:`URL.create` rather than ``.set()``: ``set`` ignores
    ``None``, so it could not drop the empty password (``postgres:@``).
    """
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql+psycopg2",
        username=admin.username,
        host=admin.host,
        port=admin.port,
        database=database,
        query=admin.query,
    )


def _ensure_database(admin: URL, database: str) -> None:
    """``CREATE DATABASE`` unless it exists; safe when two processes race to do it.

    Connects with the parsed parts rather than pgserver's URI string, which
    does not percent-encode the socket path. CREATE DATABASE cannot run in a
    transaction block, hence autocommit.
    """
    import psycopg2
    import psycopg2.errors
    from psycopg2 import sql

    host = admin.query.get("host", admin.host)
    conn = psycopg2.connect(
        dbname=admin.database,
        user=admin.username,
        host=host if isinstance(host, str) else None,
        port=admin.port,
        connect_timeout=10,
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is not None:
                return
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                # Another process (a second worker, a CLI command) won the race;
                # a concurrent CREATE can also fail on pg_database's unique index.
                pass
    finally:
        conn.close()


class EmbeddedDatabase:
    """The embedded server of one instance folder, started on first use, not before.

    Wire it into an app so that nothing starts at import or ``create_app``
    time::

        embedded = EmbeddedDatabase(app.instance_path)
        app.config["SQLALCHEMY_DATABASE_URI"] = embedded.placeholder_url
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"creator": embedded.connect}
        app.config["SAFE_MIGRATE_DATABASE_URI"] = embedded.url  # a callable

    The app's engine then starts the server on its first connection, and
    ``flask safe-migrate`` only when a command needs the migration URL.

    :raises ConfigError: ``database`` is not a plain lower-case identifier
        (checked at once; nothing is started).
    """

    def __init__(self, instance_path: str | os.PathLike[str], database: str = "app") -> None:
        if not _DATABASE_NAME.match(database):
            raise ConfigError(
                f"embedded database name {database!r} is invalid: use lower-case letters, "
                "digits and '_' (at most 63), starting with a letter or '_'"
            )
        self.instance_path = os.fspath(instance_path)
        self.database = database
        self._url: str | None = None

    @property
    def placeholder_url(self) -> str:
        """A host-less URL naming the driver and database, for the app's engine.

        The engine needs a URL when it is created; the socket directory is
        only known once the server runs, so :meth:`connect` supplies the
        connection instead (SQLAlchemy's ``creator``).
        """
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2", username="postgres", database=self.database
        ).render_as_string(hide_password=False)

    def url(self) -> str:
        """Start the server if needed and return the real URL (cached per process)."""
        if self._url is None:
            self._url = embedded_database_url(self.instance_path, self.database)
        return self._url

    def connect(self) -> t.Any:
        """A new psycopg2 connection to the database, starting the server first if needed."""
        import psycopg2
        from sqlalchemy.engine import make_url

        url = make_url(self.url())
        host = url.query.get("host")
        return psycopg2.connect(
            dbname=url.database,
            user=url.username,
            host=host if isinstance(host, str) else None,
            connect_timeout=10,
        )
