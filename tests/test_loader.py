"""Discovery and validation of migration files. No database needed."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from flask_safe_migrate.errors import MigrationSourceError
from flask_safe_migrate.loader import Migration
from flask_safe_migrate.loader import checksum_bytes
from flask_safe_migrate.loader import discover
from flask_safe_migrate.loader import load_file


def write(directory: pathlib.Path, name: str, content: str | bytes = "select 1;\n") -> pathlib.Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


def only(directory: pathlib.Path) -> Migration:
    (migration,) = discover(directory)
    return migration


# -- discovery ---------------------------------------------------------------------------


def test_migrations_are_ordered_by_integer_value_and_keep_the_written_version(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "10_ten.sql")
    write(tmp_path, "9_nine.py", "def upgrade(m):\n    pass\n")
    write(tmp_path, "0100_hundred.sql")
    write(tmp_path, "0011_eleven.sql")
    migrations = discover(tmp_path)
    assert [m.number for m in migrations] == [9, 10, 11, 100]
    assert [m.version for m in migrations] == ["9", "10", "0011", "0100"]
    assert [m.name for m in migrations] == ["nine", "ten", "eleven", "hundred"]
    assert [m.kind for m in migrations] == ["py", "sql", "sql", "sql"]
    assert migrations[3].path == tmp_path / "0100_hundred.sql"


def test_empty_directory_has_no_migrations(tmp_path: pathlib.Path) -> None:
    assert discover(tmp_path) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [("0004_a.sql", "4_b.sql"), ("0004_a.sql", "0004_a.py"), ("0004_x.sql", "004_y.py")],
)
def test_two_files_with_one_version_are_an_error_naming_both(
    tmp_path: pathlib.Path, first: str, second: str
) -> None:
    write(tmp_path, first, "def upgrade(m): pass\n" if first.endswith(".py") else "select 1;")
    write(tmp_path, second, "def upgrade(m): pass\n" if second.endswith(".py") else "select 1;")
    with pytest.raises(MigrationSourceError) as info:
        discover(tmp_path)
    assert first in str(info.value)
    assert second in str(info.value)
    assert "same version 4" in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "4-foo.sql",
        "0004_Foo.SQL",
        "0004_foo.SQL",
        "0004_Foo.sql",
        "0004_foo.txt",
        "0004_foo.sql~",
        "0004foo.sql",
        "0004_foo-bar.sql",
        "0004_foo bar.sql",
        "0004_.sql",
        "helpers.py",
        "create_users.sql",
        "Setup.SQL",
    ],
)
def test_names_that_look_like_migrations_but_do_not_match_are_errors(
    tmp_path: pathlib.Path, name: str
) -> None:
    write(tmp_path, "0001_ok.sql")
    write(tmp_path, name)
    with pytest.raises(MigrationSourceError) as info:
        discover(tmp_path)
    assert repr(name) in str(info.value)
    assert "rename it" in str(info.value)
    assert info.value.path == str(tmp_path / name)


def test_bad_name_error_suggests_a_valid_name(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0004-Add Users.SQL")
    with pytest.raises(MigrationSourceError, match=r"e\.g\. 0004_add_users\.sql"):
        discover(tmp_path)


def test_readmes_dotfiles_caches_init_and_other_files_are_ignored(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, "0001_real.sql")
    for name in ("README", "README.md", "readme.txt", "ReadMe.sql", "README_0002_x.py"):
        write(tmp_path, name)
    for name in (".gitkeep", ".0002_hidden.sql", ".#0001_real.sql", "__init__.py"):
        write(tmp_path, name)
    write(tmp_path, "notes.txt")
    write(tmp_path, "Makefile")
    (tmp_path / "__pycache__").mkdir()
    write(tmp_path / "__pycache__", "0001_real.cpython-311.pyc", b"\x00")
    (tmp_path / "archive").mkdir()
    write(tmp_path / "archive", "0001_real.sql")
    (tmp_path / "0003_dir").mkdir()
    assert [m.path.name for m in discover(tmp_path)] == ["0001_real.sql"]


def test_missing_directory_is_an_error(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(MigrationSourceError, match="does not exist") as info:
        discover(missing)
    assert str(missing) in str(info.value)
    assert "SAFE_MIGRATE_DIRECTORY" in str(info.value)


def test_a_file_instead_of_a_directory_is_an_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "0001_x.sql")
    with pytest.raises(MigrationSourceError, match="not a migrations directory"):
        discover(path)


@pytest.mark.parametrize("marker", ["env.py", "alembic.ini", "versions/"])
def test_alembic_directory_points_to_the_adoption_path(tmp_path: pathlib.Path, marker: str) -> None:
    if marker.endswith("/"):
        (tmp_path / marker.rstrip("/")).mkdir()
    else:
        write(tmp_path, marker, "# alembic\n")
    write(tmp_path, "script.py.mako" if marker != "versions/" else "README", "x")
    with pytest.raises(MigrationSourceError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "Alembic/Flask-Migrate directory" in message
    assert marker in message
    assert "SAFE_MIGRATE_DIRECTORY" in message
    assert "safe_migrations" in message
    assert "flask safe-migrate baseline VERSION" in message


def test_discovery_neither_parses_sql_nor_imports_python(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_broken.sql", "selec nonsense ;;; $$ unterminated")
    write(tmp_path, "0002_boom.py", "raise RuntimeError('imported at discovery')\n")
    assert [m.version for m in discover(tmp_path)] == ["0001", "0002"]


def test_discovery_does_not_import_pgparse(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_a.sql", "-- safe-migrate: no-transaction\nselect 1;\n")
    code = (
        "import sys\n"
        "from flask_safe_migrate.loader import discover\n"
        f"m = discover({str(tmp_path)!r})\n"
        "assert m[0].transactional is False\n"
        "print('pgparse' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_invalid_utf8_is_an_error_with_line(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_latin1.sql", b"select 1;\n-- caf\xe9\n")
    with pytest.raises(MigrationSourceError, match=r"0001_latin1\.sql:2: is not valid UTF-8"):
        discover(tmp_path)


def test_load_file_reads_one_migration_and_checks_its_name(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "0007_seven.sql")
    assert load_file(path) == only(tmp_path)
    bad = write(tmp_path, "7-seven.sql")
    with pytest.raises(MigrationSourceError, match="does not match"):
        load_file(bad)


# -- checksums -----------------------------------------------------------------------------


def test_checksum_ignores_bom_and_crlf_but_not_edits(tmp_path: pathlib.Path) -> None:
    plain = b"create table t (a int);\nselect 1;\n"
    assert checksum_bytes(plain) == checksum_bytes(b"\xef\xbb\xbf" + plain)
    assert checksum_bytes(plain) == checksum_bytes(plain.replace(b"\n", b"\r\n"))
    assert checksum_bytes(plain) != checksum_bytes(plain.replace(b"int", b"bigint"))
    assert checksum_bytes(plain) != checksum_bytes(plain + b"\n")
    assert len(checksum_bytes(plain)) == 64

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write(a, "0001_x.sql", plain)
    write(b, "0001_x.sql", b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))
    assert only(a).checksum == only(b).checksum == checksum_bytes(plain)
    assert only(b).source() == plain.decode()


def test_checksum_covers_the_down_part(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "0001_x.sql", "select 1;\n-- safe-migrate: down\nselect 2;\n")
    before = only(tmp_path).checksum
    path.write_text("select 1;\n-- safe-migrate: down\nselect 3;\n")
    assert only(tmp_path).checksum != before


def test_statements_come_from_the_text_read_at_discovery(tmp_path: pathlib.Path) -> None:
    # What runs must be what the checksum covers, even if the file changes later.
    path = write(tmp_path, "0001_x.sql", "select 1;\n")
    migration = only(tmp_path)
    path.write_text("drop table users;\n")
    assert [s.sql for s in migration.statements()] == ["select 1"]


# -- .sql header directives ----------------------------------------------------------------


def test_defaults_without_header(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql")
    migration = only(tmp_path)
    assert migration.transactional is True
    assert migration.lock_timeout_ms is None
    assert migration.statement_timeout_ms is None
    assert migration.has_down is False
    assert migration.down_sql is None
    assert migration.down_statements() is None


def test_header_options(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        """\
        -- Adds the index without blocking writes.

        -- safe-migrate: no-transaction
        --safe-migrate:lock-timeout = 10s
        -- safe-migrate: statement-timeout=0
        CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);
        """,
    )
    migration = only(tmp_path)
    assert migration.transactional is False
    assert migration.lock_timeout_ms == 10_000
    assert migration.statement_timeout_ms == 0


def test_header_timeout_as_integer_milliseconds(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "-- safe-migrate: lock-timeout=1500\nselect 1;\n")
    assert only(tmp_path).lock_timeout_ms == 1500


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("-- safe-migrate: lock-timeout=soon", "lock-timeout"),
        ("-- safe-migrate: lock-timeout=", "lock-timeout"),
        ("-- safe-migrate: lock-timeout", "lock-timeout"),
        ("-- safe-migrate: statement-timeout=-1s", "statement-timeout"),
        ("-- safe-migrate: statement-timeout=5 parsecs", "statement-timeout"),
        # below 1 ms: Postgres would round it to 0, which switches the timeout off
        ("-- safe-migrate: lock-timeout=1us", "lock-timeout"),
        ("-- safe-migrate: statement-timeout=0.2ms", "statement-timeout"),
    ],
)
def test_bad_header_values_name_file_line_key_and_forms(
    tmp_path: pathlib.Path, line: str, key: str
) -> None:
    write(tmp_path, "0001_x.sql", f"-- intro\n{line}\nselect 1;\n")
    with pytest.raises(MigrationSourceError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert f"0001_x.sql:2: bad value for {key}" in message
    assert "'500ms', '5s', '2min'" in message
    assert info.value.path == str(tmp_path / "0001_x.sql")


def test_durations_round_like_postgres_but_never_to_no_timeout() -> None:
    from flask_safe_migrate.durations import parse_duration_ms

    assert parse_duration_ms("1500us") == 2
    assert parse_duration_ms("0.6ms") == 1
    assert parse_duration_ms("0") == 0 and parse_duration_ms("0us") == 0
    with pytest.raises(ValueError, match=r"'1us' is less than 1 ms.*no timeout.*at least '1ms'"):
        parse_duration_ms("1us")
    with pytest.raises(ValueError, match="less than 1 ms"):
        parse_duration_ms("500us")  # Postgres rounds half to even: 0


def test_no_transaction_takes_no_value(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "-- safe-migrate: no-transaction=yes\nselect 1;\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:1: .*takes no value"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("directive", "hint"),
    [("no-transactions", "no-transaction"), ("lock_timeout=5s", "lock-timeout"), ("yolo", "")],
)
def test_unknown_directive_names_file_line_and_allowed_directives(
    tmp_path: pathlib.Path, directive: str, hint: str
) -> None:
    write(tmp_path, "0001_x.sql", f"-- hello\n-- safe-migrate: {directive}\nselect 1;\n")
    with pytest.raises(MigrationSourceError) as info:
        discover(tmp_path)
    message = str(info.value)
    assert "0001_x.sql:2: unknown directive" in message
    for allowed in ("no-transaction", "lock-timeout=<duration>", "statement-timeout=<duration>"):
        assert allowed in message
    assert "-- safe-migrate: down" in message
    assert "allow non-idempotent -- <reason>" in message
    if hint:
        assert f"did you mean {hint!r}" in message


def test_header_directive_after_sql_is_an_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "select 1;\n-- safe-migrate: no-transaction\nselect 2;\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:2: .*must be in the header"):
        discover(tmp_path)


def test_header_directive_given_twice_is_an_error(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        "-- safe-migrate: lock-timeout=1s\n-- safe-migrate: lock-timeout=2s\nselect 1;\n",
    )
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:2: .*given twice"):
        discover(tmp_path)


def test_directive_after_sql_on_the_same_line_is_an_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "select 1; -- safe-migrate: down\nselect 2;\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:1: .*line of its own"):
        discover(tmp_path)


# -- down part --------------------------------------------------------------------------------


def test_down_part_is_separate_and_keeps_file_lines(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        """\
        create table t (a int);
        create index i on t (a);

        -- safe-migrate: down
        -- undo it
        drop index i;
        drop table t;
        """,
    )
    migration = only(tmp_path)
    assert migration.has_down is True
    assert [(s.sql, s.line) for s in migration.statements()] == [
        ("create table t (a int)", 1),
        ("create index i on t (a)", 2),
    ]
    down = migration.down_statements()
    assert down is not None
    assert [(s.sql, s.line, s.index) for s in down] == [
        ("drop index i", 6, 0),
        ("drop table t", 7, 1),
    ]
    assert migration.up_sql == "create table t (a int);\ncreate index i on t (a);\n\n"
    assert migration.down_sql == "-- undo it\ndrop index i;\ndrop table t;\n"


def test_down_part_parse_error_reports_the_file_line(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "select 1;\n-- safe-migrate: down\n\nselec 2;\n")
    migration = only(tmp_path)
    migration.statements()  # the up part is fine
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:4: SQL syntax error"):
        migration.down_statements()


def test_down_marker_as_last_line_gives_an_empty_down_part(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "select 1;\n-- safe-migrate: down")
    migration = only(tmp_path)
    assert migration.has_down is True
    assert migration.down_statements() == []
    assert [s.sql for s in migration.statements()] == ["select 1"]


def test_two_down_markers_are_an_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "select 1;\n-- safe-migrate: down\n-- safe-migrate: down\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:3: a second .*line 2"):
        discover(tmp_path)


def test_header_directive_in_the_down_part_is_an_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "-- safe-migrate: down\n-- safe-migrate: no-transaction\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:2: .*after the down part"):
        discover(tmp_path)


# -- no-transaction allow-list --------------------------------------------------------------------

NO_TX = "-- safe-migrate: no-transaction\n"


def test_no_transaction_accepts_idempotent_statements(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        NO_TX
        + "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\n"
        + "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh';\n"
        + "ANALYZE t;\n"
        + "-- safe-migrate: down\n"
        + "DROP INDEX CONCURRENTLY IF EXISTS i;\n",
    )
    migration = only(tmp_path)
    assert len(migration.statements()) == 3
    assert len(migration.down_statements() or []) == 1


def test_no_transaction_refuses_a_non_idempotent_statement(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        NO_TX + "ANALYZE t;\n\nCREATE INDEX CONCURRENTLY i\n  ON t (a);\n",
    )
    migration = only(tmp_path)  # discovery does not check statements
    with pytest.raises(MigrationSourceError) as info:
        migration.statements()
    message = str(info.value)
    assert f"{tmp_path / '0001_x.sql'}:4:" in message
    assert "statement 2 (CREATE INDEX CONCURRENTLY i ON t (a))" in message
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in message
    assert "-- safe-migrate: allow non-idempotent -- <reason>" in message


def test_no_transaction_refusal_cuts_long_statements_to_80_chars(tmp_path: pathlib.Path) -> None:
    columns = ", ".join(f"column_{n}" for n in range(40))
    write(tmp_path, "0001_x.sql", NO_TX + f"UPDATE t SET ({columns}) = (1);\n")
    with pytest.raises(MigrationSourceError) as info:
        only(tmp_path).statements()
    quoted = str(info.value).split("statement 1 (", 1)[1].split(") is not idempotent")[0]
    assert len(quoted) == 80 and quoted.endswith("…")
    assert "use an idempotent form" in str(info.value)


def test_no_transaction_checks_the_down_part_too(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        NO_TX + "SELECT 1;\n-- safe-migrate: down\nDROP INDEX CONCURRENTLY i;\n",
    )
    migration = only(tmp_path)
    migration.statements()
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:4: statement 1"):
        migration.down_statements()


def test_allow_marker_with_reason_lets_a_statement_through(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        NO_TX
        + "-- safe-migrate: allow non-idempotent -- t is created empty by 0000\n"
        + "CREATE INDEX CONCURRENTLY i ON t (a);\n"
        + "UPDATE t SET a = 0 WHERE a IS NULL; -- safe-migrate: allow non-idempotent -- same\n",
    )
    statements = only(tmp_path).statements()
    assert [s.allow_non_idempotent for s in statements] == ["t is created empty by 0000", "same"]


def test_allow_marker_without_reason_is_refused(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_x.sql",
        NO_TX + "-- safe-migrate: allow non-idempotent\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    )
    migration = only(tmp_path)
    with pytest.raises(MigrationSourceError, match=r"0001_x\.sql:2: .*has no reason"):
        migration.statements()


def test_transactional_migrations_are_not_checked(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", "CREATE TABLE t (a int);\nUPDATE t SET a = 1;\n")
    assert len(only(tmp_path).statements()) == 2


def test_sqlite_dialect_splits_without_the_postgres_check(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.sql", NO_TX + "CREATE TABLE t (a INTEGER PRIMARY KEY AUTOINCREMENT);\n")
    (statement,) = only(tmp_path).statements(dialect="sqlite")
    assert statement.line == 2
    assert statement.node_type is None


# -- .py migrations ----------------------------------------------------------------------------------


def test_py_migration_loads_lazily_with_its_options(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "0001_backfill.py",
        """\
        import dataclasses

        transaction = False
        lock_timeout = "2s"
        statement_timeout = 0

        @dataclasses.dataclass
        class Batch:
            size: int = 1000

        def upgrade(m):
            return ("up", m, Batch().size)

        def downgrade(m):
            return ("down", m)
        """,
    )
    migration = only(tmp_path)
    module = migration.load_module()
    assert module.upgrade("ctx") == ("up", "ctx", 1000)
    assert module.__file__ == str(tmp_path / "0001_backfill.py")
    assert migration.transactional is False
    assert migration.lock_timeout_ms == 2000
    assert migration.statement_timeout_ms == 0
    assert migration.has_down is True
    assert migration.load_module() is module  # imported once


def test_py_migration_defaults(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.py", "def upgrade(m):\n    pass\n")
    migration = only(tmp_path)
    assert migration.transactional is True
    assert migration.lock_timeout_ms is None
    assert migration.statement_timeout_ms is None
    assert migration.has_down is False


def test_py_migrations_with_one_name_in_two_directories_do_not_clash(
    tmp_path: pathlib.Path,
) -> None:
    for project in ("a", "b"):
        (tmp_path / project).mkdir()
        write(tmp_path / project, "0001_init.py", f"NAME = {project!r}\ndef upgrade(m): pass\n")
    first = only(tmp_path / "a").load_module()
    second = only(tmp_path / "b").load_module()
    assert (first.NAME, second.NAME) == ("a", "b")
    assert first.__name__ != second.__name__


def test_py_migration_without_upgrade_is_an_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.py", "def downgrade(m):\n    pass\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.py: defines no upgrade function"):
        only(tmp_path).load_module()


def test_py_upgrade_must_take_one_argument(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.py", "def upgrade():\n    pass\n")
    with pytest.raises(MigrationSourceError, match=r"def upgrade\(m\)"):
        only(tmp_path).load_module()


def test_py_import_error_names_the_file_and_chains_the_exception(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.py", "import no_such_module_for_safe_migrate\ndef upgrade(m): pass\n")
    migration = only(tmp_path)
    with pytest.raises(MigrationSourceError) as info:
        migration.load_module()
    message = str(info.value)
    assert str(tmp_path / "0001_x.py") in message
    assert "ModuleNotFoundError" in message
    assert "no_such_module_for_safe_migrate" in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    # A failed import leaves nothing behind; fixing the file in a new run works.
    assert not any(
        name.endswith("_m0001_x") and str(tmp_path) in str(getattr(module, "__file__", ""))
        for name, module in sys.modules.items()
    )


def test_py_syntax_error_names_the_line(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_x.py", "def upgrade(m):\n    pass\n\ndef oops(:\n")
    with pytest.raises(MigrationSourceError, match=r"0001_x\.py:4: Python syntax error") as info:
        only(tmp_path).load_module()
    assert isinstance(info.value.__cause__, SyntaxError)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("transaction = 'no'\n", "'transaction' is 'no'; it must be True or False"),
        ("transactional = False\n", "the module attribute is called 'transaction'"),
        ("lock_timeout = 'soon'\n", "lock_timeout = 'soon' is not a duration"),
        ("statement_timeout = -5\n", "statement_timeout = -5 is not a duration"),
    ],
)
def test_py_bad_options_are_errors(tmp_path: pathlib.Path, source: str, expected: str) -> None:
    write(tmp_path, "0001_x.py", source + "def upgrade(m): pass\n")
    migration = only(tmp_path)
    with pytest.raises(MigrationSourceError) as info:
        migration.transactional  # noqa: B018 - the property loads the module
    assert expected in str(info.value)
    assert "0001_x.py" in str(info.value)


def test_sql_and_py_apis_are_not_mixed_up(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0002_b.py", "def upgrade(m): pass\n")
    sql, py = discover(tmp_path)
    with pytest.raises(TypeError, match="Python migration"):
        py.statements()
    with pytest.raises(TypeError, match="SQL migration"):
        sql.load_module()


def test_verify_suppression_comments_are_not_header_errors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "0001_lock.sql").write_text(
        "CREATE TABLE t (a int);\n"
        "-- safe-migrate: allow lock-table -- twelve rows, locked for a millisecond\n"
        "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE;\n"
    )
    (migration,) = discover(tmp_path)
    assert [s.sql.split()[0] for s in migration.statements()] == ["CREATE", "LOCK"]
