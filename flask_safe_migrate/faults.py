"""A fault-injecting TCP proxy for PostgreSQL, used by the test suite and the ``drill`` command.

Exactly-once migrations are only as good as their behaviour when the connection dies at the worst
moment: before a statement reaches the server, after it ran but before the reply arrived, or while
the ``COMMIT`` itself is in flight. Those moments cannot be produced reliably by killing backends,
so this proxy sits between the client and the server, understands just enough of the PostgreSQL
v3 wire protocol to see statement and ``COMMIT`` boundaries, and cuts the connection exactly there.

It is synchronous on the outside (an asyncio loop runs in a daemon thread) because its callers,
pytest tests and the ``drill`` CLI command, are synchronous. Standard library only, so it can ship
inside the package without adding dependencies.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import ssl
import struct
import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from types import TracebackType
from typing import Literal
from typing import get_args

__all__ = ["Cut", "FaultProxy", "ProxyEvent"]

When = Literal[
    "before_query",
    "after_query",
    "commit_in_flight",
    "commit_reply_lost",
    "after_client_messages",
    "after_server_messages",
]
How = Literal["fin", "rst"]
ServerSide = Literal["close", "keep"]

_WHENS = frozenset(get_args(When))
_QUERY_WHENS = frozenset({"before_query", "after_query", "commit_in_flight", "commit_reply_lost"})
_DROP_WHENS = frozenset({"before_query", "commit_in_flight"})
_COMMIT_RE = re.compile(r"^\s*(COMMIT|END)\b", re.IGNORECASE)
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_CHUNK = 65536
# Errors that mean "this one connection is gone"; they must never escape a connection task.
_CONN_ERRORS = (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, EOFError)


@dataclass(eq=False)
class Cut:
    """One armed fault. Identity equality, so two identical cuts are still two separate faults.

    ``nth`` counts matching events across all connections, so "the third COMMIT of the run" can be
    targeted; ``fired`` lets a test assert the fault really happened instead of passing vacuously.
    """

    when: When
    match: str | None = None
    nth: int = 1
    count: int = 0
    how: How = "fin"
    times: int = 1
    server_side: ServerSide = "close"
    fired: int = 0
    seen: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        # Validate eagerly: a typo in a drill must fail at arming time, not silently never fire.
        if self.when not in _WHENS:
            raise ValueError(f"unknown Cut.when {self.when!r}")
        if self.how not in ("fin", "rst"):
            raise ValueError(f"unknown Cut.how {self.how!r}")
        if self.server_side not in ("close", "keep"):
            raise ValueError(f"unknown Cut.server_side {self.server_side!r}")
        if self.nth < 1 or self.count < 0 or self.times < 0:
            raise ValueError("Cut.nth must be >= 1, Cut.count and Cut.times >= 0")
        if self.match is not None:
            re.compile(self.match)

    def _matches(self, text: str) -> bool:
        if self.when in ("commit_in_flight", "commit_reply_lost") and not _COMMIT_RE.search(text):
            return False
        return self.match is None or re.search(self.match, text, re.IGNORECASE) is not None

    def _due(self) -> bool:
        """Count one matching event; true when this event is the one (or one of those) to cut."""
        self.seen += 1
        if self.seen >= self.nth and (self.times == 0 or self.fired < self.times):
            self.fired += 1
            return True
        return False


@dataclass(frozen=True)
class ProxyEvent:
    """What happened on the proxy, so a failing drill can show where the cut actually landed."""

    kind: str  # connect, query, reply, cut, upstream_error, error, close
    conn: int
    detail: str
    ts: float


@dataclass(frozen=True)
class _Spec:
    how: How
    server_side: ServerSide
    reason: str


class _CutDone(Exception):
    """Unwinds a pump after it cut its connection."""


@dataclass(eq=False)
class _Conn:
    id: int
    creader: asyncio.StreamReader
    cwriter: asyncio.StreamWriter
    ureader: asyncio.StreamReader | None = None
    uwriter: asyncio.StreamWriter | None = None
    msgs: list[int] = field(default_factory=lambda: [0, 0])  # [client->server, server->client]
    counted: set[int] = field(default_factory=set)  # ids of message-count cuts already counted
    z_sent: int = 0  # forwarded messages that each earn one ReadyForQuery (Q, F, Sync)
    z_recv: int = 0
    pending_after: _Spec | None = None  # extended protocol: swallow after the next Sync
    drop_until_sync: _Spec | None = None  # extended protocol: drop everything, cut at Sync/Flush
    swallow: _Spec | None = None
    swallow_target: int = 0
    cut: bool = False
    keep_upstream: bool = False


class FaultProxy:
    """A TCP proxy in front of one PostgreSQL server that cuts connections on demand.

    With ``protocol=True`` it parses message boundaries (and terminates TLS itself, using
    ``client_tls``/``upstream_tls``) so cuts can target statements; with ``protocol=False`` it
    relays bytes blindly, which works through end-to-end TLS but only supports random cuts.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        protocol: bool = True,
        client_tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
    ) -> None:
        if not protocol and (client_tls is not None or upstream_tls is not None):
            raise ValueError("TLS termination needs protocol=True; blind mode relays TLS as is")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.protocol = protocol
        self.client_tls = client_tls
        self.upstream_tls = upstream_tls
        self._listen_port = listen_port
        self._port = 0
        self._lock = threading.Lock()
        self._cuts: list[Cut] = []
        self._events: list[ProxyEvent] = []
        self._rate = 0.0
        self._rng = random.Random()
        self._random_how: How = "fin"
        self._conns: dict[int, tuple[_Conn, asyncio.Task[None] | None]] = {}
        self._orphans: list[asyncio.StreamWriter] = []
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # ---------------------------------------------------------------- public, synchronous API

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``listen_port=0``)."""
        return self._port

    @property
    def events(self) -> list[ProxyEvent]:
        """A snapshot copy, so callers can iterate while connections keep appending."""
        with self._lock:
            return list(self._events)

    @property
    def connections_total(self) -> int:
        with self._lock:
            return self._next_id

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    @classmethod
    def for_url(cls, url: str, **options: t.Any) -> FaultProxy:
        """A proxy in front of the server ``url`` names (TCP host or unix-socket directory)."""
        from sqlalchemy.engine import make_url

        u = make_url(url)
        host = u.host or u.query.get("host") or "/var/run/postgresql"
        if isinstance(host, tuple):
            host = host[0]
        return cls(str(host), u.port or 5432, **options)

    def url(self, url: str) -> str:
        """Rewrite a SQLAlchemy/libpq URL so it points at this proxy instead of the server."""
        from sqlalchemy.engine import make_url  # lazy: keeps this module standard-library only

        u = make_url(url).difference_update_query(["host", "hostaddr", "port"])
        return u.set(host=self.listen_host, port=self.port).render_as_string(hide_password=False)

    def add_cut(self, cut: Cut) -> Cut:
        """Arm ``cut``; returns it so a test can check :attr:`Cut.fired` afterwards.

        :raises ValueError: the cut needs to see messages but this proxy relays
            bytes blindly (``protocol=False``): it would never fire.
        """
        if not self.protocol and not (
            cut.when in ("after_client_messages", "after_server_messages") and cut.count == 0
        ):
            raise ValueError(
                f"Cut({cut.when!r}, count={cut.count}) needs to see protocol messages, but this"
                " proxy relays bytes blindly (protocol=False), so it would never fire: use"
                " protocol=True (answering SSLRequest with 'N' or terminating TLS), or"
                " set_random() / a count=0 message cut for blind cuts through TLS"
            )
        with self._lock:
            self._cuts.append(cut)
        return cut

    def set_random(self, rate: float, *, seed: int | None = None, how: How = "fin") -> None:
        """Cut each relayed chunk with probability ``rate``; a seed makes a flaky run replayable."""
        if not 0.0 <= rate <= 1.0 or how not in ("fin", "rst"):
            raise ValueError("rate must be within [0, 1] and how 'fin' or 'rst'")
        with self._lock:
            self._rate, self._random_how = rate, how
            self._rng = random.Random(seed)

    def clear(self) -> None:
        """Disarm every cut and random cutting; open connections keep running untouched."""
        with self._lock:
            self._cuts.clear()
            self._rate = 0.0

    def start(self) -> FaultProxy:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="FaultProxy", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection (kept upstreams too) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if thread.is_alive() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            except (TimeoutError, RuntimeError):
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- loop thread

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen_host, self._listen_port, limit=4 * _CHUNK
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        with self._lock:
            conns = list(self._conns.values())
            orphans, self._orphans = self._orphans, []
        tasks = [task for _, task in conns if task is not None]
        for conn, _ in conns:
            for writer in (conn.cwriter, conn.uwriter):
                if writer is not None:
                    writer.transport.abort()
        for writer in orphans:
            writer.transport.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def _event(self, kind: str, conn: int, detail: str = "") -> None:
        with self._lock:
            self._events.append(ProxyEvent(kind, conn, detail[:200], time.time()))

    def _random_hit(self) -> bool:
        with self._lock:
            return self._rate > 0.0 and self._rng.random() < self._rate

    # ---------------------------------------------------------------- one connection

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        with self._lock:
            self._next_id += 1
            conn = _Conn(self._next_id, creader, cwriter)
            self._conns[conn.id] = (conn, asyncio.current_task())
        self._event("connect", conn.id, str(cwriter.get_extra_info("peername")))
        try:
            if self.protocol:
                await self._startup(conn)
            else:
                await self._connect_upstream(conn, b"")
            if conn.uwriter is not None:
                await self._relay(conn)
        except _CONN_ERRORS + (_CutDone, asyncio.CancelledError):
            pass  # cancelled only by stop(); ending normally keeps asyncio from logging it
        except Exception as exc:  # a bug must not kill the loop; record it for the test to see
            self._event("error", conn.id, repr(exc))
        finally:
            for writer in (cwriter, None if conn.keep_upstream else conn.uwriter):
                if writer is None:
                    continue
                if conn.cut:
                    writer.transport.abort()
                else:
                    writer.close()
            with self._lock:
                self._conns.pop(conn.id, None)
            self._event("close", conn.id, f"c2s={conn.msgs[0]} s2c={conn.msgs[1]}")

    async def _startup(self, conn: _Conn) -> None:
        """Handle SSL/GSS negotiation ourselves, then forward the real startup packet."""
        tls_done = False
        while True:
            (length,) = struct.unpack("!i", await conn.creader.readexactly(4))
            if not 8 <= length <= 10_000:
                return
            payload = await conn.creader.readexactly(length - 4)
            (code,) = struct.unpack("!i", payload[:4])
            if code == _SSL_REQUEST and self.client_tls is not None and not tls_done:
                conn.cwriter.write(b"S")
                await conn.cwriter.drain()
                await conn.cwriter.start_tls(self.client_tls)
                tls_done = True
            elif code in (_SSL_REQUEST, _GSSENC_REQUEST):
                conn.cwriter.write(b"N")  # libpq's default sslmode=prefer continues in plaintext
                await conn.cwriter.drain()
            else:
                break
        await self._connect_upstream(conn, struct.pack("!i", length) + payload)
        if code == _CANCEL_REQUEST:
            conn.msgs = [-1, -1]  # marks a cancel relay: no message-level faults apply

    async def _connect_upstream(self, conn: _Conn, startup: bytes) -> None:
        try:
            if self.upstream_host.startswith("/"):
                # A unix-socket server (e.g. the embedded Postgres): libpq's socket name.
                opening = asyncio.open_unix_connection(
                    f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}", limit=4 * _CHUNK
                )
            else:
                opening = asyncio.open_connection(
                    self.upstream_host, self.upstream_port, limit=4 * _CHUNK
                )
            reader, writer = await asyncio.wait_for(opening, timeout=10)
        except (OSError, TimeoutError) as exc:
            self._event("upstream_error", conn.id, repr(exc))
            return
        conn.ureader, conn.uwriter = reader, writer
        if self.upstream_tls is not None:
            writer.write(struct.pack("!ii", 8, _SSL_REQUEST))
            await writer.drain()
            if await reader.readexactly(1) != b"S":
                self._event("upstream_error", conn.id, "upstream refused SSLRequest")
                writer.transport.abort()
                conn.uwriter = None
                return
            await writer.start_tls(self.upstream_tls, server_hostname=self.upstream_host)
        writer.write(startup)
        await writer.drain()

    async def _relay(self, conn: _Conn) -> None:
        assert conn.ureader is not None and conn.uwriter is not None
        for from_client in (True, False):  # count=0 cuts fire before any typed message
            spec = self._count_cut(conn, from_client)
            if spec is not None:
                await self._cut(conn, spec)
        pumps = [
            asyncio.create_task(self._pump(conn, conn.creader, conn.uwriter, True)),
            asyncio.create_task(self._pump(conn, conn.ureader, conn.cwriter, False)),
        ]
        try:
            pending: set[asyncio.Task[None]] = set(pumps)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if conn.cut or any(t.cancelled() or t.exception() is not None for t in done):
                    break
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        from_client: bool,
    ) -> None:
        """Relay one direction; in protocol mode, run each whole typed message past the faults."""
        parse = self.protocol and conn.msgs[0] >= 0
        buf = bytearray()
        while chunk := await reader.read(_CHUNK):
            if self._random_hit():
                await self._cut(conn, _Spec(self._random_how, "close", "random"))
            if not parse:
                writer.write(chunk)
                await writer.drain()
                continue
            buf += chunk
            out = bytearray()
            pos = 0
            while len(buf) - pos >= 5:
                length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
                if length < 4:  # not the protocol we expect: stop interpreting, keep relaying
                    parse = False
                    out += buf[pos:]
                    pos = len(buf)
                    break
                if len(buf) - pos < 1 + length:
                    break
                msg = bytes(buf[pos : pos + 1 + length])
                pos += 1 + length
                forward, spec = (self._client_msg if from_client else self._server_msg)(conn, msg)
                if forward:
                    out += msg
                    conn.msgs[0 if from_client else 1] += 1
                    spec = spec or self._count_cut(conn, from_client)
                if spec is not None:
                    writer.write(out)
                    await writer.drain()
                    await self._cut(conn, spec)
            del buf[:pos]
            if out:
                writer.write(out)
                await writer.drain()
        # Half-close: pass the EOF on and keep relaying the other direction until it ends too.
        if buf:
            writer.write(buf)
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()

    def _client_msg(self, conn: _Conn, msg: bytes) -> tuple[bool, _Spec | None]:
        """Decide the fate of one client message: (forward it?, cut after/instead of it)."""
        mtype = msg[:1]
        if conn.drop_until_sync is not None:
            # An extended-protocol statement was dropped: swallow until the client waits.
            return False, conn.drop_until_sync if mtype in (b"S", b"H") else None
        if mtype in (b"Q", b"P"):
            body = msg[5:]
            if mtype == b"P":
                start = body.index(0) + 1
                text = body[start : body.index(0, start)].decode("utf-8", "replace")
            else:
                text = body.rstrip(b"\0").decode("utf-8", "replace")
            self._event("query", conn.id, text)
            cut = self._query_cut(text)
            if cut is not None:
                spec = _Spec(cut.how, cut.server_side, f"{cut.when}: {text[:100]}")
                if cut.when in _DROP_WHENS:
                    if mtype == b"Q":
                        return False, spec
                    conn.drop_until_sync = spec
                    return False, None
                if mtype == b"Q":
                    conn.swallow, conn.swallow_target = spec, conn.z_sent + 1
                else:
                    conn.pending_after = spec
        if mtype in (b"Q", b"F", b"S"):
            conn.z_sent += 1
            if mtype == b"S" and conn.pending_after is not None:
                conn.swallow, conn.swallow_target = conn.pending_after, conn.z_sent
                conn.pending_after = None
        return True, None

    def _server_msg(self, conn: _Conn, msg: bytes) -> tuple[bool, _Spec | None]:
        mtype = msg[:1]
        if mtype == b"Z":
            conn.z_recv += 1
        elif mtype == b"C":
            self._event("reply", conn.id, msg[5:].rstrip(b"\0").decode("utf-8", "replace"))
        if conn.swallow is not None:
            if mtype == b"Z" and conn.z_recv >= conn.swallow_target:
                return False, conn.swallow
            return False, None
        return True, None

    def _query_cut(self, text: str) -> Cut | None:
        """Count this statement for the matching query cuts, in order, until one is due."""
        due: Cut | None = None
        with self._lock:
            for cut in self._cuts:
                if cut.when in _QUERY_WHENS and cut._matches(text) and due is None:
                    if cut._due():
                        due = cut
        return due

    def _count_cut(self, conn: _Conn, from_client: bool) -> _Spec | None:
        if conn.msgs[0] < 0:
            return None
        when = "after_client_messages" if from_client else "after_server_messages"
        passed = conn.msgs[0 if from_client else 1]
        with self._lock:
            for cut in self._cuts:
                if cut.when == when and passed >= cut.count and id(cut) not in conn.counted:
                    conn.counted.add(id(cut))
                    if cut._due():
                        return _Spec(cut.how, cut.server_side, f"{when}: {passed}")
        return None

    async def _cut(self, conn: _Conn, spec: _Spec) -> None:
        """Cut the client side (FIN or RST) and, unless told to keep it, the upstream side."""
        conn.cut = True
        self._event("cut", conn.id, f"{spec.reason} how={spec.how} server={spec.server_side}")
        sock = conn.cwriter.get_extra_info("socket")
        if sock is not None:
            try:
                if spec.how == "rst":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    sock.shutdown(socket.SHUT_WR)  # plain FIN, no TLS close_notify: a real cut
            except OSError:
                pass
        conn.cwriter.transport.abort()
        if conn.uwriter is not None:
            if spec.server_side == "keep":
                conn.keep_upstream = True
                with self._lock:
                    self._orphans.append(conn.uwriter)
            else:
                conn.uwriter.transport.abort()
        raise _CutDone
