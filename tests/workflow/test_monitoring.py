"""Monitoring: Flask signals around each migration and run, and structured log records."""

from __future__ import annotations

import logging
import typing as t

import pytest

from flask_safe_migrate import signals
from flask_safe_migrate.errors import MigrationError
from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from tests.helpers import make_app
from tests.helpers import write_migrations
from tests.workflow.conftest import invoke

FILES = {
    "0001_create_leads.sql": "CREATE TABLE leads (id integer PRIMARY KEY, email text);\n",
    "0002_add_score.sql": "ALTER TABLE leads ADD COLUMN score integer;\n",
}
BROKEN = {"0003_broken.sql": "ALTER TABLE nowhere ADD COLUMN x integer;\n"}


class Recorder:
    """Connects to all four signals and keeps (signal, sender, kwargs) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, t.Any, dict[str, t.Any]]] = []

    def receiver(self, name: str) -> t.Callable[..., None]:
        def receive(sender: t.Any, **kwargs: t.Any) -> None:
            self.calls.append((name, sender, kwargs))

        return receive

    def connected(self, app: t.Any) -> t.Any:
        import contextlib

        stack = contextlib.ExitStack()
        for name in ("migration_started", "migration_applied", "migration_failed", "run_finished"):
            signal = getattr(signals, name)
            stack.enter_context(signal.connected_to(self.receiver(name), sender=app))
        return stack

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def test_upgrade_sends_signals_before_and_after_each_migration(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", FILES))
    recorder = Recorder()
    with recorder.connected(app):
        outcomes = ext.upgrade(app)
    assert recorder.names() == [
        "migration_started",
        "migration_applied",
        "migration_started",
        "migration_applied",
        "run_finished",
    ]
    assert all(sender is app for _, sender, _ in recorder.calls)
    started = recorder.calls[0][2]
    assert started == {"version": "0001", "name": "create_leads", "bind": None}
    applied = recorder.calls[1][2]
    assert applied["outcome"] == outcomes[0] and applied["outcome"].attempts == 1
    finished = recorder.calls[-1][2]
    assert finished["outcomes"] == tuple(outcomes) and finished["error"] is None
    assert finished["duration_ms"] >= 0
    # nothing to apply: still one run_finished
    with recorder.connected(app):
        assert ext.upgrade(app) == []
    assert recorder.names()[-1] == "run_finished" and recorder.calls[-1][2]["outcomes"] == ()


def test_failed_migration_sends_migration_failed_and_run_finished(pg_url, tmp_path) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", {**FILES, **BROKEN}))
    recorder = Recorder()
    with recorder.connected(app), pytest.raises(MigrationError):
        ext.upgrade(app)
    assert recorder.names()[-3:] == ["migration_started", "migration_failed", "run_finished"]
    failed = recorder.calls[-2][2]
    assert failed["version"] == "0003" and isinstance(failed["error"], MigrationError)
    finished = recorder.calls[-1][2]
    assert [o.version for o in finished["outcomes"]] == ["0001", "0002"]
    assert finished["error"] is failed["error"]


def test_cli_run_sends_signals_and_a_raising_receiver_is_ignored(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", FILES))
    recorder = Recorder()

    def broken(sender: t.Any, **kwargs: t.Any) -> None:
        raise RuntimeError("the metrics backend is down")

    with recorder.connected(app), signals.migration_applied.connected_to(broken, sender=app):
        result = invoke(app, "run")
    assert result.exit_code == 0, result.output
    assert recorder.names().count("migration_applied") == 2
    assert recorder.names()[-1] == "run_finished"


def test_structured_log_records_per_attempt_migration_and_run(pg_url, tmp_path, caplog) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    with FaultProxy.for_url(pg_url) as proxy:
        proxy.add_cut(Cut("after_query", match="ALTER TABLE leads"))
        app, ext = make_app(proxy.url(pg_url), directory)
        with caplog.at_level(logging.DEBUG, logger="flask_safe_migrate"):
            ext.upgrade(app)
    by_event: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        event = getattr(record, "safe_migrate_event", None)
        if event:
            by_event.setdefault(event, []).append(record)
    (attempt,) = by_event["attempt_failed"]
    assert attempt.attempt == 1 and attempt.transience == "disconnect"
    assert "0002_add_score" in attempt.label and attempt.retry_in_s >= 0
    migrations = by_event["migration_applied"]
    assert [(r.version, r.migration, r.attempts) for r in migrations] == [
        ("0001", "0001_create_leads", 1),
        ("0002", "0002_add_score", 2),
    ]
    assert all(isinstance(r.duration_ms, int) for r in migrations)
    (run,) = by_event["run_finished"]
    assert run.ok is True and run.applied == 2 and run.versions == ["0001", "0002"]
    assert "***" not in run.getMessage() and "password" not in run.getMessage()


def test_failure_log_records(pg_url, tmp_path, caplog) -> None:
    app, ext = make_app(pg_url, write_migrations(tmp_path / "m", {**FILES, **BROKEN}))
    with caplog.at_level(logging.INFO, logger="flask_safe_migrate"), pytest.raises(MigrationError):
        ext.upgrade(app)
    events = {getattr(r, "safe_migrate_event", None): r for r in caplog.records}
    failed = events["migration_failed"]
    assert failed.version == "0003" and failed.levelno == logging.ERROR
    assert failed.error_type == "MigrationError" and "nowhere" in failed.error
    run = events["run_finished"]
    assert run.ok is False and run.applied == 2 and run.error_type == "MigrationError"


REVERSIBLE = {
    "0001_create_leads.sql": FILES["0001_create_leads.sql"] + "-- safe-migrate: down\n"
    "DROP TABLE leads;\n",
    "0002_add_score.sql": FILES["0002_add_score.sql"] + "-- safe-migrate: down\n"
    "ALTER TABLE leads DROP COLUMN score;\n",
    "0003_notes.sql": "CREATE TABLE notes (id integer);\n-- safe-migrate: down\n"
    "DROP TABLE nowhere;\n",
}
ROLLBACK_SIGNALS = (
    "migration_reverting",
    "migration_reverted",
    "migration_revert_failed",
    "rollback_finished",
)


def test_cli_rollback_sends_signals_and_log_records(pg_url, tmp_path, caplog) -> None:
    import contextlib

    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", REVERSIBLE))
    assert invoke(app, "run").exit_code == 0
    recorder = Recorder()
    with contextlib.ExitStack() as stack:
        for name in ROLLBACK_SIGNALS:
            signal = getattr(signals, name)
            stack.enter_context(signal.connected_to(recorder.receiver(name), sender=app))
        with caplog.at_level(logging.INFO, logger="flask_safe_migrate"):
            failed = invoke(app, "rollback", "--to", "0")  # 0003's down part fails
    assert failed.exit_code == 1, failed.output
    assert recorder.names() == [
        "migration_reverting",
        "migration_revert_failed",
        "rollback_finished",
    ]
    assert recorder.calls[1][2]["version"] == "0003"
    assert isinstance(recorder.calls[2][2]["error"], MigrationError)
    events = [getattr(r, "safe_migrate_event", None) for r in caplog.records]
    assert "migration_revert_failed" in events and events[-1] == "rollback_finished"
    assert caplog.records[-1].ok is False

    (tmp_path / "m" / "0003_notes.sql").write_text(
        "CREATE TABLE notes (id integer);\n-- safe-migrate: down\nDROP TABLE notes;\n"
    )
    invoke(app, "repair", "--yes")
    recorder.calls.clear()
    caplog.clear()
    with contextlib.ExitStack() as stack:
        for name in ROLLBACK_SIGNALS:
            signal = getattr(signals, name)
            stack.enter_context(signal.connected_to(recorder.receiver(name), sender=app))
        with caplog.at_level(logging.INFO, logger="flask_safe_migrate"):
            done = invoke(app, "rollback", "--to", "1")
    assert done.exit_code == 0, done.output
    assert recorder.names() == [
        "migration_reverting",
        "migration_reverted",
        "migration_reverting",
        "migration_reverted",
        "rollback_finished",
    ]
    assert all(sender is app for _, sender, _ in recorder.calls)
    first, second = recorder.calls[1][2], recorder.calls[3][2]
    assert (first["version"], second["version"]) == ("0003", "0002")
    assert second["outcome"].state == "reverted" and second["outcome"].attempts == 1
    assert recorder.calls[4][2]["outcomes"] == (first["outcome"], second["outcome"])
    records = [r for r in caplog.records if getattr(r, "safe_migrate_event", None)]
    reverted = [r for r in records if r.safe_migrate_event == "migration_reverted"]
    assert [(r.version, r.migration, r.attempts) for r in reverted] == [
        ("0003", "0003_notes", 1),
        ("0002", "0002_add_score", 1),
    ]
    assert records[-1].safe_migrate_event == "rollback_finished"
    assert records[-1].ok is True and records[-1].versions == ["0003", "0002"]
