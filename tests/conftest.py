"""Fixtures: real Postgres (everyday server), a private TLS cluster, PgBouncer.

``pg_url`` gives each test a fresh, empty database and drops it afterwards.
``tls_cluster`` and ``pgbouncer`` are started once per session, only when a
test asks for them; ``pgb_url`` is a fresh database reached through PgBouncer
(transaction mode, TLS) as a password-authenticated role.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import typing as t
import uuid

import pytest
import sqlalchemy as sa

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


def cannot_run(reason: str) -> t.NoReturn:
    """Skip a test this machine cannot run, or fail when CI demands every real part.

    The one way to skip in this suite: under ``SAFE_MIGRATE_REQUIRE_ALL=1``
    (set by ``.ci/run``) a skip never hides a missing part.
    """
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (SAFE_MIGRATE_REQUIRE_ALL=1 turns this skip into a failure)")
    pytest.skip(reason, allow_module_level=True)  # also from a test module's top level


def missing(what: str) -> t.NoReturn:
    """Skip for a missing binary (saying how to install it), or fail under REQUIRE_ALL."""
    cannot_run(f"{what} is not installed: {INSTALL_HINTS.get(what, 'install it')}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"safe-migrate: SAFE_MIGRATE_REQUIRE_ALL={'1' if REQUIRE_ALL else '0'}"


@pytest.fixture(scope="session")
def pg_server() -> t.Iterator[Server]:
    """The everyday server; an embedded fallback is this run's own and deleted at the end."""
    root = tempfile.mkdtemp(prefix="sm-tests-")
    server = find_default_server(root)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Server) -> t.Iterator[str]:
    """A fresh, empty database on the everyday server (SQLAlchemy URL string)."""
    name = pg_server.create_database()
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.drop_database(name)


def _private_cluster() -> t.Iterator[TlsCluster]:
    """A started private TLS cluster, destroyed afterwards (skip or fail without initdb)."""
    try:
        cluster = TlsCluster()
    except MissingBinary as exc:
        missing(str(exc))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def tls_cluster() -> t.Iterator[TlsCluster]:
    yield from _private_cluster()


@pytest.fixture(scope="session")
def scratch_cluster() -> t.Iterator[TlsCluster]:
    """A second private cluster that tests may shut down and start again."""
    yield from _private_cluster()


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


@pytest.fixture
def refusing(pg_server: Server, pg_url: str) -> t.Iterator[dict[str, str]]:
    """Roles and a database on the everyday server that refuse a login for good or for now."""
    suffix = uuid.uuid4().hex[:8]
    password = f"sm-pw-{suffix}"  # for servers with password auth; trust ignores it
    database = sa.engine.make_url(pg_url).database
    roles = {name: f"sm_{name}_{suffix}" for name in ("nologin", "plain", "limited")}
    pg_server.admin(
        f"CREATE ROLE \"{roles['nologin']}\" NOLOGIN PASSWORD '{password}'",
        f"CREATE ROLE \"{roles['plain']}\" LOGIN PASSWORD '{password}'",
        f"CREATE ROLE \"{roles['limited']}\" LOGIN CONNECTION LIMIT 0 PASSWORD '{password}'",
        f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC',
    )
    url = sa.engine.make_url(pg_url)
    as_role = {
        "NOLOGIN role": url.set(username=roles["nologin"], password=password),
        "REVOKE CONNECT": url.set(username=roles["plain"], password=password),
        "unknown database": url.set(database=f"sm_missing_{suffix}"),
        "CONNECTION LIMIT 0": url.set(
            username=roles["limited"], password=password, database="postgres"
        ),
    }
    try:
        yield {k: v.render_as_string(hide_password=False) for k, v in as_role.items()}
    finally:
        pg_server.admin(*(f'DROP ROLE IF EXISTS "{role}"' for role in roles.values()))
