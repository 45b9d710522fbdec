"""`rollback --to VERSION`: down parts, newest first, exactly once, retried, refused up front."""

from __future__ import annotations

import json

from flask_safe_migrate.faults import Cut
from flask_safe_migrate.faults import FaultProxy
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.workflow.conftest import invoke

FILES = {
    "0001_create_leads.sql": "CREATE TABLE leads (id integer PRIMARY KEY, email text);\n"
    "-- safe-migrate: down\n"
    "DROP TABLE leads;\n",
    "0002_add_score.py": "def upgrade(m):\n"
    "    m.execute('ALTER TABLE leads ADD COLUMN score integer')\n"
    "def downgrade(m):\n"
    "    m.execute('ALTER TABLE leads DROP COLUMN score')\n",
    "0003_notes.sql": "CREATE TABLE notes (id integer PRIMARY KEY);\n"
    "-- safe-migrate: down\n"
    "DROP TABLE notes;\n",
}


def tables(url: str) -> set[str]:
    if url.startswith("sqlite"):
        sql = "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
    return set((scalar(url, sql) or "").split(",")) - {""}


def test_rollback_runs_down_parts_newest_first_and_forgets_them(any_url, tmp_path) -> None:
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", FILES))
    assert invoke(app, "run").exit_code == 0
    result = invoke(app, "rollback", "--to", "0001")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("0003_notes rolled back") < out.index("0002_add_score rolled back")
    assert "Done: 2 rolled back." in out
    assert ledger(any_url) == [("0001", 1)]
    assert "notes" not in tables(any_url) and "leads" in tables(any_url)
    assert "Nothing to roll back" in invoke(app, "rollback", "--to", "1").output
    # and forward again: the files apply cleanly on the reverted schema
    assert invoke(app, "run").exit_code == 0
    everything = json.loads(invoke(app, "rollback", "--to", "0", "--json").stdout)
    assert everything["reverted"] == 3
    assert [m["version"] for m in everything["migrations"]] == ["0003", "0002", "0001"]
    assert {m["state"] for m in everything["migrations"]} == {"pending"}
    assert ledger(any_url) == []
    assert tables(any_url) <= {"safe_migrate_ledger", "safe_migrate_ledger_lease"}


def test_a_migration_without_a_down_part_refuses_before_anything_runs(pg_url, tmp_path) -> None:
    files = dict(FILES)
    files["0002_add_score.py"] = (
        "def upgrade(m):\n    m.execute('ALTER TABLE leads ADD COLUMN s int')\n"
    )
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    invoke(app, "run")
    result = invoke(app, "rollback", "--to", "0")
    assert result.exit_code == 1
    assert "cannot roll back 0002_add_score: it defines no downgrade(m)" in result.stderr
    assert "Nothing was rolled back." in result.stderr and "Traceback" not in result.output
    assert ledger(pg_url) == [("0001", 1), ("0002", 1), ("0003", 1)]  # 0003 not reverted either
    assert "notes" in tables(pg_url)
    # above the one without a down part is fine
    assert invoke(app, "rollback", "--to", "2").exit_code == 0
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]


def test_empty_down_part_and_drifted_file_are_refused(pg_url, tmp_path) -> None:
    files = {"0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\n-- nothing yet\n"}
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    invoke(app, "run")
    empty = invoke(app, "rollback", "--to", "0")
    assert empty.exit_code == 1 and "has an empty down part" in empty.stderr
    (tmp_path / "m" / "0001_t.sql").write_text(files["0001_t.sql"] + "DROP TABLE t;\n")
    drift = invoke(app, "rollback", "--to", "0")
    assert drift.exit_code == 1 and "was edited after it was applied" in drift.stderr
    assert ledger(pg_url) == [("0001", 1)]
    unknown = invoke(app, "rollback", "--to", "7")
    assert unknown.exit_code == 2 and "no migration has version 7" in unknown.stderr


def test_failing_down_part_is_rolled_back_and_reported(pg_url, tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\n"
        "DROP TABLE t;\nDROP TABLE does_not_exist;\n"
    }
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    invoke(app, "run")
    result = invoke(app, "rollback", "--to", "0")
    assert result.exit_code == 1
    assert "0001_t.sql:4" in result.stderr and "does_not_exist" in result.stderr
    assert "it is still applied" in result.stderr
    assert ledger(pg_url) == [("0001", 1)] and "t" in tables(pg_url)


def test_a_lost_commit_reply_is_retried_without_reverting_twice(pg_url, tmp_path) -> None:
    """The down transaction commits but its reply is cut: the retry finds the ledger row gone
    (under the advisory lock) and does not run DROP TABLE again (which would fail)."""
    directory = write_migrations(tmp_path / "m", FILES)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app)
    with FaultProxy.for_url(pg_url) as proxy:
        app2, ext2 = make_app(proxy.url(pg_url), directory, SAFE_MIGRATE_LEASE_TTL=600)
        cuts: list[Cut] = []

        def arm(event) -> None:
            if event.kind == "reverting":
                cuts.append(proxy.add_cut(Cut("commit_reply_lost")))

        runner = ext2.runner(app2)
        try:
            done = runner.rollback(to="0002", on_event=arm)
        finally:
            runner.db.dispose()
    assert cuts and cuts[0].fired == 1
    assert [(d.version, d.state, d.attempts) for d in done] == [("0003", "reverted", 2)]
    assert "attempt 2 after:" in done[0].retries[0]
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert "notes" not in tables(pg_url)


def test_no_transaction_down_part(pg_url, tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a int);\n",
        "0002_idx.sql": "-- safe-migrate: no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"
        "-- safe-migrate: down\n"
        "DROP INDEX CONCURRENTLY IF EXISTS t_a;\n",
    }
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", files))
    invoke(app, "run")
    result = invoke(app, "rollback", "--to", "1")
    assert result.exit_code == 0, result.output
    assert scalar(pg_url, "SELECT to_regclass('t_a') IS NULL") is True
    assert ledger(pg_url) == [("0001", 1)]


def test_rollback_to_an_unknown_version_is_bad_input(any_url, tmp_path) -> None:
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", FILES))
    assert invoke(app, "run").exit_code == 0
    result = invoke(app, "rollback", "--to", "77")
    assert result.exit_code == 2, result.output
    assert "--to 77: no migration has version 77" in result.stderr
    document = json.loads(invoke(app, "rollback", "--to", "77", "--json").stdout)
    assert document["error"]["type"] == "BadInputError" and document["error"]["exit_code"] == 2
    assert ledger(any_url) == [("0001", 1), ("0002", 1), ("0003", 1)]
