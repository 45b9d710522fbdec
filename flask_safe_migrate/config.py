"""The ``SAFE_MIGRATE_*`` config keys: defaults, validation, and the settings object.

Keys are read once, in ``init_app``; later changes to ``app.config`` are not
seen (as with Flask-SQLAlchemy). A bad value raises :class:`ConfigError`
naming the key and what is allowed, so a typo fails at start-up, not in the
middle of a deploy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t

from .durations import ALLOWED as DURATION_FORMS
from .durations import parse_duration_ms
from .errors import ConfigError
from .executor import RetryPolicy

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL

PREFIX = "SAFE_MIGRATE_"

#: Every key with its default. ``DATABASE_URI`` falls back to the app's engine URL.
DEFAULTS: dict[str, t.Any] = {
    "DIRECTORY": "migrations",
    "DATABASE_URI": None,
    "AUTO_MIGRATE": False,
    "AUTO_MIGRATE_ON_ERROR": "raise",
    "MAX_ATTEMPTS": 10,
    "BACKOFF_BASE": 0.5,
    "BACKOFF_CAP": 30.0,
    "DEADLINE": 300.0,
    "CONNECT_TIMEOUT": 10.0,
    "LEASE_TTL": 15.0,
    "LOCK_TIMEOUT": "2s",
    "STATEMENT_TIMEOUT": None,
    "LEDGER_TABLE": "safe_migrate_ledger",
    "LEDGER_SCHEMA": None,
    "SEED_MAX_ROWS": 10,
    "VERIFY_RETRY_FUNCTIONS": ("execute_with_retry",),
}

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: 63-byte identifier limit minus the ``_lease`` suffix of the lease table.
MAX_LEDGER_TABLE_LENGTH = 63 - len("_lease")

#: Database backends migrations can run on (``postgres://`` is normalised to ``postgresql``).
SUPPORTED_BACKENDS = ("postgresql", "sqlite")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one app (or of one ``python -m`` invocation)."""

    directory: str
    #: a URL, or a zero-argument callable returning one, resolved when migrations need it
    database_uri: str | t.Callable[[], str] | None
    auto_migrate: bool
    auto_migrate_on_error: t.Literal["raise", "log"]
    max_attempts: int
    backoff_base: float
    backoff_cap: float
    deadline: float | None
    connect_timeout: float
    lease_ttl: float
    lock_timeout_ms: int
    statement_timeout_ms: int | None
    ledger_table: str
    ledger_schema: str | None
    seed_max_rows: int = 10
    verify_retry_functions: tuple[str, ...] = ("execute_with_retry",)

    def retry_policy(self) -> RetryPolicy:
        """The executor policy these settings describe."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            deadline=self.deadline,
        )


def _fail(key: str, value: t.Any, allowed: str) -> t.NoReturn:
    from .redact import redact

    raise ConfigError(
        f"{PREFIX}{key} = {redact(repr(value))} is invalid: {allowed}.", key=PREFIX + key
    )


def _bool(key: str, value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    _fail(key, value, "use True or False")


def _positive_int(key: str, value: t.Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        _fail(key, value, "use a whole number >= 1")
    try:
        number = int(value)
    except ValueError:
        _fail(key, value, "use a whole number >= 1")
    if number < 1:
        _fail(key, value, "use a whole number >= 1")
    return number


def _seconds(key: str, value: t.Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        _fail(key, value, "use a number of seconds, e.g. 0.5")
    try:
        number = float(value)
    except (TypeError, ValueError):
        _fail(key, value, "use a number of seconds, e.g. 0.5" + (", or None" if allow_none else ""))
    if number < 0 or number != number:
        _fail(key, value, "use a number of seconds >= 0")
    return number


def _duration(key: str, value: t.Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        return parse_duration_ms(value)
    except ValueError:
        _fail(
            key,
            value,
            f"use {DURATION_FORMS}" + (", or None for the server default" if allow_none else ""),
        )


def _identifier(key: str, value: t.Any, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        _fail(
            key,
            value,
            "use a lower-case SQL identifier: letters, digits and _ (at most 63), not starting with a digit",
        )
    return value


def _names(key: str, value: t.Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) and v.isidentifier() for v in value
    ):
        _fail(key, value, "use a list of Python function names, e.g. ['execute_with_retry']")
    return tuple(value)


def require_supported_backend(url: URL, key: str) -> None:
    """Refuse a URL of a database migrations cannot run on, naming ``key`` and what is allowed.

    :raises ConfigError: the backend is not PostgreSQL or SQLite.
    """
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        from .urls import display_url

        raise ConfigError(
            f"{key} = {display_url(url)!r} is invalid: the {backend!r} backend is not"
            " supported; use a postgresql:// (or postgres://) or sqlite:// URL.",
            key=key,
        )


def set_defaults(config: t.MutableMapping[str, t.Any]) -> None:
    """``setdefault`` every key, so ``app.config`` shows what is in effect."""
    for key, value in DEFAULTS.items():
        config.setdefault(PREFIX + key, value)


def load_settings(config: t.Mapping[str, t.Any]) -> Settings:
    """Validate the ``SAFE_MIGRATE_*`` keys of ``config`` (missing keys take defaults)."""

    def get(key: str) -> t.Any:
        return config.get(PREFIX + key, DEFAULTS[key])

    unknown = sorted(k for k in config if k.startswith(PREFIX) and k[len(PREFIX) :] not in DEFAULTS)
    if unknown:
        raise ConfigError(
            f"unknown config key {unknown[0]}; known keys: "
            + ", ".join(PREFIX + k for k in DEFAULTS),
            key=unknown[0],
        )

    directory = get("DIRECTORY")
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        _fail(
            "DIRECTORY",
            directory,
            "use a directory path (relative paths are relative to app.root_path)",
        )
    database_uri = get("DATABASE_URI")
    if database_uri is not None and not callable(database_uri):
        # A callable is a lazy URL (a development server started on first
        # use, a short-lived cloud token): checked when it is called.
        if not isinstance(database_uri, str) or not database_uri.strip():
            _fail(
                "DATABASE_URI",
                database_uri,
                "use a database URL such as 'postgresql://user:pw@host:5432/db', a callable"
                " returning one, or None",
            )
        from .urls import normalize_url

        url = normalize_url(database_uri, key=PREFIX + "DATABASE_URI")
        require_supported_backend(url, PREFIX + "DATABASE_URI")
    on_error = get("AUTO_MIGRATE_ON_ERROR")
    if on_error not in ("raise", "log"):
        _fail(
            "AUTO_MIGRATE_ON_ERROR",
            on_error,
            "use 'raise' (refuse to start on a half-migrated schema) or 'log'",
        )
    base = _seconds("BACKOFF_BASE", get("BACKOFF_BASE"))
    cap = _seconds("BACKOFF_CAP", get("BACKOFF_CAP"))
    assert base is not None and cap is not None
    if cap < base:
        _fail("BACKOFF_CAP", cap, f"it must be >= SAFE_MIGRATE_BACKOFF_BASE ({base})")
    deadline = _seconds("DEADLINE", get("DEADLINE"), allow_none=True)
    if deadline == 0:
        _fail("DEADLINE", deadline, "use a positive number of seconds, or None for no deadline")
    connect_timeout = _seconds("CONNECT_TIMEOUT", get("CONNECT_TIMEOUT"))
    assert connect_timeout is not None
    lease_ttl = _seconds("LEASE_TTL", get("LEASE_TTL"))
    assert lease_ttl is not None
    if lease_ttl < 1:
        _fail("LEASE_TTL", lease_ttl, "use a number of seconds >= 1")
    lock_timeout = _duration("LOCK_TIMEOUT", get("LOCK_TIMEOUT"))
    assert lock_timeout is not None
    table = _identifier("LEDGER_TABLE", get("LEDGER_TABLE"))
    assert table is not None
    if len(table) > MAX_LEDGER_TABLE_LENGTH:
        # Postgres would silently truncate "<name>_lease" to 63 bytes.
        _fail(
            "LEDGER_TABLE",
            table,
            f"use at most {MAX_LEDGER_TABLE_LENGTH} characters: the lease table is named"
            " '<name>_lease' and PostgreSQL identifiers are at most 63 bytes",
        )
    return Settings(
        directory=os.fspath(directory),
        database_uri=database_uri,
        auto_migrate=_bool("AUTO_MIGRATE", get("AUTO_MIGRATE")),
        auto_migrate_on_error=on_error,
        max_attempts=_positive_int("MAX_ATTEMPTS", get("MAX_ATTEMPTS")),
        backoff_base=base,
        backoff_cap=cap,
        deadline=deadline,
        connect_timeout=connect_timeout,
        lease_ttl=lease_ttl,
        lock_timeout_ms=lock_timeout,
        statement_timeout_ms=_duration(
            "STATEMENT_TIMEOUT", get("STATEMENT_TIMEOUT"), allow_none=True
        ),
        ledger_table=table,
        ledger_schema=_identifier("LEDGER_SCHEMA", get("LEDGER_SCHEMA"), allow_none=True),
        seed_max_rows=_positive_int("SEED_MAX_ROWS", get("SEED_MAX_ROWS")),
        verify_retry_functions=_names("VERIFY_RETRY_FUNCTIONS", get("VERIFY_RETRY_FUNCTIONS")),
    )
