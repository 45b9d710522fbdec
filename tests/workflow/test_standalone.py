"""`python -m flask_safe_migrate run|status --url URL --directory DIR`: no app import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from flask_safe_migrate.standalone import register
from tests.helpers import ledger
from tests.helpers import write_migrations

FILES = {
    "0001_t.sql": "CREATE TABLE t (a integer);\n",
    "0002_u.sql": "CREATE TABLE u (a integer);\n",
}


def group() -> click.Group:
    @click.group()
    def main() -> None:
        pass

    register(main)
    return main


def test_run_and_status_with_a_url_and_a_directory(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    cli = CliRunner()
    status = cli.invoke(group(), ["status", "--url", pg_url, "--directory", directory, "--check"])
    assert status.exit_code == 1 and "0 applied, 2 pending" in status.output
    run = cli.invoke(group(), ["run", "--url", pg_url, "--directory", directory, "--to", "1"])
    assert run.exit_code == 0, run.output
    assert "0001_t applied" in run.output
    assert ledger(pg_url) == [("0001", 1)]
    env = {"SAFE_MIGRATE_DATABASE_URI": pg_url, "SAFE_MIGRATE_DIRECTORY": directory}
    dry = cli.invoke(group(), ["run", "--dry-run"], env=env)
    assert dry.exit_code == 0 and "1 migration would be applied" in dry.output
    done = cli.invoke(group(), ["run", "--json"], env=env)
    assert json.loads(done.stdout)["applied"] == 1
    clean = cli.invoke(group(), ["status", "--json", "--check"], env=env)
    assert clean.exit_code == 0 and json.loads(clean.stdout)["counts"]["applied"] == 2


def test_bad_setting_from_the_environment_is_a_usage_error(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    env = {"SAFE_MIGRATE_LOCK_TIMEOUT": "soon"}
    result = CliRunner().invoke(
        group(), ["run", "--url", pg_url, "--directory", directory], env=env
    )
    assert result.exit_code == 2 and "SAFE_MIGRATE_LOCK_TIMEOUT" in result.output


def test_python_dash_m_in_a_subprocess(pg_url, tmp_path) -> None:
    import flask_safe_migrate

    main = os.path.join(os.path.dirname(flask_safe_migrate.__file__), "__main__.py")
    if not os.path.exists(main):
        pytest.skip("flask_safe_migrate/__main__.py is not there yet")
    directory = write_migrations(tmp_path / "m", FILES)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask_safe_migrate",
            "run",
            "--url",
            pg_url,
            "--directory",
            directory,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Done: 2 applied" in result.stdout
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
