"""The fault-injecting proxy against a real PostgreSQL: every fault must land where it claims.

The executor's exactly-once guarantees are tested through this proxy, so a proxy that cuts at the
wrong boundary (or silently not at all) would make those tests lie. Each test therefore checks the
server-side truth from a direct connection, not only the error the client saw.
"""

from __future__ import annotations

import faulthandler
import shutil
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Literal

import psycopg2
import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.pool import NullPool

from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from tests.conftest import cannot_run
from tests.conftest import missing
from tests.infra.certs import make_self_signed


@pytest.fixture(autouse=True)
def _hang_guard() -> Iterator[None]:
    """A proxy that swallows a reply it should pass makes libpq wait forever: fail loudly."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _params(url: str, **extra: Any) -> dict[str, Any]:
    u = make_url(url)
    params: dict[str, Any] = {
        "host": u.host or u.query.get("host"),
        "port": u.port or 5432,
        "user": u.username,
        "dbname": u.database,
        "connect_timeout": 5,
    }
    if u.password:
        params["password"] = u.password
    params.update(extra)
    return params


def _connect(url: str, **extra: Any) -> Any:
    return psycopg2.connect(**_params(url, **extra))


def _direct_one(pg_url: str, sql: str, args: tuple[Any, ...] = ()) -> Any:
    conn = _connect(pg_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]
    finally:
        conn.close()


def _table_exists(pg_url: str, name: str) -> bool:
    return bool(_direct_one(pg_url, "SELECT to_regclass(%s) IS NOT NULL", (name,)))


def _name() -> str:
    return "fp_" + uuid.uuid4().hex[:10]


def _wait_for(pred: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[FaultProxy]:
    with FaultProxy.for_url(pg_url) as p:
        yield p


def _run(proxy: FaultProxy, pg_url: str, sql: str, *, autocommit: bool = True) -> Any:
    """One statement on a fresh connection through the proxy; returns the first value."""
    conn = _connect(proxy.url(pg_url))
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0] if cur.description else None
    finally:
        conn.close()


class RawPg:
    """A minimal v3 wire client for what psycopg2 cannot do: extended protocol, socket errors."""

    def __init__(self, url: str) -> None:
        p = _params(url)
        self.sock = socket.create_connection((p["host"], p["port"]), timeout=5)
        body = struct.pack("!i", 196608)
        body += b"user\0" + p["user"].encode() + b"\0database\0" + p["dbname"].encode() + b"\0\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        msgs = self.until_ready()
        if (b"R", struct.pack("!i", 0)) not in msgs:
            self.sock.close()
            cannot_run(
                "the raw wire client needs trust authentication, and the test server"
                f" ({p['host']}:{p['port']}) asks for a password: point"
                " SAFE_MIGRATE_TEST_DATABASE_URL at a server with trust for this user"
            )

    def send(self, mtype: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(mtype + struct.pack("!i", len(payload) + 4) + payload)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        msgs = []
        while True:
            header = self._exact(5)
            body = self._exact(struct.unpack("!i", header[1:])[0] - 4)
            msgs.append((header[:1], body))
            if header[:1] == b"Z":
                return msgs

    def extended(self, sql: str) -> list[tuple[bytes, bytes]]:
        self.send(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))
        self.send(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
        self.send(b"E", b"\0" + struct.pack("!i", 0))
        self.send(b"S")
        return self.until_ready()

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------- transparency


def test_transparent_relay_small_and_large(proxy: FaultProxy, pg_url: str) -> None:
    conn = _connect(proxy.url(pg_url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
            big = "x" * 1_000_000
            cur.execute("SELECT length(%s), md5(%s)", (big, big))  # a 2 MB query message
            assert cur.fetchone()[0] == 1_000_000
            cur.execute("SELECT repeat('ab', 500000)")  # a 1 MB DataRow
            assert cur.fetchone()[0] == "ab" * 500_000
        conn.commit()
    finally:
        conn.close()
    assert proxy.connections_total == 1
    assert any(e.kind == "query" and e.detail == "SELECT 1" for e in proxy.events)
    assert all(len(e.detail) <= 200 for e in proxy.events)


def test_url_rewrites_host_and_port_only() -> None:
    p = FaultProxy("db.example", 6543)
    p._port = 40000  # not started: only the rewriting is under test
    out = make_url(p.url("postgresql+psycopg2://u:p%40ss@db.example:6543/app?sslmode=disable"))
    assert (out.host, out.port, out.username, out.password) == ("127.0.0.1", 40000, "u", "p@ss")
    assert (out.database, out.drivername, dict(out.query)) == (
        "app",
        "postgresql+psycopg2",
        {"sslmode": "disable"},
    )
    assert "host" not in make_url(p.url("postgresql://u@/app?host=/run/pg")).query


# ----------------------------------------------------------------------------- statement cuts


def test_before_query_statement_never_runs(proxy: FaultProxy, pg_url: str) -> None:
    table = _name()
    cut = proxy.add_cut(Cut("before_query", match=rf"create\s+table\s+{table}"))
    assert _run(proxy, pg_url, "SELECT 7") == 7  # non-matching statements pass
    with pytest.raises(psycopg2.OperationalError):
        _run(proxy, pg_url, f"CREATE TABLE {table} (id int)")
    assert cut.fired == 1
    assert not _table_exists(pg_url, table)
    _run(proxy, pg_url, f"CREATE TABLE {table} (id int)")  # times=1: disarmed now
    assert _table_exists(pg_url, table)


def test_after_query_statement_ran_but_client_saw_error(proxy: FaultProxy, pg_url: str) -> None:
    table = _name()
    cut = proxy.add_cut(Cut("after_query", match=f"create table {table}"))
    with pytest.raises(psycopg2.OperationalError):
        _run(proxy, pg_url, f"CREATE TABLE {table} (id int)")
    assert cut.fired == 1
    assert _table_exists(pg_url, table)


def _insert_and_commit(proxy: FaultProxy, pg_url: str, table: str) -> None:
    engine = create_engine(proxy.url(pg_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
            conn.commit()
    finally:
        engine.dispose()


def test_commit_in_flight_rolls_back(proxy: FaultProxy, pg_url: str) -> None:
    table = _name()
    _direct_one(pg_url, f"CREATE TABLE {table} (id int); SELECT 1")
    cut = proxy.add_cut(Cut("commit_in_flight"))
    with pytest.raises(SAOperationalError):
        _insert_and_commit(proxy, pg_url, table)
    assert cut.fired == 1
    assert _direct_one(pg_url, f"SELECT count(*) FROM {table}") == 0


def test_commit_reply_lost_commits(proxy: FaultProxy, pg_url: str) -> None:
    table = _name()
    _direct_one(pg_url, f"CREATE TABLE {table} (id int); SELECT 1")
    cut = proxy.add_cut(Cut("commit_reply_lost", match="commit"))
    with pytest.raises(SAOperationalError):
        _insert_and_commit(proxy, pg_url, table)
    assert cut.fired == 1
    assert _direct_one(pg_url, f"SELECT count(*) FROM {table}") == 1
    assert [e.detail for e in proxy.events if e.kind == "reply"][-1] == "COMMIT"


def test_commit_cut_ignores_non_commit_statements(proxy: FaultProxy, pg_url: str) -> None:
    cut = proxy.add_cut(Cut("commit_in_flight", match="commit"))
    assert _run(proxy, pg_url, "SELECT 'commit'") == "commit"
    assert cut.fired == 0


def test_nth_counts_across_connections(proxy: FaultProxy, pg_url: str) -> None:
    cut = proxy.add_cut(Cut("before_query", match=r"select\s+42", nth=3))
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(_run(proxy, pg_url, "SELECT 42"))
        except psycopg2.OperationalError:
            outcomes.append("cut")
    assert outcomes == [42, 42, "cut", 42]
    assert (cut.fired, cut.seen) == (1, 4)


def test_times_zero_fires_forever(proxy: FaultProxy, pg_url: str) -> None:
    cut = proxy.add_cut(Cut("before_query", match="select 43", times=0))
    for _ in range(3):
        with pytest.raises(psycopg2.OperationalError):
            _run(proxy, pg_url, "SELECT 43")
    proxy.clear()
    assert _run(proxy, pg_url, "SELECT 43") == 43
    assert cut.fired == 3


def test_extended_protocol_cuts_at_sync(proxy: FaultProxy, pg_url: str) -> None:
    before, after = _name(), _name()
    proxy.add_cut(Cut("before_query", match=before))
    proxy.add_cut(Cut("after_query", match=after))
    raw = RawPg(proxy.url(pg_url))
    assert (b"C", b"SELECT 1\0") in raw.extended("SELECT 1")
    with pytest.raises(EOFError):
        raw.extended(f"CREATE TABLE {before} (id int)")
    raw.close()
    raw = RawPg(proxy.url(pg_url))
    with pytest.raises(EOFError):  # nothing of the reply may reach the client
        raw.extended(f"CREATE TABLE {after} (id int)")
    raw.close()
    assert not _table_exists(pg_url, before)
    assert _table_exists(pg_url, after)


# ----------------------------------------------------------------------------- how the cut looks


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_fin_is_eof_and_rst_is_reset(
    proxy: FaultProxy, pg_url: str, how: Literal["fin", "rst"]
) -> None:
    proxy.add_cut(Cut("before_query", match="select 44", how=how))
    raw = RawPg(proxy.url(pg_url))
    raw.send(b"Q", b"SELECT 44\0")
    expected: type[Exception] = ConnectionResetError if how == "rst" else EOFError
    with pytest.raises(expected):
        raw.until_ready()
    raw.close()
    # libpq reports both as "server closed the connection unexpectedly" without TLS.
    proxy.add_cut(Cut("before_query", match="select 45", how=how))
    with pytest.raises(psycopg2.OperationalError, match="closed the connection unexpectedly"):
        _run(proxy, pg_url, "SELECT 45")


def test_after_client_messages(proxy: FaultProxy, pg_url: str) -> None:
    cut = proxy.add_cut(Cut("after_client_messages", count=2))
    conn = _connect(proxy.url(pg_url))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # client message 1 (trust auth: no password message)
            with pytest.raises(psycopg2.OperationalError):
                cur.execute("SELECT 2")  # message 2 is forwarded, then the cut
    finally:
        conn.close()
    assert cut.fired == 1


def test_after_server_messages_exact_boundary(proxy: FaultProxy, pg_url: str) -> None:
    _connect(proxy.url(pg_url)).close()
    assert _wait_for(lambda: any(e.kind == "close" for e in proxy.events))
    close = next(e for e in proxy.events if e.kind == "close")
    startup = int(close.detail.split("s2c=")[1])  # AuthenticationOk ... ReadyForQuery
    assert startup >= 3
    proxy.add_cut(Cut("after_server_messages", count=startup - 1))
    with pytest.raises(psycopg2.OperationalError):
        _connect(proxy.url(pg_url))  # ReadyForQuery never arrives
    cut = proxy.add_cut(Cut("after_server_messages", count=startup))
    conn = _connect(proxy.url(pg_url))  # ReadyForQuery arrives, then the connection is cut
    try:
        with pytest.raises(psycopg2.OperationalError):
            conn.cursor().execute("SELECT 1")
    finally:
        conn.close()
    assert cut.fired == 1


# ----------------------------------------------------------------------------- server side


def _backends(pg_url: str, app: str) -> int:
    return int(
        _direct_one(
            pg_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        )
    )


@pytest.mark.parametrize("server_side", ["keep", "close"])
def test_server_side_keep_orphans_backend(
    proxy: FaultProxy, pg_url: str, server_side: Literal["keep", "close"]
) -> None:
    table, app = _name(), _name()
    _direct_one(pg_url, f"CREATE TABLE {table} (id int); SELECT 1")
    proxy.add_cut(Cut("before_query", match="select 46", server_side=server_side))
    conn = _connect(proxy.url(pg_url), application_name=app)
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(psycopg2.OperationalError):
                cur.execute("SELECT 46")
    finally:
        conn.close()
    if server_side == "close":
        assert _wait_for(lambda: _backends(pg_url, app) == 0)
        assert _direct_one(pg_url, f"SELECT count(*) FROM {table}") == 0
        return
    time.sleep(0.5)
    assert _backends(pg_url, app) == 1  # the orphan still runs, idle in transaction
    with pytest.raises(psycopg2.errors.LockNotAvailable):
        _direct_one(pg_url, f"SET lock_timeout = '200ms'; SELECT count(*) FROM {table}")
    proxy.stop()  # stop() closes kept upstreams too
    assert _wait_for(lambda: _backends(pg_url, app) == 0)


# ----------------------------------------------------------------------------- random, blind


def test_random_rate_one_cuts_all_and_zero_none(proxy: FaultProxy, pg_url: str) -> None:
    proxy.set_random(1.0, seed=1)
    for _ in range(4):
        with pytest.raises(psycopg2.OperationalError):
            _run(proxy, pg_url, "SELECT 1")
    assert sum(e.kind == "cut" for e in proxy.events) == 4
    proxy.set_random(0.0)
    assert [_run(proxy, pg_url, "SELECT 1") for _ in range(4)] == [1, 1, 1, 1]
    assert sum(e.kind == "cut" for e in proxy.events) == 4


def test_blind_mode_relays_and_cuts_randomly(pg_url: str) -> None:
    with FaultProxy.for_url(pg_url, protocol=False) as proxy:
        # Cuts that need to see messages are refused instead of never firing.
        for cut in (
            Cut("before_query"),
            Cut("commit_reply_lost"),
            Cut("after_server_messages", count=3),
        ):
            with pytest.raises(ValueError, match=r"protocol=False\), so it would never fire"):
                proxy.add_cut(cut)
        assert _run(proxy, pg_url, "SELECT repeat('z', 1000000)") == "z" * 1_000_000
        assert not any(e.kind == "query" for e in proxy.events)
        proxy.set_random(1.0, how="rst")
        with pytest.raises(psycopg2.OperationalError):
            _run(proxy, pg_url, "SELECT 1")
    with pytest.raises(ValueError):
        FaultProxy("h", 1, protocol=False, client_tls=ssl.create_default_context())


def test_blind_mode_count_zero_cut_fires_at_once(pg_url: str) -> None:
    # The one message cut that needs no parsing: before anything is relayed.
    with FaultProxy.for_url(pg_url, protocol=False) as proxy:
        cut = proxy.add_cut(Cut("after_client_messages", count=0))
        with pytest.raises(psycopg2.OperationalError):
            _run(proxy, pg_url, "SELECT 1")
        assert cut.fired == 1


# ----------------------------------------------------------------------------- robustness


def test_stop_closes_everything_and_is_idempotent(proxy: FaultProxy, pg_url: str) -> None:
    conn = _connect(proxy.url(pg_url))
    port = proxy.port
    try:
        assert _wait_for(lambda: proxy.active_connections == 1)
        loop_thread = proxy._thread
        assert loop_thread is not None
        proxy.stop()
        proxy.stop()
        assert not loop_thread.is_alive()  # stopped, not given up on after a join timeout
        assert proxy.active_connections == 0
        with pytest.raises(psycopg2.OperationalError):
            conn.cursor().execute("SELECT 1")
    finally:
        conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_upstream_refused_closes_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # bound, never listening: connections are refused
        with FaultProxy("127.0.0.1", dead_port) as proxy:
            url = f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/postgres"
            with pytest.raises(psycopg2.OperationalError) as info:
                psycopg2.connect(**_params(url, connect_timeout=30))
            # Closed by the proxy at once, not left to libpq's connect timeout.
            assert "server closed the connection unexpectedly" in str(info.value)
            assert any(e.kind == "upstream_error" for e in proxy.events)
            assert _wait_for(lambda: proxy.active_connections == 0)


def test_half_closed_client_still_gets_its_reply(proxy: FaultProxy, pg_url: str) -> None:
    raw = RawPg(proxy.url(pg_url))
    raw.send(b"Q", b"SELECT 47\0")
    raw.sock.shutdown(socket.SHUT_WR)
    assert (b"C", b"SELECT 1\0") in raw.until_ready()
    assert raw.sock.recv(1) == b""  # the server saw our EOF and left; the proxy passed it on
    raw.close()
    assert _wait_for(lambda: proxy.active_connections == 0)


def test_twelve_concurrent_clients(proxy: FaultProxy, pg_url: str) -> None:
    barrier = threading.Barrier(12)
    results: list[Any] = [None] * 12

    def worker(i: int) -> None:
        try:
            conn = _connect(proxy.url(pg_url))
            try:
                barrier.wait(timeout=10)
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.3), %s, repeat('q', 100000)", (i,))
                    row = cur.fetchone()
                    results[i] = (row[1], len(row[2]))
            finally:
                conn.close()
        except Exception as exc:  # reported through results
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    # Every client passed the barrier while connected: twelve relayed
    # connections were open side by side (a serial relay would break it).
    assert results == [(i, 100000) for i in range(12)]
    assert proxy.connections_total == 12
    assert _wait_for(lambda: proxy.active_connections == 0)


# ----------------------------------------------------------------------------- TLS


def test_client_tls_termination_and_cut_messages(pg_url: str, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        missing("openssl")
    cert, key = make_self_signed(str(tmp_path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with FaultProxy.for_url(pg_url, client_tls=ctx) as proxy:
        conn = _connect(proxy.url(pg_url), sslmode="require")
        try:
            assert conn.info.ssl_in_use
            with conn.cursor() as cur:
                cur.execute("SELECT repeat('t', 1000000)")
                assert len(cur.fetchone()[0]) == 1_000_000
        finally:
            conn.close()
        messages = {}
        for how in ("fin", "rst"):
            proxy.add_cut(Cut("before_query", match="select 48", how=how))
            conn = _connect(proxy.url(pg_url), sslmode="require")
            try:
                with pytest.raises(psycopg2.OperationalError) as err:
                    conn.cursor().execute("SELECT 48")
                messages[how] = str(err.value)
            finally:
                conn.close()
        # upstream_tls: a second, plaintext-facing proxy that talks TLS to the first one
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        with FaultProxy("127.0.0.1", proxy.port, upstream_tls=client_ctx) as front:
            assert _run(front, pg_url, "SELECT 49") == 49
        assert sum(e.kind == "connect" for e in proxy.events) == 4
    assert "SSL SYSCALL error: EOF detected" in messages["fin"]
    assert "EOF detected" not in messages["rst"]
    assert "closed the connection unexpectedly" in messages["rst"]
