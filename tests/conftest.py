"""Fixtures: real Postgres (everyday server), a private TLS cluster, PgBouncer.

``pg_url`` gives each test a fresh, empty database and drops it afterwards.
``tls_cluster`` and ``pgbouncer`` are started once per session, only when a
test asks for them; ``pgb_url`` is a fresh database reached through PgBouncer
(transaction mode, TLS) as a password-authenticated role.
"""

from __future__ import annotations

import os
import tempfile
import typing as t

import pytest

from tests.infra.pgbouncer import PgBouncer
from tests.infra.postgres import APP_USER
from tests.infra.postgres import MissingBinary
from tests.infra.postgres import Server
from tests.infra.postgres import TlsCluster
from tests.infra.postgres import find_default_server

REQUIRE_ALL = os.environ.get("SAFE_MIGRATE_REQUIRE_ALL") == "1"

INSTALL_HINTS = {
    "pgbouncer": "install it with `apt-get install -y pgbouncer` (Debian/Ubuntu)",
    "initdb/pg_ctl": "install the PostgreSQL server binaries (`apt-get install -y postgresql`)",
    "openssl": "install the openssl CLI (`apt-get install -y openssl`)",
}


def missing(what: str) -> t.NoReturn:
    """Skip for a missing binary, or fail when CI demands every real part."""
    reason = f"{what} is not installed: {INSTALL_HINTS.get(what, 'install it')}"
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (SAFE_MIGRATE_REQUIRE_ALL=1 turns this skip into a failure)")
    pytest.skip(reason)


def pytest_report_header(config: pytest.Config) -> str:
    return f"safe-migrate: SAFE_MIGRATE_REQUIRE_ALL={'1' if REQUIRE_ALL else '0'}"


@pytest.fixture(scope="session")
def pg_server() -> t.Iterator[Server]:
    embedded_dir = os.path.join(tempfile.gettempdir(), f"sm-embedded-pg-{os.getuid()}")
    yield find_default_server(embedded_dir)


@pytest.fixture
def pg_url(pg_server: Server) -> t.Iterator[str]:
    """A fresh, empty database on the everyday server (SQLAlchemy URL string)."""
    name = pg_server.create_database()
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def tls_cluster() -> t.Iterator[TlsCluster]:
    try:
        cluster = TlsCluster()
    except MissingBinary as exc:
        missing(str(exc))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def tls_db(tls_cluster: TlsCluster) -> t.Iterator[str]:
    """A fresh database on the TLS cluster, owned by the app role; yields its name."""
    name = tls_cluster.server.create_database(owner=APP_USER)
    try:
        yield name
    finally:
        tls_cluster.server.drop_database(name)


@pytest.fixture(scope="session")
def pgbouncer(tls_cluster: TlsCluster) -> t.Iterator[PgBouncer]:
    try:
        bouncer = PgBouncer(tls_cluster)
    except MissingBinary as exc:
        missing(str(exc))
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.destroy()


@pytest.fixture
def pgb_url(pgbouncer: PgBouncer, tls_db: str) -> str:
    """A fresh database reached through PgBouncer (transaction mode) over TLS."""
    return pgbouncer.app_url(tls_db)
