"""`squash --to VERSION`: old databases keep working, new ones run one file."""

from __future__ import annotations

import json
import os

from tests.helpers import fingerprint
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import write_migrations
from tests.workflow.conftest import invoke

FILES = {
    "0001_create_leads.sql": (
        "-- safe-migrate: lock-timeout=5s\n"
        "CREATE TABLE leads (id integer PRIMARY KEY, email text);\n"
        "INSERT INTO leads VALUES (1, 'a@example.com') -- a trailing comment\n"
        "-- safe-migrate: down\n"
        "DROP TABLE leads;\n"
    ),
    "0002_add_score.sql": "ALTER TABLE leads ADD COLUMN score integer DEFAULT 0;\n",
    "0003_add_note.sql": "ALTER TABLE leads ADD COLUMN note text;\nCREATE INDEX leads_note ON leads (note)",
    "0004_add_team.sql": "ALTER TABLE leads ADD COLUMN team text;\n",
}


def test_squash_keeps_old_databases_and_builds_new_ones(pg_server, pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    old_app, _ = make_app(pg_url, directory)
    assert invoke(old_app, "run").exit_code == 0
    reference = fingerprint(pg_url)

    result = invoke(old_app, "squash", "--to", "3")
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "0003_squashed.sql" in result.output
    assert sorted(os.listdir(directory)) == ["0003_squashed.sql", "0004_add_team.sql", "squashed"]
    assert sorted(os.listdir(os.path.join(directory, "squashed"))) == [
        "0001_create_leads.sql",
        "0002_add_score.sql",
        "0003_add_note.sql",
    ]
    text = open(os.path.join(directory, "0003_squashed.sql")).read()
    assert text.startswith("-- safe-migrate: squashes=0001,0002,0003\n")
    assert "DROP TABLE" not in text  # up parts only

    # the old database: nothing pending, nothing missing, nothing to run, ledger untouched
    check = invoke(old_app, "status", "--check")
    assert check.exit_code == 0, check.output
    assert "0003 squashed" in check.output and "2 applied, 0 pending, 0 drift, 0 missing" in (
        check.output
    )
    document = json.loads(invoke(old_app, "status", "--json").stdout)
    assert [(m["version"], m["state"]) for m in document["migrations"]] == [
        ("0003", "applied"),
        ("0004", "applied"),
    ]
    again = invoke(old_app, "run")
    assert again.exit_code == 0 and "Nothing to apply" in again.output, again.output
    assert ledger(pg_url) == [("0001", 1), ("0002", 1), ("0003", 1), ("0004", 1)]
    # history: the rows of the squashed files are applied, not missing
    history = invoke(old_app, "history")
    assert history.exit_code == 0 and "[missing]" not in history.output, history.output
    assert "0001 create_leads" in history.output
    assert "(squashed into 0003_squashed)" in history.output
    rows = json.loads(invoke(old_app, "history", "--json").stdout)["migrations"]
    assert [(m["version"], m["state"]) for m in rows] == [
        ("0001", "applied"),
        ("0002", "applied"),
        ("0003", "applied"),
        ("0004", "applied"),
    ]
    assert rows[0]["squashed_into"] == "0003_squashed" and rows[3]["squashed_into"] is None

    # a new database runs the squash file, then what follows it
    name = pg_server.create_database()
    try:
        new_url = pg_server.url_for(name)
        new_app, _ = make_app(new_url, directory)
        assert invoke(new_app, "status", "--check").exit_code == 1
        run = invoke(new_app, "run")
        assert run.exit_code == 0, run.output
        assert "0003_squashed applied" in run.output and "0004_add_team applied" in run.output
        assert ledger(new_url) == [("0003", 1), ("0004", 1)]
        assert fingerprint(new_url) == reference
        assert invoke(new_app, "status", "--check").exit_code == 0

        # later migrations apply to both kinds of database
        write_migrations(
            directory, {"0005_add_city.sql": "ALTER TABLE leads ADD COLUMN city text;\n"}
        )
        for app in (old_app, new_app):
            later = invoke(app, "run")
            assert later.exit_code == 0 and "0005_add_city applied" in later.output, later.output
            assert invoke(app, "status", "--check").exit_code == 0
        assert fingerprint(new_url) == fingerprint(pg_url)
    finally:
        pg_server.drop_database(name)


def test_squash_refuses_a_database_half_way_through_the_squashed_files(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    app, _ = make_app(pg_url, directory)
    assert invoke(app, "run", "--to", "1").exit_code == 0
    assert invoke(app, "squash", "--to", "0003").exit_code == 0
    result = invoke(app, "run")
    assert result.exit_code == 1
    assert "applied only part of the migrations squashed into 0003_squashed" in result.output
    assert "(0002, 0003) first" in result.output and "squashed/" in result.output
    assert ledger(pg_url) == [("0001", 1)]
    status = invoke(app, "status", "--check")
    assert status.exit_code == 1 and "0 missing" in status.output


def test_squash_refuses_python_and_no_transaction_migrations(pg_url, tmp_path) -> None:
    files = {
        **FILES,
        "0005_index.sql": (
            "-- safe-migrate: no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_team ON leads (team);\n"
        ),
        "0006_fill.py": "def upgrade(m):\n    m.execute('UPDATE leads SET team = 1')\n",
    }
    directory = write_migrations(tmp_path / "m", files)
    app, _ = make_app(pg_url, directory)
    before = sorted(os.listdir(directory))
    no_tx = invoke(app, "squash", "--to", "5")
    assert no_tx.exit_code == 2
    assert "0005_index.sql: runs without a transaction" in no_tx.output
    assert "--to 0004" in no_tx.output and "Nothing was changed" in no_tx.output
    py = invoke(app, "squash", "--to", "6", "--json")
    assert py.exit_code == 2 and json.loads(py.stdout)["error"]["type"] == "BadInputError"
    one = invoke(app, "squash", "--to", "1")
    assert one.exit_code == 2 and "nothing to squash" in one.output
    assert sorted(os.listdir(directory)) == before


def test_squash_on_sqlite(tmp_path) -> None:
    files = {
        "0001_t.sql": "CREATE TABLE t (a integer);\n",
        "0002_u.sql": "CREATE TABLE u (a integer);\n",
        "0003_v.sql": "CREATE TABLE v (a integer);\n",
    }
    directory = write_migrations(tmp_path / "m", files)
    old_app, _ = make_app(f"sqlite:///{tmp_path / 'old.db'}", directory)
    assert invoke(old_app, "run").exit_code == 0
    result = invoke(old_app, "squash", "--to", "2")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(directory)) == ["0002_squashed.sql", "0003_v.sql", "squashed"]
    assert invoke(old_app, "status", "--check").exit_code == 0
    assert "[missing]" not in invoke(old_app, "history").output
    new_url = f"sqlite:///{tmp_path / 'new.db'}"
    new_app, _ = make_app(new_url, directory)
    run = invoke(new_app, "run")
    assert run.exit_code == 0 and "0002_squashed applied" in run.output, run.output
    assert ledger(new_url) == [("0002", 1), ("0003", 1)]
    assert invoke(new_app, "status", "--check").exit_code == 0
