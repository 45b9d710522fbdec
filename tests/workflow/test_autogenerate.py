"""`new --autogenerate` and `check` on a real model set, against real Postgres.

Version 1 of the models is written to an empty database as one transactional
file; version 2 adds a table, a column, an index and a foreign key on an existing
table, which must come out in lock-safe forms (a no-transaction file with
CREATE INDEX CONCURRENTLY and VALIDATE CONSTRAINT, the FK added NOT VALID).
"""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_safe_migrate import SafeMigrate
from flask_safe_migrate.loader import discover
from tests.helpers import ledger
from tests.helpers import scalar
from tests.workflow.conftest import invoke

pytest.importorskip("alembic")


def make_model_app(url: str, directory: str, version: int) -> Flask:
    app = Flask("sm_autogen_app")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    db = SQLAlchemy(app)

    class User(db.Model):  # type: ignore[name-defined]
        __tablename__ = "users"
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(200), nullable=False, unique=True)

    class Lead(db.Model):  # type: ignore[name-defined]
        __tablename__ = "leads"
        id = sa.Column(sa.Integer, primary_key=True)
        owner_id = sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False)
        email = sa.Column(sa.String(200), nullable=False, index=True)
        if version >= 2:
            team_id = sa.Column(sa.Integer, sa.ForeignKey("teams.id"), nullable=True)
            score = sa.Column(sa.Integer, nullable=True, index=True)

    if version >= 2:

        class Team(db.Model):  # type: ignore[name-defined]
            __tablename__ = "teams"
            id = sa.Column(sa.Integer, primary_key=True)
            name = sa.Column(sa.Text, nullable=False)

    SafeMigrate(app, db, directory=directory)
    return app


def test_autogenerate_writes_lock_safe_files_and_check_agrees(pg_url, tmp_path) -> None:
    directory = str(tmp_path / "m")
    os.makedirs(directory)
    app = make_model_app(pg_url, directory, 1)
    assert invoke(app, "check").exit_code == 1  # empty database: everything differs

    first = invoke(app, "new", "initial", "--autogenerate")
    assert first.exit_code == 0, first.output
    assert sorted(os.listdir(directory)) == ["0001_initial.sql"]
    text = open(os.path.join(directory, "0001_initial.sql")).read()
    assert "CREATE TABLE users" in text and "CREATE TABLE leads" in text
    assert "CONCURRENTLY" not in text  # indexes of new tables stay plain
    assert "-- safe-migrate: down" in text and "DROP TABLE leads" in text
    assert "safe_migrate_ledger" not in text
    assert invoke(app, "run").exit_code == 0
    check = invoke(app, "check")
    assert check.exit_code == 0, check.output
    assert "No changes" in check.output

    nothing = invoke(app, "new", "again", "--autogenerate")
    assert nothing.exit_code == 0 and "No changes" in nothing.output
    assert sorted(os.listdir(directory)) == ["0001_initial.sql"]

    app2 = make_model_app(pg_url, directory, 2)
    differs = invoke(app2, "check", "--json")
    assert differs.exit_code == 1
    changes = json.loads(differs.stdout)["changes"]
    assert any("CREATE TABLE teams" in c for c in changes), changes

    second = invoke(app2, "new", "teams", "--autogenerate")
    assert second.exit_code == 0, second.output
    assert sorted(os.listdir(directory)) == [
        "0001_initial.sql",
        "0002_teams.sql",
        "0003_teams_concurrently.sql",
    ]
    main = open(os.path.join(directory, "0002_teams.sql")).read()
    safe = open(os.path.join(directory, "0003_teams_concurrently.sql")).read()
    assert "CREATE TABLE teams" in main and "ADD COLUMN team_id" in main
    assert "FOREIGN KEY(team_id) REFERENCES teams (id) NOT VALID" in main
    assert "CREATE INDEX" not in main
    assert safe.startswith("-- teams") and "-- safe-migrate: no-transaction" in safe
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_leads_score ON leads (score)" in safe
    assert "VALIDATE CONSTRAINT leads_team_id_fkey" in safe
    migrations = discover(directory)
    assert not migrations[2].transactional and migrations[2].statements()  # passes the checks

    run = invoke(app2, "run")
    assert run.exit_code == 0, run.output
    assert scalar(
        pg_url,
        "SELECT convalidated FROM pg_constraint WHERE conname = 'leads_team_id_fkey'",
    )
    assert scalar(
        pg_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_leads_score'::regclass"
    )
    assert invoke(app2, "check").exit_code == 0

    # the generated down parts revert cleanly, and then the models differ again
    back = invoke(app2, "rollback", "--to", "1")
    assert back.exit_code == 0, back.output
    assert ledger(pg_url) == [("0001", 1)]
    assert scalar(pg_url, "SELECT to_regclass('teams') IS NULL") is True
    pending = invoke(app, "check")
    assert pending.exit_code == 1 and "2 pending" in pending.stderr
    for name in ("0002_teams.sql", "0003_teams_concurrently.sql"):
        os.remove(os.path.join(directory, name))
    assert invoke(app, "check").exit_code == 0  # back to exactly the version-1 schema


def test_autogenerate_refuses_while_migrations_are_pending(pg_url, tmp_path) -> None:
    directory = str(tmp_path / "m")
    os.makedirs(directory)
    with open(os.path.join(directory, "0001_x.sql"), "w") as fh:
        fh.write("CREATE TABLE x (a int);\n")
    app = make_model_app(pg_url, directory, 1)
    result = invoke(app, "new", "more", "--autogenerate")
    assert result.exit_code == 1 and "not up to date (1 pending: 0001_x)" in result.stderr
    assert sorted(os.listdir(directory)) == ["0001_x.sql"]
