"""Exclusion between instances: a lease row, taken and renewed in short transactions.

Why a lease and not a lock held for the whole run:

* session advisory locks do not work through a transaction pooler (two
  clients can both "hold" one on the same server connection);
* a transaction-level lock cannot cover statements that must run outside a
  transaction (``CREATE INDEX CONCURRENTLY``);
* a waiter parked inside an open transaction would make ``CREATE INDEX
  CONCURRENTLY`` wait for it (a deadlock Postgres cannot see) and pin a
  pooler server connection.

So the holder writes ``(holder, expires_at)`` into a one-row table, renews it
from a heartbeat thread, and deletes it when done. Waiters poll with short
transactions (autocommit: one message, one transaction, nothing open between
polls) on one connection each, kept open while they wait: a dozen booting
instances must not open a TLS connection per poll (through a transaction
pooler an idle client connection holds no server connection). Their polls
back off gently, with jitter, up to :data:`POLL_CAP` seconds. A killed holder
strands nothing: its lease simply expires.
The lease is the first line of defence; each migration transaction also
takes a transaction-level advisory lock and re-reads the ledger, and the
ledger's unique version is the last.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import typing as t

from sqlalchemy import text

from . import rawsql
from .errors import SafeMigrateError
from .executor import ConnectionKeeper
from .executor import RetryPolicy
from .executor import run_with_retry
from .log import logger

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .database import MigrationDatabase


#: Seconds between a waiter's first polls of a held lease; each wait is drawn from
#: [interval/2, interval] (jitter: booting instances must not poll in step), and the
#: interval grows by POLL_GROWTH up to POLL_CAP.
POLL_FIRST = 0.1
POLL_GROWTH = 1.5
POLL_CAP = 1.0


def unique_holder(who: str) -> str:
    """A lease holder name for one run: ``who`` (``host:pid``) plus a random suffix.

    ``host:pid`` alone is not unique: two runners in one process (threads, an
    app that migrates two binds at once), or two containers that share a
    host name and pid 1, would be the same holder, and taking a lease one
    already holds succeeds, so both would migrate at once.
    """
    return f"{who}:{secrets.token_hex(4)}"


class LeaseTimeout(SafeMigrateError):
    """Another instance held the migration lease for longer than the deadline allowed."""


def _now(db: MigrationDatabase) -> str:
    if db.is_postgres:
        return "extract(epoch from clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


class Lease:
    """The migration lease of one database (see the module docstring)."""

    def __init__(
        self,
        db: MigrationDatabase,
        holder: str,
        *,
        ttl: float = 15.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.db = db
        self.holder = holder
        self.ttl = ttl
        self.policy = policy or RetryPolicy()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # -- one short transaction each ------------------------------------------

    def _try_take(self, conn: Connection) -> str | None:
        """Take (or refresh) the lease if it is free, expired or ours; else who holds it."""
        now = _now(self.db)
        table = self.db.lease_table
        if self.db.is_postgres:
            # One message, one (implicit) transaction: the upsert, then who holds it now.
            ((holder,),) = rawsql.run(
                conn,
                f"INSERT INTO {table} AS lease (id, holder, acquired_at, expires_at)"
                f" VALUES (1, {rawsql.literal(self.holder)}, {now}, {now} + {float(self.ttl)!r})"
                " ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,"
                " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at"
                f" WHERE lease.expires_at < {now} OR lease.holder = excluded.holder;"
                f" SELECT holder FROM {table} WHERE id = 1",
            )
            return None if holder == self.holder else str(holder)
        taken = conn.execute(
            text(
                f"INSERT INTO {table} AS lease (id, holder, acquired_at, expires_at)"
                f" VALUES (1, :holder, {now}, {now} + :ttl)"
                " ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,"
                " acquired_at = excluded.acquired_at, expires_at = excluded.expires_at"
                f" WHERE lease.expires_at < {now} OR lease.holder = excluded.holder"
                " RETURNING holder"
            ),
            {"holder": self.holder, "ttl": self.ttl},
        ).first()
        if taken is not None:
            return None
        row = conn.execute(text(f"SELECT holder FROM {table} WHERE id = 1")).first()
        return str(row[0]) if row is not None else "unknown"

    def acquire(
        self,
        *,
        on_wait: t.Callable[[str], None] | None = None,
        keeper: ConnectionKeeper | None = None,
    ) -> float:
        """Take the lease, polling while another instance holds it.

        Every poll runs on the same connection while it stays healthy (a
        failed one is replaced, as any retry is). With a ``keeper`` (the
        runner's) that connection is left to it, for the work that follows;
        without, it is closed before returning.

        :returns: seconds spent waiting.
        :raises LeaseTimeout: still held by another instance at the deadline.
        """
        own = keeper is None
        polls = keeper if keeper is not None else ConnectionKeeper()
        try:
            return self._poll(on_wait, polls)
        finally:
            if own:
                polls.close()

    def _poll(self, on_wait: t.Callable[[str], None] | None, keeper: ConnectionKeeper) -> float:
        started = time.monotonic()
        announced = None
        interval = POLL_FIRST
        while True:
            other, _ = run_with_retry(
                self.db.engine,
                self._try_take,
                policy=self.policy,
                transaction=not self.db.is_postgres,
                label="taking the migration lease",
                keeper=keeper if self.db.is_postgres else None,
                keep=True,
            )
            if other is None:
                self._start_heartbeat()
                return time.monotonic() - started
            waited = time.monotonic() - started
            if self.policy.deadline is not None and waited >= self.policy.deadline:
                raise LeaseTimeout(
                    f"another instance ({other}) is applying migrations and still held the lease"
                    f" after {waited:.0f}s (SAFE_MIGRATE_DEADLINE = {self.policy.deadline});"
                    " if that process is gone, its lease expires by itself within"
                    f" {self.ttl:.0f}s: run again"
                )
            if other != announced:
                logger.info("waiting for %s, which is applying migrations", other)
                if on_wait is not None:
                    on_wait(other)
                announced = other
            # Jittered, gently growing polls: a dozen booting instances must not poll in step.
            time.sleep(random.uniform(interval / 2, interval))
            interval = min(interval * POLL_GROWTH, POLL_CAP)

    def renew(self) -> bool:
        """Push the expiry forward; ``False`` if the lease is no longer ours."""
        now = _now(self.db)

        def work(conn: Connection) -> int:
            result = conn.execute(
                text(
                    f"UPDATE {self.db.lease_table} SET expires_at = {now} + :ttl"
                    " WHERE id = 1 AND holder = :holder"
                ),
                {"holder": self.holder, "ttl": self.ttl},
            )
            return int(result.rowcount)

        renewed, _ = run_with_retry(
            self.db.engine, work, policy=self.policy, label="renewing the migration lease"
        )
        return renewed == 1

    def release(self, *, keeper: ConnectionKeeper | None = None) -> None:
        """Give the lease up (best effort: if this fails, it expires by itself).

        With a ``keeper``, on the connection it keeps (if any), left to it.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

        def work(conn: Connection) -> None:
            conn.execute(
                text(f"DELETE FROM {self.db.lease_table} WHERE id = 1 AND holder = :holder"),
                {"holder": self.holder},
            )

        try:
            run_with_retry(
                self.db.engine,
                work,
                policy=self.policy.replace(max_attempts=3),
                transaction=keeper is None,
                label="releasing the migration lease",
                keeper=keeper,
                keep=True,
            )
        except Exception as exc:  # the lease expires by itself
            logger.warning(
                "could not release the migration lease (%s); it expires in %.0fs", exc, self.ttl
            )

    def check(self) -> None:
        """Raise if the heartbeat found the lease taken over (before starting a migration)."""
        if self.lost:
            raise LeaseTimeout(
                "the migration lease was lost (this process could not renew it in time);"
                " stopped before the next migration: run again"
            )

    # -- heartbeat ------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name="safe-migrate-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.renew():
                    self.lost = True
                    logger.error("the migration lease was taken over by another instance")
                    return
            except Exception as exc:
                logger.warning("could not renew the migration lease: %s", exc)
