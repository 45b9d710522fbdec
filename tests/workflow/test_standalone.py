"""`python -m flask_safe_migrate run|status --url URL --directory DIR`: no app import."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from flask_safe_migrate.standalone import register
from tests.helpers import ledger
from tests.helpers import write_migrations
from tests.infra.postgres import APP_USER

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


NO_TX = {
    "0001_t.sql": "CREATE TABLE t (a integer);\n",
    "0002_i.sql": "-- safe-migrate: no-transaction\n"
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n",
}
POOLER_WARNING = "runs outside a transaction without lock_timeout"


def test_only_a_url_meant_for_migrations_counts_as_direct(pgbouncer, tls_cluster, tmp_path):
    # Through a transaction pooler, a no-transaction migration must not set
    # session timeouts (they would leak to other clients). A generic
    # $DATABASE_URL is often such a pooler URL: the runner checks it.
    cli = CliRunner()
    generic = {"SAFE_MIGRATE_DATABASE_URI": None}
    for env_key, extra, expect_warning in (
        ("DATABASE_URL", [], True),
        ("DATABASE_URL", ["--direct"], False),
        ("SAFE_MIGRATE_DATABASE_URI", [], False),
    ):
        name = tls_cluster.server.create_database(owner=APP_USER)
        try:
            url = pgbouncer.app_url(name)
            directory = write_migrations(tmp_path / name, NO_TX)
            env = {**generic, "DATABASE_URL": None, env_key: url}
            result = cli.invoke(group(), ["run", "--directory", directory, *extra], env=env)
            assert result.exit_code == 0, result.output
            assert (POOLER_WARNING in result.output) is expect_warning, (env_key, result.output)
        finally:
            tls_cluster.server.drop_database(name)


def test_a_bad_url_names_where_it_came_from(tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    cli = CliRunner()
    bad = cli.invoke(group(), ["status", "--url", "not a url", "--directory", directory])
    assert bad.exit_code == 2, bad.output
    assert "--url: 'not a url' is not a database URL" in bad.output
    assert "SAFE_MIGRATE_DATABASE_URI" not in bad.output
    env = {"SAFE_MIGRATE_DATABASE_URI": None, "DATABASE_URL": "bogus://x"}
    scheme = cli.invoke(group(), ["status", "--directory", directory], env=env)
    assert scheme.exit_code == 2, scheme.output
    assert (
        "Error: DATABASE_URL = 'bogus://x' is invalid: the 'bogus' backend is not supported;"
        " use a postgresql:// (or postgres://) or sqlite:// URL." in scheme.output
    )
    assert "Traceback" not in bad.output + scheme.output
