"""`history`, `baseline`, `mark-applied`, `unmark`, `repair` on Postgres and SQLite."""

from __future__ import annotations

import json

from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.workflow.conftest import execute
from tests.workflow.conftest import invoke

FILES = {
    "0001_create_leads.sql": "CREATE TABLE leads (id integer PRIMARY KEY, email text);\n",
    "0002_add_score.sql": "ALTER TABLE leads ADD COLUMN score integer;\n",
    "0003_add_note.sql": "ALTER TABLE leads ADD COLUMN note text;\n",
}


def rows(url: str) -> list[tuple[str, int]]:
    from tests.helpers import ledger

    return ledger(url)


def test_history_shows_when_how_long_attempts_and_host(any_url, tmp_path) -> None:
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", FILES))
    empty = invoke(app, "history")
    assert empty.exit_code == 0 and "No migrations applied yet." in empty.output
    assert invoke(app, "run", "--to", "0002").exit_code == 0
    text = invoke(app, "history")
    assert text.exit_code == 0, text.output
    lines = text.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("0001 create_leads")
    assert "1 attempt" in lines[0] and " ms" in lines[0] and " by " in lines[0]
    document = json.loads(invoke(app, "history", "--json").stdout)
    assert document["schema_version"] == 1
    first = document["migrations"][0]
    assert {"version", "name", "checksum", "state", "attempts", "duration_ms"} <= set(first)
    assert first["state"] == "applied" and first["attempts"] == 1 and first["ran"] is True
    assert first["applied_at"] and ":" in first["applied_by"] and first["host"]
    assert [m["version"] for m in document["migrations"]] == ["0001", "0002"]


def test_baseline_records_without_running_and_later_ones_run(any_url, tmp_path) -> None:
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", FILES))
    # the schema exists already (made by hand / create_all)
    execute(
        any_url,
        "CREATE TABLE leads (id integer PRIMARY KEY, email text)",
        "ALTER TABLE leads ADD COLUMN score integer",
    )
    result = invoke(app, "baseline", "2")
    assert result.exit_code == 0, result.output
    assert "recorded 0001_create_leads as applied (not run)" in result.output
    assert rows(any_url) == [("0001", 0), ("0002", 0)]
    assert "Nothing to record" in invoke(app, "baseline", "0002").output
    run = invoke(app, "run")
    assert run.exit_code == 0 and "0003_add_note applied" in run.output, run.output
    history = invoke(app, "history").output
    assert "recorded without running" in history
    bad = invoke(app, "baseline", "9")
    assert bad.exit_code == 2 and "no migration file has version 9" in bad.stderr


def test_mark_applied_and_unmark(any_url, tmp_path) -> None:
    app, _ = make_app(any_url, write_migrations(tmp_path / "m", FILES))
    invoke(app, "run", "--to", "1")
    execute(any_url, "ALTER TABLE leads ADD COLUMN score integer")  # applied by hand
    marked = invoke(app, "mark-applied", "0002", "--json")
    assert marked.exit_code == 0, marked.output
    assert json.loads(marked.stdout)["recorded"][0]["version"] == "0002"
    assert "already recorded" in invoke(app, "mark-applied", "0002").output
    assert rows(any_url) == [("0001", 1), ("0002", 0)]
    unmarked = invoke(app, "unmark", "2")
    assert unmarked.exit_code == 0 and "removed 0002_add_score" in unmarked.output
    assert rows(any_url) == [("0001", 1)]
    again = invoke(app, "unmark", "2")
    assert again.exit_code == 2 and "not recorded as applied" in again.stderr


def test_repair_shows_a_diff_asks_and_accepts_the_new_checksum(any_url, tmp_path) -> None:
    directory = write_migrations(tmp_path / "m", FILES)
    app, _ = make_app(any_url, directory)
    invoke(app, "run")
    with open(tmp_path / "m" / "0002_add_score.sql", "a") as fh:
        fh.write("-- a comment added later\n")
    assert invoke(app, "status", "--check").exit_code == 1
    old = scalar(any_url, "SELECT checksum FROM safe_migrate_ledger WHERE version = '0002'")

    declined = invoke(app, "repair", input="n\n")
    assert declined.exit_code == 1
    assert f"- checksum {old[:16]}" in declined.output
    assert "+ checksum " in declined.output and "0002_add_score.sql" in declined.output
    assert "Nothing changed." in declined.output
    assert scalar(any_url, "SELECT checksum FROM safe_migrate_ledger WHERE version = '0002'") == old

    accepted = invoke(app, "repair", "0002", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Repaired 1 row." in accepted.output
    assert invoke(app, "status", "--check").exit_code == 0
    assert "Nothing to repair" in invoke(app, "repair", "--yes").output
    not_drifted = invoke(app, "repair", "1", "--yes")
    assert not_drifted.exit_code == 2 and "not drifted" in not_drifted.stderr


def test_repair_json_requires_yes_and_reports_rows(pg_url, tmp_path) -> None:
    app, _ = make_app(pg_url, write_migrations(tmp_path / "m", FILES))
    invoke(app, "run")
    (tmp_path / "m" / "0001_create_leads.sql").write_text(FILES["0001_create_leads.sql"] + "\n")
    assert invoke(app, "repair", "--json").exit_code == 2
    result = invoke(app, "repair", "--json", "--yes")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [r["version"] for r in document["repaired"]] == ["0001"]
    assert document["repaired"][0]["old_checksum"] != document["repaired"][0]["checksum"]


def test_repair_shows_the_change_from_the_applied_text_found_in_git(pg_url, tmp_path) -> None:
    import subprocess

    directory = write_migrations(tmp_path / "m", FILES)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
            cwd=directory,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "migrations")
    app, _ = make_app(pg_url, directory)
    invoke(app, "run")
    path = tmp_path / "m" / "0002_add_score.sql"
    path.write_text(path.read_text().replace("score", "points"))
    git("commit", "-q", "-am", "edited after it was applied")  # git HEAD is the new text now
    declined = invoke(app, "repair", input="n\n")
    assert declined.exit_code == 1
    out = declined.output
    assert "--- 0002_add_score.sql (applied, git " in out and "+++ 0002_add_score.sql (now)" in out
    assert "-ALTER TABLE leads ADD COLUMN score" in out
    assert "+ALTER TABLE leads ADD COLUMN points" in out
    document = json.loads(invoke(app, "repair", "--yes", "--json").stdout)
    assert "+ALTER TABLE leads ADD COLUMN points" in document["repaired"][0]["diff"]


def test_repair_without_git_says_why_there_is_no_diff(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    directory = write_migrations(tmp_path / "m", FILES)
    app, _ = make_app(url, directory)
    invoke(app, "run")
    with open(tmp_path / "m" / "0002_add_score.sql", "a") as fh:
        fh.write("-- later\n")
    result = invoke(app, "repair", input="n\n")
    assert "no diff: the ledger keeps only the checksum of the applied text" in result.output
    assert "now: " in result.output and " bytes, modified " in result.output
