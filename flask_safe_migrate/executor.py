"""The retry executor: run database work so that a dropped connection is survivable.

Every attempt is a brand-new checkout and transaction, so a retry never
touches a connection that already failed: the failed connection is
invalidated (it never returns to a pool) and, on a disconnect, the engine's
whole pool is disposed, because its other idle connections went through the
same broken pooler or network path. (One exception, for the migration runner:
a :class:`ConnectionKeeper` lets the *first* attempt of a unit use the
connection on which the previous unit just committed cleanly.) Waits follow tenacity's full-jitter
exponential schedule, bounded by an attempt count and an overall deadline; a unit whose first
attempt lost its connection is retried once at once before that schedule starts (see
:class:`_Backoff`).
Errors that are not transient (see :mod:`.classify`) are raised at once,
unwrapped, after a single attempt.

The unit of retry is whatever callable you pass to :func:`run_with_retry`:
the migration runner passes a whole migration (statements plus ledger row),
so that a retry reruns the transaction, never half of it.

Retrying is at-least-once: a transaction whose ``COMMIT`` reply was lost is
indistinguishable from one that failed, so it runs again. The runner's
ledger turns that into exactly-once for migrations; other callers need
idempotent units.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import typing as t

from sqlalchemy import text

from .classify import Transience
from .classify import classify
from .classify import first_line
from .classify import is_transient
from .errors import RetriesExhausted
from .log import logger

if t.TYPE_CHECKING:
    import tenacity
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine import Row

T = t.TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: attempts, full-jitter backoff, and an overall deadline.

    :param max_attempts: attempts in all, the first included.
    :param backoff_base: seconds; the n-th wait is drawn from
        ``[0, min(backoff_cap, backoff_base * 2 ** (n - 1))]``, counted from the first
        wait that follows an immediate retry after a lost connection (full jitter, so
        a dozen instances retrying together do not stampede the pooler).
    :param backoff_cap: seconds; the largest wait.
    :param deadline: seconds from the first attempt after which no new
        attempt starts; ``None`` for no deadline.
    :param sleep: replaced in unit tests so nothing really waits.
    :param clock: monotonic clock, replaced in unit tests with ``sleep``.
    """

    max_attempts: int = 10
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    deadline: float | None = 300.0
    sleep: t.Callable[[float], None] = dataclasses.field(default=time.sleep, compare=False)
    clock: t.Callable[[], float] = dataclasses.field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_cap < self.backoff_base:
            raise ValueError("need 0 <= backoff_base <= backoff_cap")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive or None")

    def replace(self, **changes: t.Any) -> RetryPolicy:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """What happened in one attempt: kept for logs, reports and :class:`RetriesExhausted`."""

    number: int
    started_at: float
    duration: float
    error: BaseException | None = None
    transience: Transience | None = None
    backend_pid: int | None = None
    #: seconds slept after this attempt before the next one (None: no retry followed)
    slept: float | None = None

    @property
    def reason(self) -> str | None:
        """The first line of the error, for "attempt 2 after: ..." messages."""
        return first_line(self.error) if self.error is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class ExecuteResult:
    """Rows and row count of a statement run by :func:`execute_with_retry`.

    The rows are fetched before the attempt's connection is closed, so they
    stay usable after the call returns.
    """

    rows: list[Row[t.Any]]
    rowcount: int
    attempts: tuple[Attempt, ...]

    def all(self) -> list[Row[t.Any]]:
        return list(self.rows)

    def first(self) -> Row[t.Any] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> t.Any:
        return self.rows[0][0] if self.rows else None


def backend_pid(conn: Connection) -> int | None:
    """The server process id the driver was told at connect time (no query needed)."""
    try:
        dbapi = conn.connection.dbapi_connection
    except Exception:  # an invalidated connection has none
        return None
    getter = getattr(dbapi, "get_backend_pid", None)  # psycopg2
    if getter is not None:
        try:
            return int(getter())
        except Exception:
            return None
    info = getattr(dbapi, "info", None)  # psycopg 3
    pid = getattr(info, "backend_pid", None)
    return int(pid) if isinstance(pid, int) else None


def _stop(policy: RetryPolicy, started: float) -> t.Callable[[tenacity.RetryCallState], bool]:
    """Stop after ``max_attempts``, or when the next attempt would start past the deadline."""

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= policy.max_attempts:
            return True
        if policy.deadline is None:
            return False
        elapsed = policy.clock() - started
        return elapsed + (retry_state.upcoming_sleep or 0.0) >= policy.deadline

    return stop


class AttemptFailed(Exception):
    """Carries a failed attempt's error together with the backend pid it ran on.

    For :func:`retry_call` attempts that want the pid in the record; the
    original error is what gets classified, retried and finally raised (with
    its own cause chain intact).
    """

    def __init__(self, error: BaseException, pid: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.pid = pid


@dataclasses.dataclass(slots=True)
class _AttemptNotes:
    """What an attempt learned while it ran, recorded whether it succeeds or fails."""

    pid: int | None = None


def retry_call(
    attempt: t.Callable[[int], T],
    *,
    policy: RetryPolicy | None = None,
    on_retry: t.Callable[[Attempt], None] | None = None,
    label: str = "database work",
) -> tuple[T, tuple[Attempt, ...]]:
    """Call ``attempt(n)`` for n = 1, 2, ... until it succeeds or the policy gives up.

    The building block under :func:`run_with_retry`, for callers that open
    their own connection (e.g. the one-query boot check, which uses the raw
    driver connection). ``attempt`` may raise :class:`AttemptFailed` to
    attach the backend pid to the record of a failed attempt.
    """

    def noted(number: int, notes: _AttemptNotes) -> T:
        try:
            return attempt(number)
        except AttemptFailed as failed:
            notes.pid = failed.pid
            error = failed.error
            # Raise the attempt's own error, not the carrier: ``from`` keeps
            # its cause (the driver's error under SQLAlchemy's) in tracebacks.
            raise error from error.__cause__

    return _retry(noted, policy=policy, on_retry=on_retry, label=label)


_DEFAULT_POLICY = RetryPolicy()


def _retry(
    attempt: t.Callable[[int, _AttemptNotes], T],
    *,
    policy: RetryPolicy | None,
    on_retry: t.Callable[[Attempt], None] | None,
    label: str,
) -> tuple[T, tuple[Attempt, ...]]:
    policy = policy or _DEFAULT_POLICY
    attempts: list[Attempt] = []
    started = policy.clock()

    def attempt_once() -> T:
        number = len(attempts) + 1
        notes = _AttemptNotes()
        begun = policy.clock()
        try:
            result = attempt(number, notes)
        except BaseException as exc:
            record = Attempt(number, begun, policy.clock() - begun, exc, classify(exc), notes.pid)
            attempts.append(record)
            if record.transience is None and isinstance(exc, Exception):
                _log_permanent(label, record, policy)
            raise
        record = Attempt(number, begun, policy.clock() - begun, backend_pid=notes.pid)
        attempts.append(record)
        _log_success(label, record, policy)
        return result

    # The first attempt runs without any retry machinery: almost every call
    # succeeds there, or fails with an error that is not retried.
    try:
        return attempt_once(), tuple(attempts)
    except Exception as exc:
        if attempts[-1].transience is None:
            raise
        first_failure: Exception | None = exc

    def replay_then_attempt() -> T:
        """For tenacity: attempt 1 is the failure above (raised again, not rerun), then run."""
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return attempt_once()

    return _retry_after_failure(
        replay_then_attempt,
        attempts,
        policy=policy,
        on_retry=on_retry,
        label=label,
        started=started,
    )


class _Backoff:
    """tenacity's full-jitter exponential wait, with one retry at once after a lost connection.

    A unit whose first attempt lost its connection (an idle timeout, a pooler
    recycling or restarting a server connection, a network blip: the
    "SSL connection has been closed unexpectedly" of the seed report) is
    retried at once on a new connection, which is what fixes such a one-off.
    If the database really is down, that retry fails fast (connection
    refused) and the schedule goes on exactly as it would have, shifted by
    one attempt: ``[0, base]``, ``[0, 2 * base]``, ... up to the cap. So no
    outage gets less waiting than before; only the common single drop stops
    costing a sleep. Any other first failure (server busy, lock timeout,
    conflict) waits from the first retry.
    """

    def __init__(self, policy: RetryPolicy, *, immediate: bool) -> None:
        import tenacity

        self._exponential = tenacity.wait_random_exponential(
            multiplier=policy.backoff_base, max=policy.backoff_cap
        )
        self._shift = 1 if immediate else 0

    def __call__(self, retry_state: t.Any) -> float:
        number = retry_state.attempt_number - self._shift
        if number < 1:
            return 0.0
        if self._shift:
            retry_state = _AttemptNumber(number)
        return float(self._exponential(retry_state))


@dataclasses.dataclass(frozen=True, slots=True)
class _AttemptNumber:
    """The one field of tenacity's retry state that its exponential waits read."""

    attempt_number: int


def _retry_after_failure(
    attempt_once: t.Callable[[], T],
    attempts: list[Attempt],
    *,
    policy: RetryPolicy,
    on_retry: t.Callable[[Attempt], None] | None,
    label: str,
    started: float,
) -> tuple[T, tuple[Attempt, ...]]:
    """The retry loop, built once an attempt failed transiently; tenacity gives the schedule."""
    import tenacity

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        sleep = retry_state.upcoming_sleep
        last = attempts[-1] = dataclasses.replace(attempts[-1], slept=sleep)
        kind = last.transience.value if last.transience else "error"
        logger.warning(
            "%s: attempt %d/%d failed (%s, %s: %s); retrying in %.2fs on a new connection",
            label,
            last.number,
            policy.max_attempts,
            kind,
            type(last.error).__name__,
            last.reason,
            sleep,
            extra={
                "safe_migrate_event": "attempt_failed",
                "label": label,
                "attempt": last.number,
                "max_attempts": policy.max_attempts,
                "transience": kind,
                "error_type": type(last.error).__name__,
                "error": last.reason,
                "backend_pid": last.backend_pid,
                "retry_in_s": round(sleep or 0.0, 3),
                "duration_ms": int(last.duration * 1000),
            },
        )
        if on_retry is not None:
            on_retry(last)

    retrying = tenacity.Retrying(
        stop=_stop(policy, started),
        wait=_Backoff(policy, immediate=attempts[0].transience is Transience.DISCONNECT),
        retry=tenacity.retry_if_exception(is_transient),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        result = retrying(attempt_once)
    except tenacity.RetryError as exc:
        last_error = exc.last_attempt.exception()
        last = attempts[-1]
        elapsed = policy.clock() - started
        kind = last.transience.value if last.transience else "error"
        message = (
            f"{label}: gave up after {len(attempts)} attempt(s) in {elapsed:.1f}s "
            f"(max {policy.max_attempts} attempts, deadline {policy.deadline}s); "
            f"last error ({kind}, {type(last.error).__name__}): {last.reason}"
        )
        logger.error(
            "%s",
            message,
            extra={
                "safe_migrate_event": "retries_exhausted",
                "label": label,
                "attempts": len(attempts),
                "transience": kind,
                "error_type": type(last.error).__name__,
                "error": last.reason,
            },
        )
        raise RetriesExhausted(message, attempts) from last_error
    return result, tuple(attempts)


def _log_success(label: str, record: Attempt, policy: RetryPolicy) -> None:
    # DEBUG on a first-attempt success (the common case: a line per statement
    # would drown an app's logs); INFO when retries paid off.
    level = logging.DEBUG if record.number == 1 else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%s: attempt %d/%d succeeded in %d ms (backend pid %s)",
            label,
            record.number,
            policy.max_attempts,
            int(record.duration * 1000),
            record.backend_pid,
            extra={
                "safe_migrate_event": "attempt_succeeded",
                "label": label,
                "attempt": record.number,
                "backend_pid": record.backend_pid,
                "duration_ms": int(record.duration * 1000),
            },
        )


def _log_permanent(label: str, record: Attempt, policy: RetryPolicy) -> None:
    # INFO, not ERROR: the error itself is raised to the caller, who reports it.
    logger.info(
        "%s: attempt %d/%d failed with a permanent error (%s: %s); not retried",
        label,
        record.number,
        policy.max_attempts,
        type(record.error).__name__,
        record.reason,
        extra={
            "safe_migrate_event": "attempt_failed_permanently",
            "label": label,
            "attempt": record.number,
            "error_type": type(record.error).__name__,
            "error": record.reason,
            "backend_pid": record.backend_pid,
        },
    )


class ConnectionKeeper:
    """Carries one healthy connection from a unit of retry to the first attempt of the next.

    Opening a connection (TLS, SCRAM) costs more than a small migration. A
    connection whose last unit committed cleanly is in a known state: no
    transaction open, no reply in flight, no orphaned server work. So the
    *first* attempt of the next unit may start on it. A retry never does
    (every retry opens a new connection), a connection that saw any error is
    never kept, and the caller decides per unit whether what ran on the
    connection may be inherited (see :func:`run_with_retry`'s ``keep``).
    """

    def __init__(self) -> None:
        self._conn: Connection | None = None

    def take(self) -> Connection | None:
        """The kept connection, if any (it is no longer kept: return it with :meth:`keep`)."""
        conn, self._conn = self._conn, None
        return conn

    def keep(self, conn: Connection) -> None:
        """Keep ``conn`` (its last unit committed cleanly) for the next unit's first attempt."""
        self.close()
        self._conn = conn

    def close(self) -> None:
        """Close the kept connection, if any (at the end of a run, or before long other work)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # it is being dropped anyway
                logger.debug("closing a kept connection failed", exc_info=True)


def run_with_retry(
    engine: Engine,
    work: t.Callable[[Connection], T],
    *,
    policy: RetryPolicy | None = None,
    transaction: bool = True,
    on_retry: t.Callable[[Attempt], None] | None = None,
    label: str = "database work",
    keeper: ConnectionKeeper | None = None,
    keep: bool = False,
) -> tuple[T, tuple[Attempt, ...]]:
    """Run ``work(conn)`` on a fresh connection, retrying transient failures.

    With ``transaction=True`` each attempt runs inside its own transaction,
    committed when ``work`` returns; with ``False`` the connection is in
    autocommit (for statements Postgres refuses inside a transaction block).

    At least once, not exactly once: when the connection dies after the
    server committed but before the client heard so (a lost ``COMMIT``
    reply), the attempt looks failed and ``work`` runs again. Make the unit
    idempotent (``INSERT ... ON CONFLICT DO NOTHING``, ``UPDATE`` to a fixed
    value) or record it in the same transaction and check first, as the
    migration runner does with its ledger: that is the exactly-once layer.

    With a ``keeper``, the first attempt starts on the connection it keeps
    (if any) instead of a new one, and with ``keep=True`` the connection of
    the attempt that succeeded is handed to it instead of being closed. Only
    pass ``keep=True`` when nothing ``work`` did outlives its transaction on
    the connection's session (a session-level ``SET``, a temporary table).

    :returns: what ``work`` returned, and the record of every attempt.
    :raises RetriesExhausted: transient errors outlived ``policy``.
    :raises Exception: the first non-transient error, unwrapped, untried again.
    """

    def attempt(number: int, notes: _AttemptNotes) -> T:
        conn: Connection | None = None
        try:
            if keeper is not None and number == 1:
                conn = keeper.take()
            if conn is None:
                conn = engine.connect()
            if not transaction and conn.get_execution_options().get("isolation_level") != (
                "AUTOCOMMIT"
            ):
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            notes.pid = backend_pid(conn)
            if transaction:
                with conn.begin():
                    result = work(conn)
            else:
                result = work(conn)
            if keeper is not None and keep:
                if conn.in_transaction():
                    # SQLAlchemy's autobegun bookkeeping in autocommit mode: the
                    # driver has nothing to commit, the next unit starts clean.
                    conn.commit()
                keeper.keep(conn)
                conn = None
            return result
        except Exception as exc:
            transience = classify(exc)
            if conn is not None and transience is not None:
                # Never let a connection that failed go back to a pool.
                conn.invalidate()
            if transience is Transience.DISCONNECT:
                # Its siblings went through the same broken path: drop them all.
                engine.dispose()
            raise
        finally:
            if conn is not None:
                conn.close()

    return _retry(attempt, policy=policy, on_retry=on_retry, label=label)


def execute_with_retry(
    engine: Engine,
    sql: str,
    params: t.Mapping[str, t.Any] | None = None,
    *,
    policy: RetryPolicy | None = None,
) -> ExecuteResult:
    """Execute one SQL statement in its own transaction, retrying transient failures.

    ``sql`` uses SQLAlchemy ``text()`` named parameters (``:email``). Each
    attempt opens a new connection and transaction; never call this inside
    an outer ``engine.begin()``: the retry could not undo what the outer
    transaction already did, and the outer connection is the one that dies.

    Writes are applied at least once: if the ``COMMIT`` reply is lost, the
    statement committed yet is run again (an ``INSERT`` lands twice). Use
    statements that are safe to repeat, or the migration runner, whose
    ledger makes each migration exactly-once.
    """

    def work(conn: Connection) -> tuple[list[Row[t.Any]], int]:
        result = conn.execute(text(sql), dict(params or {}))
        rows = list(result.all()) if result.returns_rows else []
        return rows, result.rowcount

    (rows, rowcount), attempts = run_with_retry(
        engine, work, policy=policy, label=f"execute_with_retry({_abbreviate(sql)})"
    )
    return ExecuteResult(rows, rowcount, attempts)


def _abbreviate(sql: str, limit: int = 60) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
