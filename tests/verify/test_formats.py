"""verify's outputs (text, JSON, SARIF), exit codes, and both ways to run it."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jsonschema
import pytest
from click.testing import CliRunner

from flask_safe_migrate.__main__ import main
from flask_safe_migrate.verify import RULES
from flask_safe_migrate.verify import verify_paths
from flask_safe_migrate.verify._sql import rewrite_placeholders
from flask_safe_migrate.verify.report import render_text
from flask_safe_migrate.verify.report import sarif
from tests.conftest import missing

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent.parent
# The full SARIF 2.1.0 JSON schema of the OASIS SARIF TC (its "$id" says where
# it is published), vendored so that the test needs no network.
SCHEMA = json.loads((HERE / "sarif-schema-2.1.0.json").read_text())
SARIF = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
SEED = HERE / "seed" / "db_migrate.py"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.output


def test_json_has_exactly_the_contract_keys() -> None:
    code, output = run("--format", "json", str(SEED))
    assert code == 1
    document = json.loads(output)
    assert set(document) == {"schema_version", "points", "findings", "dml"}
    assert [p["id"] for p in document["points"]] == [1, 2, 3]
    for point in document["points"]:
        assert set(point) == {"id", "ok", "summary"}
    for finding in document["findings"]:
        assert set(finding) == {"point", "rule", "severity", "path", "line", "message", "fix"}
        assert finding["severity"] in ("error", "warning") and finding["line"] >= 1
    for entry in document["dml"]:
        assert set(entry) == {"path", "line", "statement", "category", "safe", "reason"}


def test_suppressed_findings_stay_in_json_with_their_reason(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.sql").write_text(
        "-- safe-migrate: allow unsafe-dml -- 40 rows, checked by hand\nUPDATE leads SET a = 1;\n"
    )
    code, output = run("--format", "json", str(tmp_path / "m.sql"))
    assert code == 0
    [finding] = json.loads(output)["findings"]
    assert finding["rule"] == "unsafe-dml" and finding["line"] == 2
    assert finding["suppressed"] is True and finding["reason"] == "40 rows, checked by hand"


def test_python_suppression(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jobs.py").write_text(
        "from flask_safe_migrate import execute_with_retry\n\n\ndef fix(engine):\n"
        "    # safe-migrate: allow[unsafe-dml] one-off, table has 12 rows\n"
        "    execute_with_retry(engine, 'UPDATE leads SET a = 1')\n"
    )
    report = verify_paths([tmp_path])
    assert report.ok
    assert [f.suppressed for f in report.findings] == ["one-off, table has 12 rows"]


def test_sarif_validates_against_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert len(SCHEMA["definitions"]) == 52  # the whole schema, not an excerpt
    document = sarif(verify_paths([SEED, ROOT / "example_app" / "migrations"]), RULES, version="1")
    SARIF.validate(document)
    broken = json.loads(json.dumps(document))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    assert not SARIF.is_valid(broken)  # the validator really checks
    results = document["runs"][0]["results"]
    assert results and all(
        r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1 for r in results
    )
    rule_ids = [r["id"] for r in document["runs"][0]["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) == len(RULES)


def test_sarif_fingerprints_tell_identical_statements_apart(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.sql").write_text("CLUSTER leads;\nSELECT 1;\nCLUSTER leads;\n")
    results = sarif(verify_paths([tmp_path / "m.sql"], cwd=str(tmp_path)), RULES, version="1")[
        "runs"
    ][0]["results"]
    prints = [r["partialFingerprints"]["safeMigrate/v1"] for r in results]
    assert len(prints) == 2 and len(set(prints)) == 2


def test_sarif_cli_output_validates(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.sql").write_text(
        "-- safe-migrate: allow lock-table -- 12 rows\nLOCK TABLE leads;\nVACUUM FULL leads;\n"
    )
    code, output = run("--format", "sarif", str(tmp_path / "m.sql"))
    assert code == 1
    document = json.loads(output)
    SARIF.validate(document)
    suppressed = [r for r in document["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed[0]["suppressions"] == [{"kind": "inSource", "justification": "12 rows"}]


def test_text_report_reproduces_the_seed_report_for_the_example_app() -> None:
    code, output = run(str(ROOT / "example_app" / "migrations"))
    assert code == 0
    assert "MIGRATION STABILITY VERIFICATION" in output
    assert "3 Critical Points - All ✅" in output
    for number in (1, 2, 3):
        assert f"Point {number}:" in output
    assert "Found: 6 DML operation(s)" in output and "Analysis: All SAFE" in output
    assert "deduplication before a unique index" in output
    assert "\x1b[" not in output  # no colour when not on a terminal


def test_text_report_shows_findings_with_place_and_fix() -> None:
    code, output = run(str(SEED))
    assert code == 1
    assert "❌ FAILED" in output
    assert "db_migrate.py:39  dynamic-sql" in output
    assert "fix: " in output


def test_text_report_shows_an_accepted_dml_as_accepted_not_unsafe(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "m.sql").write_text(
        "-- safe-migrate: allow unsafe-dml -- 40 rows, checked by hand\n"
        "UPDATE leads SET a = 1;\n"
        "UPDATE notes SET b = 2;\n"
    )
    report = verify_paths([tmp_path / "m.sql"], cwd=str(tmp_path))
    assert report.exit_code == 1
    point_three = render_text(report).split("Point 3:", 1)[1].split("└", 1)[0]
    assert "Analysis: 1 UNSAFE; 1 more accepted with a reason" in point_three
    assert "☑" in point_three and "accepted: 40 rows, checked by hand" in point_three
    marked = [line for line in point_three.splitlines() if "m.sql:" in line]
    assert len(marked) == 2  # the accepted UPDATE is not listed as unsafe
    assert "☑" in marked[0] and "m.sql:2" in marked[0]
    assert "❌" in marked[1] and "m.sql:3" in marked[1]

    (tmp_path / "m.sql").write_text(
        "-- safe-migrate: allow unsafe-dml -- 40 rows, checked by hand\nUPDATE leads SET a = 1;\n"
    )
    report = verify_paths([tmp_path / "m.sql"], cwd=str(tmp_path))
    assert report.exit_code == 0
    point_three = render_text(report).split("Point 3:", 1)[1].split("└", 1)[0]
    assert "Status: ✅ VERIFIED" in point_three
    assert "❌" not in point_three and "UNSAFE" not in point_three
    assert "accepted: 40 rows, checked by hand" in point_three


def test_sql_that_does_not_parse_is_a_finding_not_a_traceback(tmp_path: pathlib.Path) -> None:
    (tmp_path / "broken.sql").write_text("-- é\n\nALTER TABLE leads ADD COLUMN;\n")
    code, output = run("--format", "json", str(tmp_path / "broken.sql"))
    assert code == 1
    [finding] = json.loads(output)["findings"]
    assert finding["rule"] == "sql-syntax-error" and finding["line"] == 3


def test_one_syntax_error_does_not_hide_the_other_statements(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.sql").write_text(
        "-- é ✅\n"
        "CREATE INDEX a_idx ON leads (a);\n"
        "UPDAT leads SET note = 'x;y';\n"  # the ';' in the string does not end it
        "CLUSTER leads;\n"
        "ALTER TABLE leads ADD COLUMN;\n"
        "/* ; */ VACUUM FULL leads;\n"
        "SELECT (1\n"
    )
    report = verify_paths([tmp_path / "m.sql"], cwd=str(tmp_path))
    assert [(f.rule.name, f.line) for f in report.findings] == [
        ("require-concurrent-index", 2),
        ("sql-syntax-error", 3),
        ("cluster", 4),
        ("sql-syntax-error", 5),
        ("vacuum-full", 6),
        ("sql-syntax-error", 7),
    ]
    assert report.statements == 3


def test_usage_errors_exit_2(tmp_path: pathlib.Path) -> None:
    code, output = run(str(tmp_path / "missing"))
    assert code == 2 and "no such file" in output
    (tmp_path / "bad.py").write_text("def broken(:\n")
    code, output = run(str(tmp_path / "bad.py"))
    assert code == 2 and "Python syntax error" in output
    (tmp_path / "notes.txt").write_text("x")
    assert run(str(tmp_path / "notes.txt"))[0] == 2


def _without_root_read_override(command: list[str]) -> list[str]:
    """``command`` run so that a chmod 000 directory is really unreadable, root or not."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        missing("setpriv")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]


def test_an_unreadable_subdirectory_is_a_usage_error_not_a_silent_skip(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "tree" / "locked").mkdir(parents=True)
    (tmp_path / "tree" / "ok.sql").write_text("SELECT 1;\n")
    (tmp_path / "tree" / "locked" / "m.sql").write_text("CLUSTER leads;\n")
    (tmp_path / "tree" / "locked").chmod(0)
    try:
        completed = subprocess.run(
            _without_root_read_override(
                [sys.executable, "-m", "flask_safe_migrate", "verify", "tree"]
            ),
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
    finally:
        (tmp_path / "tree" / "locked").chmod(0o755)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "tree/locked: cannot be read" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_lines_are_lines_of_the_first_token_with_multibyte_comments(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.sql").write_text(
        "-- מיגרציה: é è ✅\n/* block\n comment */\n\nCREATE INDEX i ON leads (a);\n"
        "-- more ✅\nCLUSTER leads;\n"
    )
    report = verify_paths([tmp_path / "m.sql"], cwd=str(tmp_path))
    assert [(f.rule.name, f.line, f.path) for f in report.findings] == [
        ("require-concurrent-index", 5, "m.sql"),
        ("cluster", 7, "m.sql"),
    ]


def test_paths_are_relative_posix(tmp_path: pathlib.Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.sql").write_text("CLUSTER leads;\n")
    report = verify_paths([tmp_path], cwd=str(tmp_path))
    assert report.findings[0].path == "sub/m.sql"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT :a, :b, :a", "SELECT $1, $2, $1"),
        ("SELECT x::int, :val", "SELECT x::int, $1  "),
        ("SELECT %(name)s, %s", "SELECT $1      , $2"),
        ("SELECT ':no', \"a:b\" -- :c\n, $$ :d $$", "SELECT ':no', \"a:b\" -- :c\n, $$ :d $$"),
        ("SELECT a %% 2, %s", "SELECT a %  2, $1"),
    ],
)
def test_placeholder_rewriting(sql: str, expected: str) -> None:
    assert rewrite_placeholders(sql) == expected


def test_flask_command_uses_the_configured_directory() -> None:
    from flask import Flask

    from flask_safe_migrate import SafeMigrate

    app = Flask(__name__, root_path=str(ROOT / "example_app"))
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql://app@db.invalid/app"  # never connected
    SafeMigrate(app, directory="migrations")
    result = app.test_cli_runner().invoke(args=["safe-migrate", "verify", "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert all(p["ok"] for p in document["points"]) and len(document["dml"]) == 6


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_flask_verify_on_a_sqlite_app_says_it_checks_postgres_only(
    tmp_path: pathlib.Path, output_format: str
) -> None:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_safe_migrate import SafeMigrate

    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_init.sql").write_text("CREATE TABLE t (id integer);\n")
    app = Flask(__name__, root_path=str(tmp_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'app.db'}"
    db = SQLAlchemy(app)
    SafeMigrate(app, db, directory="migrations")
    result = app.test_cli_runner().invoke(
        args=["safe-migrate", "verify", "--format", output_format]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if output_format == "json":
        document = json.loads(result.output)
        assert document["ok"] is False and document["error"]["exit_code"] == 2
        assert document["error"]["key"] == "SQLALCHEMY_DATABASE_URI"
        message = document["error"]["message"]
    else:
        message = result.output
    assert "verify checks PostgreSQL migrations only" in message and "sqlite" in message
    assert "python -m flask_safe_migrate verify PATHS" in message
    assert not (tmp_path / "app.db").exists()  # nothing connected


def test_usage_errors_are_json_with_format_json(tmp_path: pathlib.Path) -> None:
    code, output = run("--format", "json", str(tmp_path / "missing"))
    assert code == 2
    document = json.loads(output)
    assert document["ok"] is False and document["error"]["exit_code"] == 2
    assert "no such file" in document["error"]["message"]
    (tmp_path / "bad.py").write_text("def broken(:\n")
    code, output = run("--format", "json", str(tmp_path / "bad.py"))
    assert code == 2 and "Python syntax error" in json.loads(output)["error"]["message"]


def test_flask_verify_usage_errors_are_json_with_format_json(tmp_path: pathlib.Path) -> None:
    from flask import Flask

    from flask_safe_migrate import SafeMigrate

    app = Flask(__name__, root_path=str(tmp_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql://app@db.invalid/app"  # never connected
    SafeMigrate(app, directory="migrations")
    missing_path = str(tmp_path / "missing")
    result = app.test_cli_runner().invoke(
        args=["safe-migrate", "verify", "--format", "json", missing_path]
    )
    assert result.exit_code == 2, result.output
    document = json.loads(result.output)
    assert document["ok"] is False and "no such file" in document["error"]["message"]


RETRY_LOOPS = """import time


def execute_with_retry(engine, sql):
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                return conn.execute(sql)
        except Exception:
            time.sleep(2 ** attempt)


def run_sql(engine, sql):
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                return conn.execute(sql)
        except Exception:
            time.sleep(2 ** attempt)
"""


@pytest.mark.parametrize("configured", [None, ["run_sql"], ["run_sql", "execute_with_retry"]])
def test_flask_retry_function_names_add_to_execute_with_retry(
    tmp_path: pathlib.Path, configured: list[str] | None
) -> None:
    from flask import Flask

    from flask_safe_migrate import SafeMigrate

    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "tasks.py").write_text(RETRY_LOOPS)
    app = Flask(__name__, root_path=str(tmp_path))
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql://localhost/app"
    if configured is not None:
        app.config["SAFE_MIGRATE_VERIFY_RETRY_FUNCTIONS"] = configured
    SafeMigrate(app, directory="migrations")
    result = app.test_cli_runner().invoke(args=["safe-migrate", "verify", "--format", "json"])
    assert result.exit_code == 1, result.output
    flagged = sorted((f["rule"], f["line"]) for f in json.loads(result.output)["findings"])
    expected = [("retry-no-dispose", 5)]  # execute_with_retry always counts
    if configured:
        expected.append(("retry-no-dispose", 14))  # and run_sql once configured
    assert flagged == expected


def test_python_dash_m_without_an_app() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask_safe_migrate",
            "verify",
            "example_app/migrations",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["findings"][0]["path"].startswith("example_app/migrations/")
