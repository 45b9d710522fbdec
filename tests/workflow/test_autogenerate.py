"""`new --autogenerate` and `check` on a real model set, against real Postgres.

Version 1 of the models is written to an empty database as one transactional
file; version 2 adds a table, a column, an index and a foreign key on an existing
table, which must come out in lock-safe forms (a no-transaction file with
CREATE INDEX CONCURRENTLY and VALIDATE CONSTRAINT, the FK added NOT VALID).
"""

from __future__ import annotations

import json
import os

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_safe_migrate import SafeMigrate
from flask_safe_migrate.loader import discover
from tests.helpers import ledger
from tests.helpers import scalar
from tests.workflow.conftest import invoke
from tests.workflow.conftest import require

require("alembic", "alembic")


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
            score = sa.Column(
                sa.BigInteger if version >= 3 else sa.Integer, nullable=True, index=True
            )

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


def example_app_with(url: str, directory: str, *, tightened: bool) -> Flask:
    """An app on the example CRM's real model set (example_app/models.py).

    ``tightened`` adds, on copies of those tables, what autogenerate used to
    write in blocking forms: a UNIQUE constraint on an existing table
    (users.name) and a nullable column made NOT NULL (leads.company).
    """
    from example_app.models import db as example_db

    metadata = sa.MetaData()
    for table in example_db.metadata.sorted_tables:
        table.to_metadata(metadata)
    if tightened:
        metadata.tables["users"].append_constraint(
            sa.UniqueConstraint("name", name="users_name_key")
        )
        metadata.tables["leads"].c.company.nullable = False
    app = Flask("sm_example_models")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    db = SQLAlchemy(app, metadata=metadata)
    SafeMigrate(app, db, directory=directory)
    return app


def test_autogenerate_and_check_on_the_example_app_models(pg_url, tmp_path) -> None:
    from tests.helpers import copy_example_migrations
    from tests.workflow.conftest import execute

    directory = copy_example_migrations(tmp_path / "migrations")
    app = example_app_with(pg_url, directory, tightened=False)
    assert invoke(app, "run").exit_code == 0
    same = invoke(app, "check")
    assert same.exit_code == 0, same.output  # the models mirror the migrations' end state
    execute(
        pg_url,
        "INSERT INTO users (email, name) VALUES ('a@x.org', 'Ada'), ('b@x.org', 'Bob')",
        "INSERT INTO leads (email, company, status_id) VALUES ('l@x.org', 'Acme', 1)",
    )

    tight = example_app_with(pg_url, directory, tightened=True)
    differs = invoke(tight, "check")
    assert differs.exit_code == 1, differs.output
    assert "CHECK (company IS NOT NULL) NOT VALID" in differs.output
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_name_key" in differs.output
    result = invoke(tight, "new", "tighten", "--autogenerate")
    assert result.exit_code == 0, result.output
    assert "verify: the new files pass" in result.output
    names = sorted(n for n in os.listdir(directory) if n.endswith(".sql"))[-3:]
    assert names == ["0011_tighten.sql", "0012_tighten_concurrently.sql", "0013_tighten_finish.sql"]
    main, safe, finish = (open(os.path.join(directory, n)).read() for n in names)
    assert (
        "ALTER TABLE leads ADD CONSTRAINT leads_company_not_null CHECK (company IS NOT NULL) "
        "NOT VALID;" in main
    )
    assert "SET NOT NULL" not in main and "UNIQUE" not in main
    assert "-- safe-migrate: no-transaction" in safe
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_name_key ON users (name);" in safe
    assert "ALTER TABLE leads VALIDATE CONSTRAINT leads_company_not_null;" in safe
    assert "ALTER TABLE users ADD CONSTRAINT users_name_key UNIQUE USING INDEX users_name_key;" in (
        finish
    )
    up = finish.split("-- safe-migrate: down")[0]
    assert up.index("ALTER COLUMN company SET NOT NULL") < up.index(
        "DROP CONSTRAINT leads_company_not_null"
    )
    # the project's own verifier accepts the whole directory, new files included
    verified = invoke(tight, "verify")
    assert verified.exit_code == 0, verified.output

    run = invoke(tight, "run")
    assert run.exit_code == 0, run.output
    assert scalar(
        pg_url,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'leads'::regclass "
        "AND attname = 'company'",
    )
    assert (
        scalar(pg_url, "SELECT contype FROM pg_constraint WHERE conname = 'users_name_key'") == "u"
    )
    assert (
        scalar(
            pg_url, "SELECT count(*) FROM pg_constraint WHERE conname = 'leads_company_not_null'"
        )
        == 0
    )
    assert invoke(tight, "check").exit_code == 0

    # the three generated down parts revert to exactly the example schema
    back = invoke(tight, "rollback", "--to", "10")
    assert back.exit_code == 0, back.output
    for name in names:
        os.remove(os.path.join(directory, name))
    again = invoke(app, "check")
    assert again.exit_code == 0, again.output


def test_autogenerate_reports_what_verify_finds_in_the_new_files(pg_url, tmp_path) -> None:
    # integer -> bigint has no lock-safe form (it rewrites the table under
    # ACCESS EXCLUSIVE); verify's finding on the new file must reach the user.
    directory = str(tmp_path / "m")
    os.makedirs(directory)
    app = make_model_app(pg_url, directory, 2)
    assert invoke(app, "new", "initial", "--autogenerate").exit_code == 0
    assert invoke(app, "run").exit_code == 0
    app3 = make_model_app(pg_url, directory, 3)
    result = invoke(app3, "new", "wider score", "--autogenerate")
    assert result.exit_code == 0, result.output
    written = os.path.relpath(os.path.join(directory, "0002_wider_score.sql"))
    assert f"created {written}" in result.output
    assert "verify found 1 problem(s) in the new files (1 error(s))" in result.output
    assert "0002_wider_score.sql:" in result.output and "fix:" in result.output
    os.remove(os.path.join(directory, "0002_wider_score.sql"))
    as_json = invoke(app3, "new", "wider score", "--autogenerate", "--json")
    document = json.loads(as_json.stdout)
    assert [f["path"] for f in document["findings"]] == ["0002_wider_score.sql"]
    assert document["findings"][0]["severity"] == "error"
    assert document["findings"][0]["rule"] == "rewriting-type-change"


def test_check_is_retried_on_a_dropped_connection(pg_url, tmp_path) -> None:
    from flask_safe_migrate.faults import Cut
    from flask_safe_migrate.faults import FaultProxy

    directory = str(tmp_path / "m")
    os.makedirs(directory)
    app = make_model_app(pg_url, directory, 1)
    assert invoke(app, "new", "initial", "--autogenerate").exit_code == 0
    assert invoke(app, "run").exit_code == 0
    with FaultProxy.for_url(pg_url) as proxy:
        # the connection drops in the middle of Alembic's reflection of the columns
        cut = proxy.add_cut(Cut("after_query", match="pg_catalog.pg_attribute"))
        through_proxy = make_model_app(proxy.url(pg_url), directory, 1)
        result = invoke(through_proxy, "check")
    assert cut.fired == 1
    assert result.exit_code == 0, result.output
    assert "No changes" in result.output
