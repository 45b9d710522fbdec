"""Find or start the PostgreSQL servers the tests talk to.

Order for the everyday server: ``SAFE_MIGRATE_TEST_DATABASE_URL`` if set, else
the server at 127.0.0.1:5432 if one answers, else an embedded throwaway server
from the ``pgserver`` package (unix socket only, no TLS). Tests that need TLS
or PgBouncer use :class:`TlsCluster`, a private cluster with TLS and password
authentication started from the machine's own Postgres binaries.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
import uuid
import warnings

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .certs import make_self_signed
from .procs import as_service_user
from .procs import free_port
from .procs import give_to_service_user
from .procs import run
from .procs import which_postgres_bin

ENV_URL = "SAFE_MIGRATE_TEST_DATABASE_URL"
APP_USER = "sm_app"
#: A role with a valid password that pg_hba.conf rejects on the TLS cluster.
REJECTED_USER = "sm_rejected"
DRIVERS = ("psycopg2", "psycopg")


def with_driver(url: str, driver: str) -> str:
    """``url`` with its driver replaced (``psycopg2`` or ``psycopg``), password kept."""
    return (
        make_url(url).set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)
    )


@dataclasses.dataclass
class Server:
    """A server on which tests may create and drop databases."""

    admin_url: str  # superuser, SQLAlchemy form
    kind: str  # env | local | embedded | cluster
    tls: bool = False
    #: the embedded server's pgserver handle (``cleanup_mode="delete"``), closed by :meth:`close`
    handle: t.Any = None

    def close(self) -> None:
        """Stop a throwaway embedded server and delete its data; a no-op for the others."""
        if self.handle is not None:
            self.handle.cleanup()
            self.handle = None

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create_database(self, owner: str | None = None, prefix: str = "sm_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        owner_sql = f' OWNER "{owner}"' if owner else ""
        self.admin(f'CREATE DATABASE "{name}"{owner_sql}')
        return name

    def admin(self, *statements: str) -> None:
        """Run statements as the superuser, in autocommit (roles, grants, databases)."""
        engine = sa.create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _usable(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
        return True
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def find_default_server(embedded_root: str) -> Server:
    """The everyday server, in the documented order of preference.

    An embedded server is a throwaway: its data lives in a new directory
    under ``embedded_root`` and :meth:`Server.close` deletes it.
    """
    env = os.environ.get(ENV_URL)
    if env == "embedded":  # force the fallback, to test it on a machine that has a server
        env = None
    elif env:
        url = make_url(env)
        if url.drivername in ("postgres", "postgresql"):
            url = url.set(drivername="postgresql+psycopg2")
        return Server(url.render_as_string(hide_password=False), "env")
    local = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    if os.environ.get(ENV_URL) != "embedded" and _answers("127.0.0.1", 5432) and _usable(local):
        return Server(local, "local")
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        import pgserver  # the `embedded` extra; only imported when no server answers

    pgdata = os.path.join(tempfile.mkdtemp(prefix="sm-embedded-pg-", dir=embedded_root), "pgdata")
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    uri = make_url(server.get_uri()).set(drivername="postgresql+psycopg2")
    return Server(uri.render_as_string(hide_password=False), "embedded", handle=server)


class MissingBinary(Exception):
    """A server binary this fixture needs is not installed."""


class TlsCluster:
    """A private Postgres cluster with TLS and SCRAM passwords, on its own port.

    Started with the machine's own ``initdb``/``pg_ctl`` as the ``postgres``
    user. ``restart()`` lets reliability tests bounce the server mid-run.
    """

    def __init__(self) -> None:
        self.initdb = which_postgres_bin("initdb")
        self.pg_ctl = which_postgres_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise MissingBinary("initdb/pg_ctl")
        if shutil.which("openssl") is None:
            raise MissingBinary("openssl")
        self.root = tempfile.mkdtemp(prefix="sm-cluster-")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.password = "sm-" + uuid.uuid4().hex
        self.cert, self.key = make_self_signed(self.root)

    def start(self) -> None:
        give_to_service_user(self.root)
        run(
            as_service_user(
                [
                    self.initdb,
                    "-D",
                    self.data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        hba = (
            "local all all trust\n"
            f"host all {REJECTED_USER} 127.0.0.1/32 reject\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as fh:
            fh.write(hba)
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as fh:
            fh.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "ssl = on\n"
                f"ssl_cert_file = '{self.cert}'\n"
                f"ssl_key_file = '{self.key}'\n"
                "max_connections = 200\n"
                "fsync = off\n"
                "full_page_writes = off\n"
                "shared_buffers = '32MB'\n"
            )
        give_to_service_user(self.root)
        self._pg_ctl("start", "-w", "-t", "30", "-l", os.path.join(self.root, "server.log"))
        self.server.admin(
            f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD '{self.password}'",
            f"CREATE ROLE {REJECTED_USER} LOGIN PASSWORD '{self.password}'",
        )

    def _pg_ctl(self, *args: str) -> None:
        run(as_service_user([self.pg_ctl, "-D", self.data, *args]))

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode, "-w")

    def begin_smart_shutdown(self) -> None:
        """``pg_ctl stop -m smart`` without waiting: while sessions remain, the server
        refuses new connections with "the database system is shutting down" (57P03)."""
        self._pg_ctl("stop", "-m", "smart", "-W")

    def start_again(self) -> None:
        """Wait for a stop begun earlier to finish, then start the server."""
        deadline = time.monotonic() + 30
        while os.path.exists(os.path.join(self.data, "postmaster.pid")):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not stop")
            time.sleep(0.05)
        self._pg_ctl("start", "-w", "-t", "30", "-l", os.path.join(self.root, "server.log"))

    def restart(self, down_for: float = 0.0) -> None:
        self._pg_ctl("stop", "-m", "immediate", "-w")
        time.sleep(down_for)
        self._pg_ctl("start", "-w", "-t", "30", "-l", os.path.join(self.root, "server.log"))

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def app_url(self, database: str, *, sslmode: str = "require") -> str:
        return (
            f"postgresql+psycopg2://{APP_USER}:{self.password}@127.0.0.1:{self.port}/{database}"
            f"?sslmode={sslmode}"
        )

    @property
    def server(self) -> Server:
        return Server(self.admin_url, "cluster", tls=True)
