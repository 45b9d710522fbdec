"""``m.backfill``: batched, resumable mass UPDATEs in no-transaction Python migrations."""

from __future__ import annotations

import logging

import pytest

from flask_safe_migrate.errors import MigrationError
from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from flask_safe_migrate.runner import Event
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.workflow.conftest import execute
from tests.workflow.conftest import invoke

ROWS = 5000

SCHEMA = {
    "0001_items.sql": (
        "CREATE TABLE items (\n"
        "    id integer PRIMARY KEY,\n"
        "    order_index integer,\n"
        "    touched integer NOT NULL DEFAULT 0,\n"
        "    migrated boolean\n"
        ");\n"
        f"INSERT INTO items (id) SELECT g FROM generate_series(1, {ROWS}) AS g;\n"
        "CREATE TABLE switch (fail boolean NOT NULL);\n"
        "INSERT INTO switch VALUES (false);\n"
    ),
}

#: ``touched = touched + 1`` is not idempotent on its own: the ``migrated`` guard
#: is what keeps it at exactly one per row across retries and reruns.
BACKFILL = """
transaction = False


def upgrade(m):
    m.backfill(
        "items",
        set="order_index = id, touched = touched + 1, migrated = true",
        where="migrated IS NOT TRUE",
        batch_size=500,
        sleep=0.01,
    )
"""

#: Fails on row 2600 while switch.fail is true (a bug fixed between two runs).
FAILING = """
transaction = False


def upgrade(m):
    m.backfill(
        "items",
        set=(
            "order_index = id / (CASE WHEN id = 2600 AND (SELECT fail FROM switch) THEN 0"
            " ELSE 1 END), touched = touched + 1, migrated = true"
        ),
        where="migrated IS NOT TRUE",
        batch_size=500,
        sleep=0,
    )
"""


def assert_every_row_done_once(url: str) -> None:
    assert scalar(url, "SELECT count(*) FROM items WHERE migrated") == ROWS
    assert scalar(url, "SELECT count(*) FROM items WHERE order_index IS DISTINCT FROM id") == 0
    assert scalar(url, "SELECT min(touched) || '-' || max(touched) FROM items") == "1-1"


def test_backfill_in_batches_with_progress(pg_url, tmp_path, caplog) -> None:
    directory = write_migrations(tmp_path / "m", {**SCHEMA, "0002_backfill.py": BACKFILL})
    app, ext = make_app(pg_url, directory)
    events: list[Event] = []
    with caplog.at_level(logging.INFO, logger="flask_safe_migrate"):
        outcomes = ext.upgrade(app, on_event=events.append)
    assert [o.state for o in outcomes] == ["applied", "applied"]
    assert_every_row_done_once(pg_url)
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) == ROWS // 500
    assert progress[0].version == "0002" and "500 rows in 1 batches" in progress[0].detail
    assert "5000 rows in 10 batches" in progress[-1].detail
    records = [r for r in caplog.records if getattr(r, "safe_migrate_event", "") == "backfill_done"]
    assert len(records) == 1 and records[0].rows == ROWS and records[0].batches == 10


def test_backfill_cut_mid_way_updates_every_row_exactly_once(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", SCHEMA)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app)
    write_migrations(directory, {"0002_backfill.py": BACKFILL})
    with FaultProxy.for_url(pg_url) as proxy:
        cut = proxy.add_cut(Cut("after_query", match="UPDATE items", nth=3))
        # the reply of the 7th batch's COMMIT is lost: it committed, the client does not know
        commit = proxy.add_cut(Cut("commit_reply_lost", nth=12))
        proxied, ext_proxied = make_app(proxy.url(pg_url), directory)
        events: list[Event] = []
        outcomes = ext_proxied.upgrade(proxied, on_event=events.append)
    assert cut.fired == 1 and commit.fired == 1
    assert outcomes[0].version == "0002" and outcomes[0].attempts >= 2
    assert any(e.kind == "retry" for e in events)
    assert_every_row_done_once(pg_url)
    assert ledger(pg_url) == [("0001", 1), ("0002", outcomes[0].attempts)]


def test_backfill_resumes_after_a_failure(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", SCHEMA)
    app, _ = make_app(pg_url, directory)
    assert invoke(app, "run").exit_code == 0
    # a real, non-transient failure on row 2600: division by zero while the switch is on
    execute(pg_url, "UPDATE switch SET fail = true")
    write_migrations(directory, {"0002_backfill.py": FAILING})
    failed = invoke(app, "run")
    assert failed.exit_code == 1 and "division by zero" in failed.output, failed.output
    assert "runs outside a transaction" in failed.output
    assert "backfill items: 2500 rows in 5 batches" in failed.output
    assert scalar(pg_url, "SELECT count(*) FROM items WHERE migrated") == 2500
    assert ledger(pg_url) == [("0001", 1)]
    execute(pg_url, "UPDATE switch SET fail = false")
    second = invoke(app, "run")
    assert second.exit_code == 0, second.output
    # it carried on at the first row not done: 2500 rows, not 5000
    assert "backfill items: 2500 rows in 5 batches" in second.output
    assert_every_row_done_once(pg_url)


def test_backfill_refused_in_a_transactional_migration(pg_url, tmp_path) -> None:
    transactional = BACKFILL.replace("transaction = False\n", "")
    directory = write_migrations(tmp_path / "m", {**SCHEMA, "0002_backfill.py": transactional})
    app, ext = make_app(pg_url, directory)
    result = invoke(app, "run")
    assert result.exit_code == 1
    assert "m.backfill() commits batch by batch" in result.output
    assert "`transaction = False`" in result.output
    assert ledger(pg_url) == [("0001", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM items WHERE migrated") == 0
    with pytest.raises(MigrationError, match="migration of its own"):
        ext.upgrade(app)
