"""`adopt-alembic` on a real Alembic history, upgraded online against real Postgres."""

from __future__ import annotations

import json
import os
import re

from flask_safe_migrate.adopt import _logging_kept
from tests.helpers import ledger
from tests.helpers import make_app
from tests.helpers import scalar
from tests.workflow.conftest import invoke
from tests.workflow.conftest import require
from tests.workflow.conftest import schema

alembic = require("alembic", "alembic")

REVISIONS = [
    (
        "a1b2c3",
        "create users",
        "    op.create_table(\n"
        "        'users',\n"
        "        sa.Column('id', sa.Integer, primary_key=True),\n"
        "        sa.Column('name', sa.String(50), nullable=False),\n"
        "    )\n",
    ),
    (
        "d4e5f6",
        "add users email",
        "    op.add_column('users', sa.Column('email', sa.String(200)))\n"
        "    op.create_index('ix_users_email', 'users', ['email'], unique=True)\n",
    ),
    (
        "0a9b8c",
        "create teams",
        "    op.create_table(\n"
        "        'teams',\n"
        "        sa.Column('id', sa.Integer, primary_key=True),\n"
        "        sa.Column('owner_id', sa.Integer, sa.ForeignKey('users.id')),\n"
        "        sa.Column('note', sa.Text, server_default='100%'),\n"
        "    )\n",
    ),
]


def alembic_project(tmp_path, url: str, upgrade_to: str | None) -> str:
    """`alembic init`, three revisions, `alembic upgrade` online; returns the alembic.ini path."""
    from alembic import command
    from alembic.config import Config

    ini = str(tmp_path / "alembic.ini")
    command.init(Config(ini), str(tmp_path / "alembic"))
    text = open(ini).read()
    text = re.sub(r"^sqlalchemy.url = .*$", "sqlalchemy.url = " + url, text, flags=re.M)
    open(ini, "w").write(text)
    config = Config(ini)
    down = None
    for rev, message, body in REVISIONS:
        script = command.revision(config, message=message, rev_id=rev, head="head")
        assert script is not None and script.down_revision == down
        source = open(script.path).read().replace("    pass\n", body, 1)
        open(script.path, "w").write(source)
        down = rev
    if upgrade_to:
        # env.py's fileConfig() would disable this package's logger for later tests
        with _logging_kept():
            command.upgrade(config, upgrade_to)
    return ini


def test_adopt_alembic_convert(pg_url, fresh_url, tmp_path) -> None:
    ini = alembic_project(tmp_path, pg_url, "head")
    directory = tmp_path / "safe_migrations"
    app, _ = make_app(pg_url, directory)
    result = invoke(app, "adopt-alembic", "--alembic", ini, "--convert")
    assert result.exit_code == 0, result.output
    assert "Alembic revision 0a9b8c" in result.output
    assert sorted(os.listdir(directory)) == [
        "0001_create_users.sql",
        "0002_add_users_email.sql",
        "0003_create_teams.sql",
    ]
    first = open(directory / "0001_create_users.sql").read()
    assert "CREATE TABLE users" in first and "alembic_version" not in first
    assert "BEGIN" not in first and "COMMIT" not in first
    # recorded, not run; the Alembic table is left alone
    assert ledger(pg_url) == [("0001", 0), ("0002", 0), ("0003", 0)]
    assert scalar(pg_url, "SELECT version_num FROM alembic_version") == "0a9b8c"
    check = invoke(app, "status", "--check")
    assert check.exit_code == 0, check.output
    assert "Nothing to apply" in invoke(app, "run").output

    # the converted files build the same schema on a fresh database
    fresh_app, _ = make_app(fresh_url, directory)
    run = invoke(fresh_app, "run")
    assert run.exit_code == 0, run.output
    assert ledger(fresh_url) == [("0001", 1), ("0002", 1), ("0003", 1)]
    assert schema(fresh_url) == schema(pg_url)

    # adopting twice is refused with advice, and nothing changes
    again = invoke(app, "adopt-alembic", "--alembic", ini, "--convert")
    assert again.exit_code == 2 and "already has migrations" in again.output


def test_adopt_alembic_behind_head_converts_the_rest_as_pending(
    pg_url, fresh_url, tmp_path
) -> None:
    ini = alembic_project(tmp_path, pg_url, "d4e5f6")
    app, _ = make_app(pg_url, tmp_path / "safe_migrations")
    default = invoke(app, "adopt-alembic", "--alembic", ini)
    assert default.exit_code == 2 and "not at the head" in default.output
    result = invoke(app, "adopt-alembic", "--alembic", ini, "--convert", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["alembic_revision"] == "d4e5f6"
    assert [m["version"] for m in document["recorded"]] == ["0001", "0002"]
    status = invoke(app, "status", "--check")
    assert status.exit_code == 1 and "0003 create_teams" in status.output
    run = invoke(app, "run")
    assert run.exit_code == 0 and "0003_create_teams applied" in run.output, run.output
    # same schema as Alembic's own head
    from alembic import command
    from alembic.config import Config

    config = Config(ini)
    config.set_main_option("sqlalchemy.url", fresh_url)
    with _logging_kept():
        command.upgrade(config, "head")
    assert schema(fresh_url) == schema(pg_url)


def test_adopt_alembic_default_writes_one_baseline_file(pg_url, fresh_url, tmp_path) -> None:
    ini = alembic_project(tmp_path, pg_url, "head")
    directory = tmp_path / "safe_migrations"
    app, _ = make_app(pg_url, directory)
    result = invoke(app, "adopt-alembic", "--alembic", ini)
    assert result.exit_code == 0, result.output
    assert os.listdir(directory) == ["0001_alembic_baseline.sql"]
    assert ledger(pg_url) == [("0001", 0)]
    assert invoke(app, "status", "--check").exit_code == 0
    fresh_app, _ = make_app(fresh_url, directory)
    assert invoke(fresh_app, "run").exit_code == 0
    assert schema(fresh_url) == schema(pg_url)


def test_adopt_alembic_needs_an_alembic_database(pg_url, tmp_path) -> None:
    ini = alembic_project(tmp_path, pg_url, None)
    app, _ = make_app(pg_url, tmp_path / "safe_migrations")
    result = invoke(app, "adopt-alembic", "--alembic", ini, "--convert")
    assert result.exit_code == 2
    assert "no alembic_version table" in result.output and "baseline VERSION" in result.output
    assert not (tmp_path / "safe_migrations").exists()
