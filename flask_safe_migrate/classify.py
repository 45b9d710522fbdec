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
"""

from __future__ import annotations

import enum
import re


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


# Errors that look like connection trouble but will fail the same way every
# time; retrying them also trips Supavisor's auth circuit breaker.
_PERMANENT = re.compile(
    "|".join(
        [
            r"password authentication failed",
            r"SASL authentication failed",
            r"no pg_hba\.conf entry",
            r"database \S+ does not exist",
            r"role \S+ does not exist",
            r"no such database",
            r"no such user",
            r"tenant or user not found",
            r"tenant/user \S+ not found",
            r"unsupported startup parameter",
            r"unsupported options startup parameter",
            r"is disabled",
            r"SSL required",
            r"SSL connection is required",
            r"server does not support SSL",
            r"over a non-SSL connection",
            r"SSL is not enabled on the server",
            r"\((?:ENOTFOUND|EWRONGPASSWORD|EJITUNAUTHORIZED|EBANNED|EADDRNOTALLOWED|"
            r"EINVALIDUSERINFO|ENOIDENTIFIER|ESSLREQUIRED)\)",
        ]
    ),
    re.IGNORECASE,
)

# Connection lost (libpq, SQLAlchemy's list, poolers' disconnect reasons).
_DISCONNECT = re.compile(
    "|".join(
        [
            r"SSL connection has been closed unexpectedly",
            r"SSL SYSCALL error",
            r"SSL error: decryption failed or bad record mac",
            r"EOF detected",
            r"server closed the connection unexpectedly",
            r"losed the connection unexpectedly",
            r"terminating connection",
            r"connection not open",
            r"connection already closed",
            r"could not receive data from server",
            r"could not send data to server",
            r"consuming input failed",
            r"server conn crashed\?",
            r"client_idle_timeout",
            r"server shutting down",
            r"DbHandler exited",
            r"connection to database closed",
            r"\(EDBHANDLEREXITED\)",
            r"connection reset by peer",
            r"broken pipe",
            r"the connection is closed",
            r"connection is lost",
        ]
    ),
    re.IGNORECASE,
)

# The server or pooler is there but not taking us right now.
_UNAVAILABLE = re.compile(
    "|".join(
        [
            r"could not connect to server",
            r"connection refused",
            r"connection to server at .* failed",
            r"could not translate host name",
            r"timeout expired",
            r"the database system is (?:starting up|shutting down|in recovery mode|not yet accepting)",
            r"sorry, too many clients already",
            r"remaining connection slots are reserved",
            r"too many connections for role",
            r"query_wait_timeout",
            r"no more connections allowed",
            r"client connections exceeded",
            r"server login retry",
            r"server_login_retry",
            r"server login has been failing",
            r"pgbouncer cannot connect to server",
            r"client_login_timeout",
            r"max client connections reached",
            r"max clients reached",
            r"unable to check out connection",
            r"circuit breaker",
            r"database is locked",  # SQLite: another writer holds the file
            r"database table is locked",
        ]
    ),
    re.IGNORECASE,
)

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
    if code == "08P01":
        # PgBouncer sends all its own errors as 08P01: login refusals
        # (bad password, unknown database) must not be retried, so only an
        # allow-list of its messages counts.
        if _UNAVAILABLE.search(text):
            return Transience.UNAVAILABLE
        if _DISCONNECT.search(text):
            return Transience.DISCONNECT
        return None
    if code is not None and code.startswith("08"):
        return Transience.DISCONNECT
    if getattr(exc, "connection_invalidated", False):
        return Transience.DISCONNECT
    if code is not None and not code.startswith(("57", "53", "XX")):
        # A real SQLSTATE from the server (42P07, 23505, 25001...) is an
        # answer about the statement, not about the connection.
        return None
    if _DISCONNECT.search(text):
        return Transience.DISCONNECT
    if _UNAVAILABLE.search(text):
        return Transience.UNAVAILABLE
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt (tenacity ``retry_if_exception`` predicate)."""
    return classify(exc) is not None
