"""The one exception hierarchy of flask-safe-migrate.

Library code raises these; the CLI turns them into a message on stderr and an
exit code (see :attr:`SafeMigrateError.exit_code`), so an expected failure
never shows a traceback. Every message is passed through
:func:`flask_safe_migrate.redact.redact` before it is stored, so a password
can never leak through ``str(exc)``.

::

    SafeMigrateError                    exit 1
    ├── ConfigError                     exit 2  bad SAFE_MIGRATE_* value, double init_app
    ├── BadInputError                   exit 2  unreadable file, bad URL, bad arguments
    │   └── MigrationSourceError        exit 2  bad file name, duplicate version, bad header
    ├── RetriesExhausted                exit 1  transient errors outlived the retry policy
    ├── DatabaseRefused (runner)        exit 1  the database refused the run itself (login, permission)
    ├── LeaseTimeout (lease)            exit 1  another instance held the lease past the deadline
    ├── DrillCouldNotRun (drill)        exit 1  the drill could not reach a verdict
    └── MigrationError                  exit 1  a migration failed (non-transient database error)
        ├── ChecksumDriftError          exit 1  an applied file was edited afterwards
        ├── OutOfOrderError             exit 1  a pending version below the highest applied one
        ├── RunInterrupted (interrupt)  exit 1  SIGTERM/SIGINT stopped a run
        └── RollbackRefused (rollback)  exit 1  a migration to revert has no down part
"""

from __future__ import annotations

import typing as t

from .redact import redact

if t.TYPE_CHECKING:
    from .executor import Attempt


class SafeMigrateError(Exception):
    """Base class of every error this package raises on purpose.

    :attr:`exit_code` is what the CLI exits with when this error ends a command.
    """

    exit_code: t.ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(SafeMigrateError, RuntimeError):
    """A ``SAFE_MIGRATE_*`` config value is invalid, or the extension is misused.

    Raised from ``init_app`` so a bad value fails at start-up, not mid-deploy.
    """

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class BadInputError(SafeMigrateError):
    """Input given to a command cannot be used (unreadable path, bad URL, bad option)."""

    exit_code = 2


class MigrationSourceError(BadInputError):
    """The migrations directory or a migration file is malformed.

    Raised before the database is touched, so nothing is half-applied.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class RetriesExhausted(SafeMigrateError):
    """Transient errors kept happening until the retry policy gave up.

    :attr:`attempts` holds every attempt's error and timing, oldest first; the
    last database error is also chained as ``__cause__``.
    """

    def __init__(self, message: str, attempts: t.Sequence[Attempt]) -> None:
        self.attempts = tuple(attempts)
        super().__init__(message)

    @property
    def last_error(self) -> BaseException | None:
        """The error of the final attempt."""
        return self.attempts[-1].error if self.attempts else None


class MigrationError(SafeMigrateError):
    """A migration could not be applied; it was rolled back.

    ``version``, ``path`` and ``statement`` say where; the database error is
    chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        version: str | None = None,
        path: str | None = None,
        statement: str | None = None,
    ) -> None:
        self.version = version
        self.path = path
        self.statement = statement
        super().__init__(message)


class ChecksumDriftError(MigrationError):
    """An applied migration file changed since it was applied.

    The run refuses to apply anything until the file is restored or the new
    checksum is accepted explicitly.
    """


class OutOfOrderError(MigrationError):
    """A pending migration's version is below the highest applied one.

    Typical after a late-merged branch; allowed with ``--out-of-order``.
    """
