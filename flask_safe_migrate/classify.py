"""Decide whether a database error is worth another attempt.

One pure function, :func:`classify`, so the table can be tested on its own.
It looks at the SQLSTATE first and the message second, because what the
client sees is often not what the server or pooler sent: psycopg2 reports a
PgBouncer ``query_wait_timeout`` or a ``pg_terminate_backend`` as just
"server closed the connection unexpectedly" with no SQLSTATE, and connect
errors never carry one. Messages are matched anywhere in the text (the
pooler's reason is sometimes on the second line).

Anything not recognised as transient is permanent: syntax errors,
constraint violations, missing relations and bad passwords fail at once.
So are connect-time refusals (a ``NOLOGIN`` role, ``REVOKE CONNECT``, a
``pg_hba.conf`` reject, a certificate that does not verify): only the causes
on the allow-lists below (refused, timed out, starting up, too many clients,
the pooler's own transient reasons) earn a retry.
"""

from __future__ import annotations

import enum
import re
import typing as t


class Transience(enum.Enum):
    """How a transient error should be retried."""

    #: The connection is gone: invalidate it and dispose the pool, then reconnect.
    DISCONNECT = "disconnect"
    #: The server refused for now (busy, starting, too many clients): back off, reconnect.
    UNAVAILABLE = "unavailable"
    #: The transaction lost a race (serialization, deadlock): rerun it.
    CONFLICT = "conflict"
    #: ``lock_timeout`` expired (55P03): rerun, ideally with a growing timeout.
    LOCK_TIMEOUT = "lock_timeout"


class _Pattern:
    """Case-insensitive alternatives, compiled into one regex on first use.

    This module is imported when an app boots, but it classifies only after
    an error: compiling the patterns then, not at import, keeps about 1.5 ms
    off the boot path.
    """

    __slots__ = ("_compiled", "_source")

    def __init__(self, *alternatives: str) -> None:
        self._source = "|".join(alternatives)
        self._compiled: re.Pattern[str] | None = None

    def _regex(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self._source, re.IGNORECASE)
        return self._compiled

    def search(self, text: str) -> re.Match[str] | None:
        return self._regex().search(text)

    def finditer(self, text: str) -> t.Iterator[re.Match[str]]:
        return self._regex().finditer(text)


# Errors that look like connection trouble but will fail the same way every
# time; retrying them also trips Supavisor's auth circuit breaker. Checked
# before every transient pattern.
_PERMANENT = _Pattern(
    r"password authentication failed",
    r"SASL authentication failed",
    r"fe_sendauth: no password supplied",
    r"no pg_hba\.conf entry",
    r"pg_hba\.conf rejects connection",
    r"is not permitted to log in",
    r"permission denied for database",
    r"database \S+ does not exist",
    r"role \S+ does not exist",
    r"no such database",
    r"no such user",
    r"tenant or user not found",
    r"tenant/user \S+ not found",
    r"unsupported startup parameter",
    r"unsupported options startup parameter",
    r"is disabled",
    r"certificate verify failed",
    r"certificate file",  # sslrootcert/sslcert missing or unreadable
    r"private key file",
    r"SSL required",
    r"SSL connection is required",
    r"server does not support SSL",
    r"over a non-SSL connection",
    r"SSL is not enabled on the server",
    r"\((?:ENOTFOUND|EWRONGPASSWORD|EJITUNAUTHORIZED|EBANNED|EADDRNOTALLOWED|"
    r"EINVALIDUSERINFO|ENOIDENTIFIER|ESSLREQUIRED)\)",
)

# Connection lost (libpq, SQLAlchemy's list, poolers' disconnect reasons).
_DISCONNECT = _Pattern(
    r"SSL connection has been closed unexpectedly",
    r"SSL SYSCALL error",
    r"SSL error: decryption failed or bad record mac",
    r"EOF detected",
    r"unexpected eof while reading",  # psycopg 3 / OpenSSL 3 on a cut TLS link
    r"server closed the connection unexpectedly",
    r"losed the connection unexpectedly",
    r"terminating connection",
    r"connection not open",
    r"connection already closed",
    r"could not receive data from server",
    r"could not send data to server",
    r"consuming input failed",
    r"DbHandler exited",
    r"connection to database closed",
    r"\(EDBHANDLEREXITED\)",
    r"connection reset by peer",
    r"broken pipe",
    r"the connection is closed",
    r"connection is lost",
)

# The server or pooler is there (or will be shortly) but not taking us now.
_UNAVAILABLE = _Pattern(
    r"could not connect",
    r"connection refused",
    r"timeout expired",
    r"connection timed out",
    r"no route to host",
    r"network is unreachable",
    r"the database system is (?:starting up|shutting down|in recovery mode|not yet accepting)",
    r"sorry, too many clients already",
    r"remaining connection slots are reserved",
    r"too many connections for (?:role|database)",
    r"client connections exceeded",
    r"max client connections reached",
    r"max clients reached",
    r"unable to check out connection",
    r"circuit breaker",
    r"database is locked",  # SQLite: another writer holds the file
    r"database table is locked",
)

# A host name that does not resolve. Transient by policy, for both drivers:
# on container platforms (Docker Compose, Fly.io ``.internal``, Render) the
# database's or pooler's name stops resolving while it restarts, which is
# exactly the outage this package rides out. A typo in the host costs the
# retry budget, and the final error names the host.
_DNS = _Pattern(
    r"could not translate host name",
    r"failed to resolve host",
    r"temporary failure in name resolution",
)

# PgBouncer sends every error of its own as SQLSTATE 08P01 and closes the
# client connection: its login refusals (bad password, unknown database) as
# well as the reasons below, which are about the pooler or the server behind
# it, not about us. Only these are retried. Texts from PgBouncer's source
# (janitor.c, objects.c, server.c, client.c).
_PGBOUNCER_DISCONNECT = _Pattern(
    r"database removed",  # KILL <db> on the admin console, or db dropped from config
    r"server conn crashed\?",  # the server connection died mid-transaction
    r"client_idle_timeout",
    r"server shutting down",  # SHUTDOWN WAIT_FOR_SERVERS
    r"suspend_timeout",  # online restart (SUSPEND) took too long
)
_PGBOUNCER_UNAVAILABLE = _Pattern(
    r"server login has been failing",  # ... try again later (server_login_retry)
    r"server_login_retry",
    r"query_wait_timeout",  # no server connection free in time
    r"pgbouncer cannot connect to server",
    r"no more connections allowed",  # max_client_conn / max_db_connections
    r"client_login_timeout",  # ... (server down)
)

# libpq's connect-time failure: ``connection to server at "h", port p failed:
# <cause>`` (one per host tried), ``connection to server on socket "..."
# failed: <cause>``, or before libpq 14 ``could not connect to server: <cause>``.
# Only the cause is classified: a refusal by the server (NOLOGIN, REVOKE
# CONNECT, pg_hba.conf, a bad certificate) is permanent unless allow-listed.
# Connect-time errors carry no SQLSTATE in either driver, not even 53300 or
# 57P03, so the allow-list works on the text.
_CONNECT_FAILED = _Pattern(
    r"connection to server (?:at|on socket) .*? failed: ",
    r"could not connect to server: ",
)


def _connect_causes(text: str) -> list[str]:
    """The cause of each failed connection attempt in a libpq connect error."""
    matches = list(_CONNECT_FAILED.finditer(text))
    return [
        text[match.end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)]
        for i, match in enumerate(matches)
    ]


def _classify_connect_cause(cause: str) -> Transience | None:
    if _PERMANENT.search(cause):
        return None
    if cause.startswith("No such file or directory"):
        return Transience.UNAVAILABLE  # the server's unix socket is gone: it is down
    if _DISCONNECT.search(cause) or _PGBOUNCER_DISCONNECT.search(cause):
        return Transience.UNAVAILABLE  # the login was cut off: nothing to dispose yet
    if _UNAVAILABLE.search(cause) or _PGBOUNCER_UNAVAILABLE.search(cause) or _DNS.search(cause):
        return Transience.UNAVAILABLE
    return None


_SQLSTATE_TRANSIENCE: dict[str, Transience] = {
    "57P01": Transience.DISCONNECT,  # admin_shutdown (pg_terminate_backend, Neon suspend)
    "57P02": Transience.DISCONNECT,  # crash_shutdown
    "57P03": Transience.UNAVAILABLE,  # cannot_connect_now
    "53300": Transience.UNAVAILABLE,  # too_many_connections
    "40001": Transience.CONFLICT,  # serialization_failure
    "40P01": Transience.CONFLICT,  # deadlock_detected
    "55P03": Transience.LOCK_TIMEOUT,  # lock_not_available
}


def dbapi_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside a SQLAlchemy wrapper (or ``exc`` itself)."""
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 or psycopg 3 error, if the server sent one."""
    orig = dbapi_error(exc)
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) and code else None


def error_text(exc: BaseException) -> str:
    """The driver's message, all lines (pooler reasons can be on line 2)."""
    return str(dbapi_error(exc))


def first_line(exc: BaseException) -> str:
    """The first non-empty line of the driver's message, for log lines."""
    for line in error_text(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database driver (or SQLAlchemy's wrapper of one).

    Only such errors are ever retried; a bug in our own code (TypeError...)
    or in a migration's Python must surface at once.
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError):
        return True
    module = type(exc).__module__
    return module.startswith(("psycopg2", "psycopg", "sqlite3"))


def classify(exc: BaseException) -> Transience | None:
    """Return how to retry ``exc``, or ``None`` when it is permanent."""
    if not is_database_error(exc):
        return None
    code = sqlstate(exc)
    text = error_text(exc)

    if code is not None and code in _SQLSTATE_TRANSIENCE:
        return _SQLSTATE_TRANSIENCE[code]
    if _PERMANENT.search(text):
        return None
    causes = _connect_causes(text)
    if causes:
        # Retry when one of the hosts tried may take us later; a host that
        # refused us for good has already been caught by _PERMANENT above.
        kinds = [_classify_connect_cause(cause) for cause in causes]
        return Transience.UNAVAILABLE if any(kinds) else None
    if _DNS.search(text):
        return Transience.UNAVAILABLE
    if code == "08P01":
        if _PGBOUNCER_DISCONNECT.search(text):
            return Transience.DISCONNECT
        if _PGBOUNCER_UNAVAILABLE.search(text):
            return Transience.UNAVAILABLE
        return None
    if code is not None and code.startswith("08"):
        return Transience.DISCONNECT
    if getattr(exc, "connection_invalidated", False):
        return Transience.DISCONNECT
    if code is not None and not code.startswith(("57", "53", "XX")):
        # A real SQLSTATE from the server (42P07, 23505, 25001...) is an
        # answer about the statement, not about the connection.
        return None
    if _DISCONNECT.search(text) or _PGBOUNCER_DISCONNECT.search(text):
        return Transience.DISCONNECT
    if _UNAVAILABLE.search(text) or _PGBOUNCER_UNAVAILABLE.search(text):
        return Transience.UNAVAILABLE
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt (tenacity ``retry_if_exception`` predicate)."""
    return classify(exc) is not None
