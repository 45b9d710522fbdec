"""The retry executor against real Postgres, a real fault proxy and real PgBouncer.

Only the clock and ``sleep`` are replaced (in the backoff and deadline tests),
because real outages cannot be waited for in a unit test.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

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
    assert attempts[0].backend_pid != attempts[1].backend_pid
    assert _hits(pg_url) == [pid]  # exactly once, by the second backend


def test_terminated_backend_is_retried_on_a_new_connection(pg_url) -> None:
    _create_hits(pg_url)
    engine = create_migration_engine(pg_url)
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
    policy = RetryPolicy(
        max_attempts=8,
        backoff_base=0.5,
        backoff_cap=4.0,
        deadline=None,
        sleep=fake.sleep,
        clock=fake.clock,
    )
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


def test_deadline_stops_new_attempts() -> None:
    fake = FakeTime()
    policy = RetryPolicy(
        max_attempts=1000,
        backoff_base=1.0,
        backoff_cap=8.0,
        deadline=20.0,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    engine = create_migration_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    start = fake.now
    with pytest.raises(RetriesExhausted) as info:
        execute_with_retry(engine, "select 1", policy=policy)
    assert all(a.started_at - start < 20.0 for a in info.value.attempts)
    assert sum(fake.sleeps) < 20.0
    assert 3 <= len(info.value.attempts) < 1000


def test_each_retry_is_logged_with_attempt_error_and_sleep(pg_url, proxy, caplog) -> None:
    _create_hits(pg_url)
    proxy.add_cut(Cut("before_query", match=r"insert into hits"))
    engine = create_migration_engine(proxy.url(pg_url))
    with caplog.at_level(logging.WARNING, logger="flask_safe_migrate"):
        run_with_retry(engine, _pid_and_insert, policy=FAST, label="unit")
    (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
    message = record.getMessage()
    assert "attempt 1/5" in message and "disconnect" in message and "OperationalError" in message
    assert "retrying in 0." in message


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
    reason = attempts[0].reason or ""
    assert "SSL" in reason or "closed the connection" in reason, reason
    assert attempts[0].transience is Transience.DISCONNECT
    assert execute_with_retry(engine, "select count(*) from hits").scalar() == 1


def test_bad_password_through_pgbouncer_fails_at_once_and_is_never_printed(pgb_url, caplog) -> None:
    url = sa.engine.make_url(pgb_url)
    real_password = url.password
    wrong = "wrong-" + "x" * 12
    bad = url.set(password=wrong).render_as_string(hide_password=False)
    engine = create_migration_engine(bad)
    slept: list[float] = []
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        with pytest.raises(sa.exc.OperationalError) as info:
            execute_with_retry(engine, "select 1", policy=RetryPolicy(sleep=slept.append))
    assert slept == []
    assert "authentication failed" in str(info.value)
    from flask_safe_migrate.redact import redact

    printed = redact("".join(traceback.format_exception(info.value))) + caplog.text
    assert wrong not in printed and real_password not in printed


def test_exhausted_error_and_logs_never_show_the_password(caplog) -> None:
    secret = "hunter2-very-secret"
    engine = create_migration_engine(f"postgresql://app:{secret}@127.0.0.1:{free_port()}/db")
    fake = FakeTime()
    with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
        with pytest.raises(RetriesExhausted) as info:
            execute_with_retry(
                engine,
                "select 1",
                policy=RetryPolicy(max_attempts=3, sleep=fake.sleep, clock=fake.clock),
            )
    assert len(info.value.attempts) == 3
    assert secret not in str(info.value)
    assert secret not in caplog.text
    assert secret not in repr(engine)


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_both_drivers_retry_a_dropped_connection_on_a_new_backend(pg_url, proxy, driver) -> None:
    _create_hits(pg_url)
    url = sa.engine.make_url(proxy.url(pg_url)).set(drivername=f"postgresql+{driver}")
    engine = create_migration_engine(url.render_as_string(hide_password=False))
    proxy.add_cut(Cut("after_query", match=r"insert into hits"))
    pid, attempts = run_with_retry(engine, _pid_and_insert, policy=FAST)
    assert len(attempts) == 2 and attempts[0].transience is Transience.DISCONNECT
    assert attempts[0].backend_pid != attempts[1].backend_pid
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
