"""What a Python migration's ``upgrade(m)`` gets, and the guard that keeps ``db.session`` out.

``m`` runs SQL on the migration's own connection, inside its transaction,
so the statements and the ledger row commit together and a retry reruns
them all. The Flask-SQLAlchemy session would run on another connection, in
another transaction, outside the retry: while a migration runs, any use of
a session from the migrating context raises. The guard is a contextvar, so
request threads of a live app (other contexts) are never affected.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import typing as t

from sqlalchemy import text

from .errors import MigrationError

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Result

_migrating: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flask_safe_migrate_migrating", default=None
)
_installed = False
_install_lock = threading.Lock()


def _refuse_session(*args: t.Any, **kwargs: t.Any) -> None:
    label = _migrating.get()
    if label is not None:
        raise MigrationError(
            f"migration {label} used the SQLAlchemy session (db.session); migrations bypass the"
            " session, always: use m.execute(sql, params) / m.scalar(sql, params) instead"
        )


def install_session_guard() -> None:
    """Listen on every SQLAlchemy ``Session`` (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from sqlalchemy import event
        from sqlalchemy.orm import Session

        event.listen(Session, "do_orm_execute", _refuse_session)
        event.listen(Session, "after_begin", _refuse_session)
        _installed = True


@contextlib.contextmanager
def migrating(label: str) -> t.Iterator[None]:
    """Mark the current context as running migration ``label``."""
    install_session_guard()
    token = _migrating.set(label)
    try:
        yield
    finally:
        _migrating.reset(token)


class MigrationContext:
    """The ``m`` in ``def upgrade(m)``.

    :attr:`version` and :attr:`name` identify the migration; :attr:`dialect`
    is ``"postgresql"`` or ``"sqlite"``.
    """

    def __init__(
        self,
        *,
        version: str,
        name: str,
        dialect: str,
        run: t.Callable[[str, t.Mapping[str, t.Any] | None], Result[t.Any]],
    ) -> None:
        self.version = version
        self.name = name
        self.dialect = dialect
        self._run = run

    def execute(self, sql: str, params: t.Mapping[str, t.Any] | None = None) -> Result[t.Any]:
        """Run ``sql`` with SQLAlchemy ``text()`` named parameters (``:email``)."""
        return self._run(sql, params)

    def scalar(self, sql: str, params: t.Mapping[str, t.Any] | None = None) -> t.Any:
        """Run ``sql`` and return the first column of the first row (or ``None``)."""
        return self._run(sql, params).scalar()


def on_connection(
    conn: Connection,
) -> t.Callable[[str, t.Mapping[str, t.Any] | None], Result[t.Any]]:
    """Execute on one connection (the migration's transaction)."""

    def run(sql: str, params: t.Mapping[str, t.Any] | None) -> Result[t.Any]:
        return conn.execute(text(sql), dict(params or {}))

    return run
