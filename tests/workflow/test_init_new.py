"""`init` and `new`: directory stub, numbering across gaps, clashes, templates."""

from __future__ import annotations

import os

from flask_safe_migrate.loader import discover
from tests.helpers import make_app
from tests.workflow.conftest import invoke


def test_init_creates_the_directory_and_readme_and_is_idempotent(tmp_path) -> None:
    directory = tmp_path / "migrations"
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", directory)
    first = invoke(app, "init")
    assert first.exit_code == 0, first.output
    assert (directory / "README.md").is_file()
    assert "created" in first.output
    (directory / "README.md").write_text("mine\n")
    again = invoke(app, "init")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert (directory / "README.md").read_text() == "mine\n"  # never overwritten
    assert discover(directory) == []  # the README is not a migration


def test_new_numbers_from_the_highest_version_and_survives_gaps(tmp_path) -> None:
    directory = tmp_path / "m"
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", directory)
    invoke(app, "init")
    first = invoke(app, "new", "Create Users")
    assert first.exit_code == 0, first.output
    assert (directory / "0001_create_users.sql").is_file()
    (directory / "0007_later.sql").write_text("SELECT 1;\n")  # a gap: 2..6 unused
    second = invoke(app, "new", "add-email", "--py")
    assert second.exit_code == 0, second.output
    assert (directory / "0008_add_email.py").is_file()
    # the templates are valid migrations: SQL with a down marker, Python with upgrade(m)
    migrations = discover(directory)
    assert [m.version for m in migrations] == ["0001", "0007", "0008"]
    assert migrations[0].has_down and migrations[0].statements() == []
    # the Python template's downgrade is commented out: a stub that raises
    # would pass rollback's up-front check and then stop it half-way
    assert not migrations[2].has_down
    assert callable(migrations[2].load_module().upgrade)


def _fill(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_rollback_refuses_a_scaffolded_py_migration_up_front(tmp_path) -> None:
    from tests.helpers import ledger

    directory = tmp_path / "m"
    url = f"sqlite:///{tmp_path / 'a.db'}"
    app, _ = make_app(url, directory)
    invoke(app, "init")
    assert invoke(app, "new", "create t").exit_code == 0
    _fill(
        directory / "0001_create_t.sql",
        "-- Write the upgrade SQL here.",
        "CREATE TABLE t (a integer);",
    )
    _fill(directory / "0001_create_t.sql", "-- Write the SQL that reverts", "DROP TABLE t;\n--")
    assert invoke(app, "new", "add b", "--py").exit_code == 0
    _fill(
        directory / "0002_add_b.py", "    pass", "    m.execute('ALTER TABLE t ADD COLUMN b int')"
    )
    assert invoke(app, "new", "add c").exit_code == 0
    _fill(
        directory / "0003_add_c.sql",
        "-- Write the upgrade SQL here.",
        "CREATE TABLE c (a integer);",
    )
    _fill(directory / "0003_add_c.sql", "-- Write the SQL that reverts", "DROP TABLE c;\n--")
    assert invoke(app, "run").exit_code == 0
    refused = invoke(app, "rollback", "--to", "0")
    assert refused.exit_code == 1
    assert "0002_add_b: it defines no downgrade(m)" in refused.stderr
    assert "Nothing was rolled back" in refused.stderr
    assert ledger(url) == [("0001", 1), ("0002", 1), ("0003", 1)]  # 0003 was not reverted
    # a hand-written stub is refused the same way, before 0003 is touched
    _fill(
        directory / "0002_add_b.py",
        "# def downgrade(m):",
        "def downgrade(m):\n    raise NotImplementedError\n#",
    )
    invoke(app, "repair", "--yes")
    stub = invoke(app, "rollback", "--to", "0")
    assert stub.exit_code == 1 and "its downgrade(m) is only a stub" in stub.stderr
    assert ledger(url) == [("0001", 1), ("0002", 1), ("0003", 1)]


def test_new_reports_a_version_clash_from_two_branches_and_writes_nothing(tmp_path) -> None:
    directory = tmp_path / "m"
    os.makedirs(directory)
    (directory / "0003_from_branch_a.sql").write_text("SELECT 1;\n")
    (directory / "0003_from_branch_b.sql").write_text("SELECT 2;\n")
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", directory)
    result = invoke(app, "new", "next")
    assert result.exit_code == 2
    assert "0003_from_branch_a.sql and 0003_from_branch_b.sql have the same version" in (
        result.stderr
    )
    assert "Traceback" not in result.output
    assert sorted(os.listdir(directory)) == ["0003_from_branch_a.sql", "0003_from_branch_b.sql"]


def test_new_without_init_and_with_a_bad_slug_are_usage_errors(tmp_path) -> None:
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "nope")
    missing = invoke(app, "new", "x")
    assert missing.exit_code == 2 and "run `flask safe-migrate init` first" in missing.stderr
    invoke(app, "init")
    bad = invoke(app, "new", "!!!")
    assert bad.exit_code == 2 and "not a usable migration name" in bad.stderr


def test_new_json_names_the_file(tmp_path) -> None:
    import json

    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "m")
    invoke(app, "init")
    result = invoke(app, "new", "x", "--json")
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["files"][0].endswith("0001_x.sql")


def test_init_refuses_a_flask_migrate_directory_like_new_does(tmp_path) -> None:
    directory = tmp_path / "migrations"
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text("# Flask-Migrate's env.py\n")
    (directory / "alembic.ini").write_text("[alembic]\n")
    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", directory)
    init = invoke(app, "init")
    new = invoke(app, "new", "x")
    assert init.exit_code == 2 and new.exit_code == 2, init.output
    assert "is an Alembic/Flask-Migrate directory" in init.stderr
    assert init.stderr == new.stderr  # the same message, naming SAFE_MIGRATE_DIRECTORY
    assert "SAFE_MIGRATE_DIRECTORY" in init.stderr and "Traceback" not in init.output
    assert sorted(os.listdir(directory)) == ["alembic.ini", "env.py", "versions"]


def test_init_json(tmp_path) -> None:
    import json

    app, _ = make_app(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "m")
    first = json.loads(invoke(app, "init", "--json").stdout)
    assert first["schema_version"] == 1 and first["ok"] is True
    assert [os.path.basename(p) for p in first["created"]] == ["m", "README.md"]
    again = json.loads(invoke(app, "init", "--json").stdout)
    assert again["created"] == []
