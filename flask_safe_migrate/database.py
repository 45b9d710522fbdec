"""The database a run migrates: its URL, a lazily built engine, and raw connections.

The engine is created only when something must be applied: the boot-time
"anything pending?" check runs one query on a raw driver connection, so it
neither imports nor initialises more than it needs (SQLAlchemy's first
connect on an engine sends several set-up queries of its own).
"""

from __future__ import annotations

import hashlib
import os
import socket
import typing as t

from .config import require_supported_backend
from .engines import connect_args
from .engines import create_migration_engine
from .urls import normalize_url

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Engine


def holder_name() -> str:
    """Who is migrating, as recorded in the ledger (``applied_by``) and the lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


class MigrationDatabase:
    """One migration target: URL plus the names of the ledger tables."""

    def __init__(
        self,
        url: str | URL,
        *,
        ledger_table: str = "safe_migrate_ledger",
        ledger_schema: str | None = None,
        connect_timeout: float = 10.0,
        key: str = "SAFE_MIGRATE_DATABASE_URI",
    ) -> None:
        self.url = normalize_url(url, key=key)
        require_supported_backend(self.url, key)
        self.ledger_table = ledger_table
        self.ledger_schema = ledger_schema
        self.connect_timeout = connect_timeout
        self._key = key
        self._engine: Engine | None = None

    @property
    def backend(self) -> str:
        """``postgresql`` or ``sqlite`` (other backends are not supported)."""
        return self.url.get_backend_name()

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_migration_engine(
                self.url, connect_timeout=self.connect_timeout, key=self._key
            )
        return self._engine

    def dispose(self) -> None:
        """Drop the engine; nothing stays open (safe before a fork)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def qualified(self, table: str) -> str:
        """A table name, schema-qualified when a ledger schema is configured."""
        return f'"{self.ledger_schema}"."{table}"' if self.ledger_schema else f'"{table}"'

    @property
    def ledger(self) -> str:
        return self.qualified(self.ledger_table)

    @property
    def lease_table(self) -> str:
        return self.qualified(f"{self.ledger_table}_lease")

    @property
    def lock_key(self) -> int:
        """A 64-bit advisory-lock key derived from the schema and ledger table name.

        Two apps sharing one database with different ledgers never block
        each other; two instances of one app always do.
        """
        digest = hashlib.sha256(f"{self.ledger_schema or ''}.{self.ledger_table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @property
    def create_lock_key(self) -> int:
        """A second key, for creating the ledger tables (never held while migrating)."""
        digest = hashlib.sha256(
            f"{self.ledger_schema or ''}.{self.ledger_table}/create".encode()
        ).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def raw_connect(self) -> t.Any:
        """A plain driver connection in autocommit: no SQLAlchemy set-up queries, no BEGIN."""
        if self.backend == "sqlite":
            import sqlite3

            path = self.url.database or ":memory:"
            return sqlite3.connect(path, isolation_level=None)
        dialect_cls = self.url.get_dialect()
        dialect = dialect_cls()
        dbapi = dialect_cls.import_dbapi()
        cargs, cparams = dialect.create_connect_args(self.url)
        cparams.update(connect_args(self.url, self.connect_timeout))
        conn = dbapi.connect(*cargs, **cparams)
        conn.autocommit = True
        return conn
