"""`python -m flask_safe_migrate run|status|verify --url URL --directory DIR`: one command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from flask_safe_migrate.__main__ import main
from tests.helpers import ledger
from tests.helpers import write_migrations

FILES = {
    "0001_t.sql": "CREATE TABLE t (a integer);\n",
    "0002_u.sql": "CREATE TABLE u (a integer);\n",
}
UNSAFE = {"0003_fill.sql": "UPDATE t SET a = 1;\n"}


def test_one_command_line_for_run_status_and_verify(pg_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    common = ["--url", pg_url, "--directory", directory]
    cli = CliRunner()
    verified = cli.invoke(main, ["verify", *common, "--format", "json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["points"][2]["ok"] is True
    assert cli.invoke(main, ["run", *common]).exit_code == 0
    assert cli.invoke(main, ["status", *common, "--check"]).exit_code == 0
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    # --directory is what verify reads (an unsafe file there fails it)
    write_migrations(directory, UNSAFE)
    failed = cli.invoke(main, ["verify", *common])
    assert failed.exit_code == 1 and "0003_fill.sql" in failed.output, failed.output
    env = {"SAFE_MIGRATE_DIRECTORY": directory}
    from_env = cli.invoke(main, ["verify"], env=env)
    assert from_env.exit_code == 1 and "0003_fill.sql" in from_env.output


def test_usage_errors_are_json_when_json_was_asked_for(tmp_path) -> None:
    cli = CliRunner()
    env = {"SAFE_MIGRATE_DATABASE_URI": None, "DATABASE_URL": None}
    missing_url = cli.invoke(main, ["status", "--json"], env=env)
    assert missing_url.exit_code == 2
    error = json.loads(missing_url.stdout)["error"]
    assert error["type"] == "MissingParameter" and "--url" in error["message"]
    unknown = cli.invoke(main, ["verify", "--format", "json", "--bogus"])
    assert unknown.exit_code == 2
    document = json.loads(unknown.stdout)
    assert document["schema_version"] == 1 and "--bogus" in document["error"]["message"]
    unreadable = cli.invoke(main, ["verify", str(tmp_path / "nope"), "--format", "json"])
    assert unreadable.exit_code == 2
    assert json.loads(unreadable.stdout)["error"]["type"] == "BadInputError"
    # without JSON: click's usual usage message
    plain = cli.invoke(main, ["status"], env=env)
    assert plain.exit_code == 2 and "Missing option '--url'" in plain.output


def test_verify_with_url_and_directory_in_a_subprocess(tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    result = subprocess.run(
        [sys.executable, "-m", "flask_safe_migrate", "verify"]
        + ["--url", "postgresql://nobody@127.0.0.1:1/none", "--directory", directory],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(directory),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the two files of --directory were read, and nothing connected to the URL
    assert "2 file(s), 2 SQL statement(s): 2 DDL, 0 DML" in result.stdout, result.stdout
