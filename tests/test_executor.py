"""The retry executor against real Postgres, a real fault proxy and real PgBouncer.

Only the clock and ``sleep`` are replaced (in the backoff and deadline tests),
because real outages cannot be waited for in a unit test.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from flask_safe_migrate import RetriesExhausted
from flask_safe_migrate import RetryPolicy
from flask_safe_migrate import execute_with_retry
from flask_safe_migrate import run_with_retry
from flask_safe_migrate.classify import Transience
from flask_safe_migrate.engines import create_migration_engine
from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from tests.infra.postgres import DRIVERS
from tests.infra.postgres import REJECTED_USER
from tests.infra.postgres import with_driver
from tests.infra.procs import free_port

FAST = RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_cap=0.05, deadline=30)


class FakeTime:
    """A clock that only moves when the executor sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, **fields: t.Any) -> RetryPolicy:
        """A retry policy that sleeps and tells time on this clock."""
        return RetryPolicy(sleep=self.sleep, clock=self.clock, **fields)


@pytest.fixture
def proxy(pg_url: str):
    with FaultProxy.for_url(pg_url) as running:
        yield running


def _pid_and_insert(conn: sa.Connection) -> int:
    pid = conn.exec_driver_sql("select pg_backend_pid()").scalar_one()
    conn.exec_driver_sql("insert into hits (pid) values (pg_backend_pid())")
    return pid


def _create_hits(pg_url: str) -> None:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table hits (pid int)")
    engine.dispose()


def _hits(pg_url: str) -> list[int]:
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = [r[0] for r in conn.exec_driver_sql("select pid from hits")]
    engine.dispose()
    return rows


def test_each_attempt_runs_on_a_new_backend_and_the_transaction_is_redone(pg_url, proxy) -> None:
    _create_hits(pg_url)
    # The insert runs, then the connection dies before the client hears back:
    # that transaction never committed, so the retry must do it again, elsewhere.
    cut = proxy.add_cut(Cut("after_query", match=r"insert into hits"))
    engine = create_migration_engine(proxy.url(pg_url))
    pid, attempts = run_with_retry(engine, _pid_and_insert, policy=FAST)
    assert cut.fired == 1
    assert len(attempts) == 2
    assert attempts[0].transience is Transience.DISCONNECT
    first, second = attempts[0].backend_pid, attempts[1].backend_pid
    assert first is not None and second is not None and first != second
    assert second == pid  # the pid the driver was told is the server's own
    assert _hits(pg_url) == [pid]  # exactly once, by the second backend


@pytest.mark.parametrize("driver", DRIVERS)
def test_terminated_backend_is_retried_on_a_new_connection(pg_url, driver) -> None:
    # 57P01 admin_shutdown, the shape of a Neon suspend or a failover.
    _create_hits(pg_url)
    engine = create_migration_engine(with_driver(pg_url, driver))
    killer = sa.create_engine(pg_url, poolclass=NullPool)
    seen: list[int] = []

    def work(conn: sa.Connection) -> int:
        pid = conn.exec_driver_sql("select pg_backend_pid()").scalar_one()
        seen.append(pid)
        if len(seen) == 1:

            def kill() -> None:
                time.sleep(0.3)
                with killer.connect() as k:
                    k.exec_driver_sql(f"select pg_terminate_backend({pid})")

            threading.Thread(target=kill).start()
            conn.exec_driver_sql("select pg_sleep(5)")
        return _pid_and_insert(conn)

    started = time.monotonic()
    pid, attempts = run_with_retry(engine, work, policy=FAST)
    assert time.monotonic() - started < 4
    assert len(seen) == 2 and seen[0] != seen[1] and pid == seen[1]
    assert attempts[0].transience is Transience.DISCONNECT
    assert _hits(pg_url) == [seen[1]]


def test_disconnect_invalidates_the_connection_and_disposes_a_pooled_engine(pg_url, proxy) -> None:
    _create_hits(pg_url)
    # A user's own pooled engine (what the seed passed in): after a disconnect the
    # failed connection must never come back and the idle ones must be dropped.
    engine = sa.create_engine(proxy.url(pg_url), pool_size=3)
    disposed: list[int] = []
    invalidated: list[int] = []
    event.listen(engine, "engine_disposed", lambda e: disposed.append(1))
    event.listen(engine.pool, "invalidate", lambda c, r, e: invalidated.append(id(c)))
    warm = [engine.connect() for _ in range(3)]
    idle_pids = {c.exec_driver_sql("select pg_backend_pid()").scalar_one() for c in warm}
    for c in warm:
        c.close()
    proxy.add_cut(Cut("before_query", match=r"insert into hits"))
    pid, attempts = run_with_retry(engine, _pid_and_insert, policy=FAST)
    assert len(attempts) == 2
    assert disposed == [1]
    assert invalidated, "the failed connection was not invalidated"
    # The retry did not reuse any connection from before the disconnect.
    assert pid not in idle_pids
    engine.dispose()


def test_syntax_error_is_raised_at_once_unwrapped(pg_url) -> None:
    engine = create_migration_engine(pg_url)
    slept: list[float] = []
    started = time.monotonic()
    with pytest.raises(sa.exc.ProgrammingError) as info:
        execute_with_retry(engine, "selec 1", policy=RetryPolicy(sleep=slept.append))
    assert time.monotonic() - started < 1
    assert slept == []
    assert info.value.orig.pgcode == "42601"
    # The driver's own error stays chained, as SQLAlchemy raised it.
    assert info.value.__cause__ is info.value.orig
    printed = "".join(traceback.format_exception(info.value))
    assert "psycopg2.errors.SyntaxError" in printed
    assert "The above exception was the direct cause" in printed


def test_retry_call_keeps_the_cause_of_an_attempt_failed_error(pg_url) -> None:
    from flask_safe_migrate.executor import AttemptFailed
    from flask_safe_migrate.executor import retry_call

    engine = create_migration_engine(pg_url)

    def attempt(number: int) -> None:
        with engine.connect() as conn:
            try:
                conn.exec_driver_sql("selec 1")
            except sa.exc.DBAPIError as exc:
                raise AttemptFailed(exc, 4242) from exc

    with pytest.raises(sa.exc.ProgrammingError) as info:
        retry_call(attempt, policy=FAST)
    assert info.value.__cause__ is info.value.orig
    assert "AttemptFailed" not in "".join(traceback.format_exception(info.value))


def test_unique_violation_is_not_retried(pg_url) -> None:
    engine = create_migration_engine(pg_url)
    execute_with_retry(engine, "create table u (id int primary key)")
    execute_with_retry(engine, "insert into u values (:id)", {"id": 1})
    slept: list[float] = []
    with pytest.raises(sa.exc.IntegrityError):
        execute_with_retry(
            engine, "insert into u values (:id)", {"id": 1}, policy=RetryPolicy(sleep=slept.append)
        )
    assert slept == []


def test_results_survive_the_closed_connection(pg_url) -> None:
    engine = create_migration_engine(pg_url)
    result = execute_with_retry(engine, "select :a + 1 as n union all select 5", {"a": 1})
    assert [r.n for r in result.all()] == [2, 5]
    assert result.scalar() == 2
    assert len(result.attempts) == 1


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    fake = FakeTime()
    policy = fake.policy(max_attempts=8, backoff_base=0.5, backoff_cap=4.0, deadline=None)
    # A real refused connection: nothing listens on this port.
    engine = create_migration_engine(
        f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout=2
    )
    with pytest.raises(RetriesExhausted) as info:
        execute_with_retry(engine, "select 1", policy=policy)
    assert len(info.value.attempts) == 8
    assert len(fake.sleeps) == 7
    for n, slept in enumerate(fake.sleeps, start=1):
        assert 0 <= slept <= min(4.0, 0.5 * 2 ** (n - 1))
    assert all(a.transience is Transience.UNAVAILABLE for a in info.value.attempts)
    assert "Connection refused" in str(info.value) or "refused" in str(info.value.last_error)
    assert isinstance(info.value.__cause__, sa.exc.OperationalError)


def test_a_lost_connection_is_retried_at_once_then_the_schedule_goes_on(pg_url, proxy) -> None:
    """Injects: every attempt's query cut (FIN) by the proxy: the connection is lost each time.

    Checks: the first retry after a lost connection does not sleep (a single drop is fixed by
    reconnecting), and the full-jitter schedule then runs as usual, shifted by that one
    attempt: [0, base], [0, 2 base], ... up to the cap.
    """
    _create_hits(pg_url)
    cut = proxy.add_cut(Cut("before_query", match=r"insert into hits", times=0))
    fake = FakeTime()
    policy = fake.policy(max_attempts=6, backoff_base=0.5, backoff_cap=1.5, deadline=None)
    engine = create_migration_engine(proxy.url(pg_url))
    with pytest.raises(RetriesExhausted) as info:
        execute_with_retry(
            engine, "insert into hits (pid) values (pg_backend_pid())", policy=policy
        )
    assert cut.fired == 6
    assert all(a.transience is Transience.DISCONNECT for a in info.value.attempts)
    assert fake.sleeps[0] == 0.0
    assert len(fake.sleeps) == 5
    for n, slept in enumerate(fake.sleeps[1:], start=1):
        assert 0 < slept <= min(1.5, 0.5 * 2 ** (n - 1)), fake.sleeps


def test_a_refused_connection_waits_before_the_first_retry() -> None:
    """Injects: a port where nothing listens (the server is down, not a one-off drop).

    Checks: the very first retry already waits (drawn from [0, base]): an outage gets no less
    waiting because single drops are retried at once.
    """
    fake = FakeTime()
    policy = fake.policy(max_attempts=2, deadline=None)
    engine = create_migration_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(RetriesExhausted):
        execute_with_retry(engine, "select 1", policy=policy)
    assert len(fake.sleeps) == 1 and 0 < fake.sleeps[0] <= policy.backoff_base


def test_deadline_stops_new_attempts() -> None:
    fake = FakeTime()
    policy = fake.policy(max_attempts=1000, backoff_base=1.0, backoff_cap=8.0, deadline=20.0)
    engine = create_migration_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    start = fake.now
    with pytest.raises(RetriesExhausted) as info:
        execute_with_retry(engine, "select 1", policy=policy)
    assert all(a.started_at - start < 20.0 for a in info.value.attempts)
    assert sum(fake.sleeps) < 20.0
    assert 3 <= len(info.value.attempts) < 1000


def test_each_attempt_is_logged_with_number_error_class_sleep_and_pid(
    pg_url, proxy, caplog
) -> None:
    _create_hits(pg_url)
    proxy.add_cut(Cut("before_query", match=r"insert into hits"))
    engine = create_migration_engine(proxy.url(pg_url))
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        _, attempts = run_with_retry(engine, _pid_and_insert, policy=FAST, label="unit")
    failed, succeeded = [r for r in caplog.records if r.getMessage().startswith("unit: attempt")]
    message = failed.getMessage()
    assert failed.levelno == logging.WARNING
    assert "attempt 1/5" in message and "disconnect" in message and "OperationalError" in message
    assert "retrying in 0." in message
    assert failed.error_type == "OperationalError" and failed.attempt == 1
    assert failed.backend_pid == attempts[0].backend_pid is not None
    assert succeeded.levelno == logging.INFO  # a success after retries
    assert succeeded.getMessage().startswith("unit: attempt 2/5 succeeded")
    assert succeeded.backend_pid == attempts[1].backend_pid is not None


def test_permanent_failure_and_first_try_success_are_logged(pg_url, caplog) -> None:
    engine = create_migration_engine(pg_url)
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        execute_with_retry(engine, "select 1")
        with pytest.raises(sa.exc.ProgrammingError):
            execute_with_retry(engine, "selec 1")
    ok, bad = [r for r in caplog.records if "attempt 1/10" in r.getMessage()]
    assert ok.levelno == logging.DEBUG and "succeeded" in ok.getMessage()
    assert bad.levelno == logging.INFO
    assert "failed with a permanent error (ProgrammingError:" in bad.getMessage()
    assert "not retried" in bad.getMessage()


def test_the_give_up_line_names_the_error_class(caplog) -> None:
    fake = FakeTime()
    engine = create_migration_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    with caplog.at_level(logging.ERROR, logger="flask_safe_migrate"):
        with pytest.raises(RetriesExhausted) as info:
            execute_with_retry(engine, "select 1", policy=fake.policy(max_attempts=2))
    (record,) = caplog.records
    assert "gave up after 2 attempt(s)" in record.getMessage()
    assert "last error (unavailable, OperationalError): connection" in record.getMessage()
    assert "Connection refused" in record.getMessage()
    assert record.error_type == "OperationalError"
    assert str(info.value) == record.getMessage()


def test_a_lost_commit_reply_reruns_the_statement_at_least_once(pg_url, proxy) -> None:
    # The server commits, the reply never arrives: the client cannot tell this
    # from a failed COMMIT, so the executor runs the statement again. This is
    # why execute_with_retry is documented as at-least-once for writes and
    # the runner's ledger is the exactly-once layer.
    _create_hits(pg_url)
    cut = proxy.add_cut(Cut("commit_reply_lost"))
    engine = create_migration_engine(proxy.url(pg_url))
    result = execute_with_retry(engine, "insert into hits values (1)", policy=FAST)
    assert cut.fired == 1
    assert len(result.attempts) == 2
    assert result.attempts[0].transience is Transience.DISCONNECT
    assert _hits(pg_url) == [1, 1]  # the insert landed twice


def test_sqlite_database_is_locked_is_retried(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    engine = create_migration_engine(f"sqlite:///{path}")
    execute_with_retry(engine, "create table t (id integer)")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.4, lambda: holder.execute("ROLLBACK")).start()
    locked_engine = sa.create_engine(
        f"sqlite:///{path}",
        poolclass=NullPool,
        connect_args={"timeout": 0.05, "check_same_thread": False},
    )
    result = execute_with_retry(
        locked_engine,
        "insert into t values (1)",
        policy=RetryPolicy(backoff_base=0.1, backoff_cap=0.2),
    )
    assert len(result.attempts) >= 2
    assert "database is locked" in (result.attempts[0].reason or "")
    holder.close()


def test_tls_pgbouncer_drop_shows_ssl_error_and_is_retried(pgb_url) -> None:
    engine = create_migration_engine(pgb_url)
    execute_with_retry(engine, "create table hits (pid int)")
    url = sa.engine.make_url(pgb_url)
    # Blind mode relays the TLS session untouched; the cut is a real TLS
    # connection dying mid-transaction, exactly as the seed report saw it.
    with FaultProxy(url.host, url.port, protocol=False) as proxy:
        flaky = create_migration_engine(proxy.url(pgb_url))
        seen: list[int] = []

        def work(conn: sa.Connection) -> None:
            conn.exec_driver_sql("insert into hits values (1)")
            if not seen:
                seen.append(1)
                proxy.set_random(1.0)  # the next chunk in either direction kills the link
                conn.exec_driver_sql("select 1")

        _, attempts = run_with_retry(
            flaky, work, policy=FAST, on_retry=lambda a: proxy.set_random(0.0)
        )
    assert len(attempts) == 2
    assert attempts[0].reason == "SSL SYSCALL error: EOF detected"
    assert attempts[0].transience is Transience.DISCONNECT
    assert execute_with_retry(engine, "select count(*) from hits").scalar() == 1


@pytest.mark.parametrize(
    ("driver", "how", "seen_as"),
    [
        # The seed report's messages, produced for real: the TLS link dies
        # mid-transaction with a FIN (no TLS close_notify) or an RST.
        ("psycopg2", "fin", "SSL SYSCALL error: EOF detected"),
        ("psycopg", "fin", "consuming input failed: SSL error: unexpected eof while reading"),
        ("psycopg2", "rst", "server closed the connection unexpectedly"),
        ("psycopg", "rst", "consuming input failed: server closed the connection unexpectedly"),
    ],
)
def test_a_cut_tls_link_shows_the_seed_error_and_is_retried_on_a_new_backend(
    tls_cluster, tls_db, driver, how, seen_as
) -> None:
    url = with_driver(tls_cluster.app_url(tls_db), driver)
    execute_with_retry(create_migration_engine(url), "create table hits (pid int)")
    with FaultProxy("127.0.0.1", tls_cluster.port, protocol=False) as proxy:
        flaky = create_migration_engine(proxy.url(url))
        cut: list[int] = []

        def work(conn: sa.Connection) -> int:
            conn.exec_driver_sql("insert into hits values (pg_backend_pid())")
            if not cut:
                cut.append(1)
                proxy.set_random(1.0, how=how)  # the next chunk kills the TLS link
            return conn.exec_driver_sql("select pg_backend_pid()").scalar_one()

        pid, attempts = run_with_retry(
            flaky, work, policy=FAST, on_retry=lambda a: proxy.set_random(0.0)
        )
    assert [a.reason for a in attempts] == [seen_as, None]
    assert attempts[0].transience is Transience.DISCONNECT
    first, second = attempts[0].backend_pid, attempts[1].backend_pid
    assert first is not None and second == pid and first != second
    rows = execute_with_retry(create_migration_engine(url), "select pid from hits").rows
    assert [r[0] for r in rows] == [pid]  # the cut transaction left nothing behind


@pytest.mark.parametrize("driver", DRIVERS)
def test_bad_password_through_pgbouncer_fails_at_once_and_is_never_printed(
    pgb_url, driver, caplog
) -> None:
    url = sa.engine.make_url(pgb_url)
    real_password = url.password
    wrong = "wrong-" + "x" * 12
    bad = url.set(password=wrong).render_as_string(hide_password=False)
    engine = create_migration_engine(with_driver(bad, driver))
    slept: list[float] = []
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        with pytest.raises(sa.exc.OperationalError) as info:
            execute_with_retry(engine, "select 1", policy=RetryPolicy(sleep=slept.append))
    assert slept == []
    assert "authentication failed" in str(info.value)
    # Everything a user could see, as it is (nothing scrubbed before looking).
    printed = "".join(traceback.format_exception(info.value)) + repr(info.value) + caplog.text
    assert wrong not in printed and real_password not in printed


def test_exhausted_error_logs_and_traceback_never_show_the_password(caplog) -> None:
    # The statement quotes the connection's password (a migration that sets
    # the app role's password from the same secret): it reaches every log
    # line and the error message through the label, and only redaction
    # keeps it out.
    secret = "hunter2-very-secret"
    engine = create_migration_engine(f"postgresql://app:{secret}@127.0.0.1:{free_port()}/db")
    fake = FakeTime()
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        with pytest.raises(RetriesExhausted) as info:
            execute_with_retry(
                engine,
                f"alter role app password '{secret}'",
                policy=fake.policy(max_attempts=3),
            )
    assert len(info.value.attempts) == 3
    assert "alter role app password '***'" in str(info.value)
    assert (
        len([r for r in caplog.records if "alter role app password '***'" in r.getMessage()]) == 3
    )
    assert secret not in str(info.value)
    assert secret not in caplog.text
    assert secret not in "".join(traceback.format_exception(info.value))
    assert secret not in repr(engine)


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_both_drivers_retry_a_dropped_connection_on_a_new_backend(pg_url, proxy, driver) -> None:
    _create_hits(pg_url)
    url = sa.engine.make_url(proxy.url(pg_url)).set(drivername=f"postgresql+{driver}")
    engine = create_migration_engine(url.render_as_string(hide_password=False))
    proxy.add_cut(Cut("after_query", match=r"insert into hits"))
    pid, attempts = run_with_retry(engine, _pid_and_insert, policy=FAST)
    assert len(attempts) == 2 and attempts[0].transience is Transience.DISCONNECT
    first, second = attempts[0].backend_pid, attempts[1].backend_pid
    assert first is not None and second is not None and first != second
    assert second == pid
    assert _hits(pg_url) == [pid]
    if driver == "psycopg":
        # PgBouncer before 1.21 breaks on prepared statements: never prepare.
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.prepare_threshold is None


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_both_drivers_fail_a_syntax_error_at_once(pg_url, driver) -> None:
    url = sa.engine.make_url(pg_url).set(drivername=f"postgresql+{driver}")
    engine = create_migration_engine(url.render_as_string(hide_password=False))
    slept: list[float] = []
    with pytest.raises(sa.exc.ProgrammingError):
        execute_with_retry(engine, "selec 1", policy=RetryPolicy(sleep=slept.append))
    assert slept == []


def test_bare_postgresql_urls_pick_an_installed_driver() -> None:
    from flask_safe_migrate.urls import normalize_url

    assert normalize_url("postgres://u:pw1234@h/d").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg2://u@h/d").drivername == "postgresql+psycopg2"


# -- connect-time refusals and the transient SQLSTATEs, real, for both drivers ------------------


def _no_sleep_policy(slept: list[float]) -> RetryPolicy:
    return RetryPolicy(max_attempts=5, sleep=slept.append)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("NOLOGIN role", "is not permitted to log in"),
        ("REVOKE CONNECT", "permission denied for database"),
        ("unknown database", "does not exist"),
    ],
)
def test_permanent_connect_refusals_fail_at_once(refusing, driver, case, text) -> None:
    engine = create_migration_engine(with_driver(refusing[case], driver))
    slept: list[float] = []
    with pytest.raises(sa.exc.OperationalError) as info:
        execute_with_retry(engine, "select 1", policy=_no_sleep_policy(slept))
    assert slept == []  # one attempt, no retry
    assert text in str(info.value.orig)


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_refusals_fail_at_once(tls_cluster, tls_db, driver, caplog) -> None:
    good = sa.engine.make_url(tls_cluster.app_url(tls_db))
    wrong = "wrong-" + "y" * 12
    cases = {
        "password authentication failed": good.set(password=wrong),
        "pg_hba.conf rejects connection": good.set(username=REJECTED_USER),
    }
    for text, url in cases.items():
        engine = create_migration_engine(
            with_driver(url.render_as_string(hide_password=False), driver)
        )
        slept: list[float] = []
        with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
            with pytest.raises(sa.exc.OperationalError) as info:
                execute_with_retry(engine, "select 1", policy=_no_sleep_policy(slept))
        assert slept == [], text
        assert text in str(info.value.orig)
    assert wrong not in caplog.text and tls_cluster.password not in caplog.text


@pytest.mark.parametrize("driver", DRIVERS)
def test_serialization_failure_is_retried(pg_url, driver) -> None:
    engine = create_migration_engine(with_driver(pg_url, driver))
    execute_with_retry(engine, "create table t (id int primary key, v int)")
    execute_with_retry(engine, "insert into t values (1, 0)")
    other = sa.create_engine(with_driver(pg_url, driver), poolclass=NullPool)
    raced: list[int] = []

    def work(conn: sa.Connection) -> None:
        conn.exec_driver_sql("set transaction isolation level repeatable read")
        conn.exec_driver_sql("select v from t where id = 1")  # takes the snapshot
        if not raced:
            raced.append(1)
            with other.begin() as o:  # a concurrent writer commits first
                o.exec_driver_sql("update t set v = v + 10 where id = 1")
        conn.exec_driver_sql("update t set v = v + 1 where id = 1")

    _, attempts = run_with_retry(engine, work, policy=FAST)
    assert len(attempts) == 2
    assert attempts[0].transience is Transience.CONFLICT
    assert "could not serialize access" in (attempts[0].reason or "")
    assert execute_with_retry(engine, "select v from t").scalar() == 11


@pytest.mark.parametrize("driver", DRIVERS)
def test_too_many_connections_is_retried_until_a_slot_frees(refusing, pg_server, driver) -> None:
    # 53300: the role's CONNECTION LIMIT is reached; the next attempt gets the freed slot.
    url = with_driver(refusing["CONNECTION LIMIT 0"], driver)
    role = sa.engine.make_url(url).username
    pg_server.admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 1')
    holder = sa.create_engine(url, poolclass=NullPool).connect()
    holder.exec_driver_sql("select 1")
    engine = create_migration_engine(url)
    admin = sa.create_engine(pg_server.admin_url, poolclass=NullPool)

    def free_the_slot(attempt) -> None:
        holder.close()
        # The backend exits a moment after the client hangs up: wait for it,
        # so the next attempt is the one that gets in.
        for _ in range(200):
            with admin.connect() as conn:
                sessions = conn.exec_driver_sql(
                    f"select count(*) from pg_stat_activity where usename = '{role}'"
                ).scalar_one()
            if sessions == 0:
                return
            time.sleep(0.05)

    try:
        value, attempts = run_with_retry(
            engine,
            lambda conn: conn.exec_driver_sql("select 7").scalar_one(),
            policy=FAST,
            on_retry=free_the_slot,
        )
    finally:
        holder.close()
        admin.dispose()
    assert value == 7 and len(attempts) == 2
    assert attempts[0].transience is Transience.UNAVAILABLE
    assert "too many connections for role" in (attempts[0].reason or "")


@pytest.mark.parametrize("driver", DRIVERS)
def test_startup_refusal_during_shutdown_is_retried(scratch_cluster, driver) -> None:
    # 57P03 cannot_connect_now, as during a failover or a restart: a smart
    # shutdown refuses new connections while one session is still open.
    holder = sa.create_engine(scratch_cluster.admin_url, poolclass=NullPool).connect()
    holder.exec_driver_sql("select 1")
    scratch_cluster.begin_smart_shutdown()
    engine = create_migration_engine(with_driver(scratch_cluster.admin_url, driver))

    def server_comes_back(attempt) -> None:
        holder.close()
        scratch_cluster.start_again()

    try:
        result = run_with_retry(
            engine,
            lambda conn: conn.exec_driver_sql("select 1").scalar_one(),
            policy=FAST,
            on_retry=server_comes_back,
        )
    finally:
        holder.close()
        if not os.path.exists(os.path.join(scratch_cluster.data, "postmaster.pid")):
            scratch_cluster.start_again()
    value, attempts = result
    assert value == 1 and len(attempts) == 2
    assert attempts[0].transience is Transience.UNAVAILABLE
    assert "the database system is shutting down" in (attempts[0].reason or "")


@pytest.mark.parametrize(
    ("driver", "seen_as"),
    [
        # psycopg2 over TLS reports the pooler's FATAL as the seed report's own text.
        ("psycopg2", "SSL connection has been closed unexpectedly"),
        # psycopg 3 reads the FATAL itself: SQLSTATE 08P01, on the allow-list.
        ("psycopg", "database removed"),
    ],
)
def test_pgbouncer_kill_is_retried_on_a_new_server_connection(
    pgbouncer, tls_db, driver, seen_as
) -> None:
    engine = create_migration_engine(with_driver(pgbouncer.app_url(tls_db), driver))
    execute_with_retry(engine, "create table hits (pid int)")
    seen: list[int] = []

    def work(conn: sa.Connection) -> int:
        pid = conn.exec_driver_sql("select pg_backend_pid()").scalar_one()
        seen.append(pid)
        if len(seen) == 1:
            pgbouncer.admin(f"KILL {tls_db}")  # drops every client and server connection
        conn.exec_driver_sql("insert into hits values (pg_backend_pid())")
        return pid

    try:
        pid, attempts = run_with_retry(
            engine, work, policy=FAST, on_retry=lambda a: pgbouncer.admin(f"RESUME {tls_db}")
        )
    finally:
        if len(seen) < 2:
            pgbouncer.admin(f"RESUME {tls_db}")
    assert len(attempts) == 2
    assert attempts[0].reason == seen_as
    assert attempts[0].transience is Transience.DISCONNECT
    assert seen[0] != seen[1] == pid
    assert [r[0] for r in execute_with_retry(engine, "select pid from hits").rows] == [pid]


@pytest.mark.parametrize(
    ("driver", "seen_as"),
    [
        ("psycopg2", "SSL connection has been closed unexpectedly"),
        ("psycopg", "query_wait_timeout"),
    ],
)
def test_pgbouncer_query_wait_timeout_is_retried(tls_cluster, tls_db, driver, seen_as) -> None:
    # One server connection, held by another client: the next query waits in
    # PgBouncer's queue until query_wait_timeout, then the pooler drops us.
    from tests.infra.pgbouncer import PgBouncer

    bouncer = PgBouncer(tls_cluster, pool_size=1, settings={"query_wait_timeout": "1"})
    bouncer.start()
    try:
        url = with_driver(bouncer.app_url(tls_db), driver)
        holder = sa.create_engine(url, poolclass=NullPool).connect()
        holder.begin()
        holder.exec_driver_sql("select 1")  # pins the pool's only server connection
        engine = create_migration_engine(url)
        try:
            result = run_with_retry(
                engine,
                lambda conn: conn.exec_driver_sql("select 5").scalar_one(),
                policy=FAST,
                on_retry=lambda a: holder.close(),
            )
        finally:
            holder.close()
    finally:
        bouncer.destroy()
    value, attempts = result
    assert value == 5 and len(attempts) == 2
    assert attempts[0].reason == seen_as
    assert attempts[0].transience is not None
