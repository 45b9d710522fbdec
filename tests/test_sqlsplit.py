"""Statement splitting (PostgreSQL via pgparse, SQLite via complete_statement) and
the no-transaction idempotency allow-list. No database needed."""

from __future__ import annotations

import pytest

from flask_safe_migrate.errors import MigrationSourceError
from flask_safe_migrate.sqlsplit import NO_TRANSACTION_ALLOWED
from flask_safe_migrate.sqlsplit import Statement
from flask_safe_migrate.sqlsplit import idempotent_form
from flask_safe_migrate.sqlsplit import split_sql


def sqls(statements: list[Statement]) -> list[str]:
    return [s.sql for s in statements]


# -- PostgreSQL splitting ------------------------------------------------------------


def test_semicolons_inside_quotes_and_comments_do_not_split() -> None:
    text = (
        "select 'a;b', E'c\\';d' as \"odd;name\";\n"
        "-- a comment; with a semicolon\n"
        "/* block; comment /* nested; */ still comment; */\n"
        "select 2;\n"
    )
    assert sqls(split_sql(text)) == [
        "select 'a;b', E'c\\';d' as \"odd;name\"",
        "select 2",
    ]


def test_dollar_quoted_function_body_and_do_block_stay_whole() -> None:
    function = (
        "CREATE FUNCTION bump() RETURNS trigger AS $fn$\n"
        "BEGIN\n"
        "  NEW.n := NEW.n + 1;\n"
        "  RETURN NEW;\n"
        "END\n"
        "$fn$ LANGUAGE plpgsql"
    )
    do_block = "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$"
    text = f"{function};\n{do_block};\nselect 3;\n"
    statements = split_sql(text)
    assert sqls(statements) == [function, do_block, "select 3"]
    assert [s.node_type for s in statements] == ["CreateFunctionStmt", "DoStmt", "SelectStmt"]
    assert [s.line for s in statements] == [1, 7, 8]
    assert [s.index for s in statements] == [0, 1, 2]


@pytest.mark.parametrize("prefix", ["-- ééé ééé ééé\n", "/* שלום עולם; */\n", "-- 日本語\n\n"])
def test_multibyte_text_before_a_statement_uses_byte_offsets(prefix: str) -> None:
    # pgparse reports UTF-8 byte offsets; slicing the str with them would cut
    # the second statement short or shift it by the extra bytes.
    text = "create table a (x int);\n" + prefix + "create table b (y text default 'ü');\n"
    statements = split_sql(text)
    assert sqls(statements) == [
        "create table a (x int)",
        "create table b (y text default 'ü')",
    ]
    assert statements[1].line == 2 + prefix.count("\n")


def test_line_is_the_first_token_not_the_leading_comment() -> None:
    text = "\n\n-- explain\n-- more\n/* block\n comment */\n   select 1;\n\n-- next\nselect\n  2;\n"
    statements = split_sql(text)
    assert [(s.sql, s.line) for s in statements] == [("select 1", 7), ("select\n  2", 10)]


def test_statement_text_is_verbatim_without_the_semicolon() -> None:
    text = "ALTER TABLE t\n    ADD COLUMN a int ;  select 1"
    assert sqls(split_sql(text)) == ["ALTER TABLE t\n    ADD COLUMN a int", "select 1"]


def test_node_is_the_parse_tree_but_not_part_of_repr_or_equality() -> None:
    (statement,) = split_sql("create index concurrently if not exists i on t (a)")
    assert statement.node_type == "IndexStmt"
    assert statement.node is not None
    assert statement.node["concurrent"] is True
    assert statement.node["if_not_exists"] is True
    assert "relation" not in repr(statement)
    same_sql = Statement(sql=statement.sql, line=1, index=0, node_type="IndexStmt", node=None)
    assert statement == same_sql


def test_comment_only_and_empty_text_give_no_statements() -> None:
    assert split_sql("") == []
    assert split_sql("-- nothing\n/* here */\n;\n") == []


def test_parse_error_names_file_line_and_message() -> None:
    text = "-- ééé\nselect 1;\nselect 'ü' fro fro;\n"
    with pytest.raises(MigrationSourceError) as info:
        split_sql(text, path="m/0001_x.sql")
    message = str(info.value)
    assert "m/0001_x.sql:3:" in message
    assert 'syntax error at or near "fro"' in message
    assert info.value.path == "m/0001_x.sql"


def test_parse_error_line_honours_line_offset() -> None:
    with pytest.raises(MigrationSourceError, match=r"f\.sql:12:"):
        split_sql("select 1;\nselec 2;\n", path="f.sql", line_offset=10)


def test_unterminated_dollar_quote_is_a_parse_error() -> None:
    with pytest.raises(MigrationSourceError, match=r"f\.sql:2: .*unterminated dollar-quoted"):
        split_sql("select 1;\nselect $$ never closed;\n", path="f.sql")


def test_line_offset_shifts_statement_lines() -> None:
    statements = split_sql("select 1;\n\nselect 2;", line_offset=5)
    assert [s.line for s in statements] == [6, 8]


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'mysql'"):
        split_sql("select 1", dialect="mysql")


# -- SQLite splitting ------------------------------------------------------------------


def test_sqlite_split_respects_strings_comments_and_triggers() -> None:
    text = (
        "CREATE TABLE a (x TEXT DEFAULT ';');\n"
        "-- comment; here\n"
        "/* and; here */ CREATE TRIGGER tr AFTER INSERT ON a BEGIN\n"
        "  INSERT INTO b VALUES (';');\n"
        "  DELETE FROM c;\n"
        "END;\n"
        "SELECT 1"
    )
    statements = split_sql(text, dialect="sqlite")
    assert sqls(statements) == [
        "CREATE TABLE a (x TEXT DEFAULT ';')",
        "CREATE TRIGGER tr AFTER INSERT ON a BEGIN\n  INSERT INTO b VALUES (';');\n"
        "  DELETE FROM c;\nEND",
        "SELECT 1",
    ]
    assert [s.line for s in statements] == [1, 3, 7]
    assert all(s.node_type is None and s.node is None for s in statements)


def test_sqlite_unterminated_string_is_an_error_with_line() -> None:
    with pytest.raises(MigrationSourceError, match=r"x\.sql:2: .*never ends"):
        split_sql("select 1;\nselect 'oops;\n", dialect="sqlite", path="x.sql")


def test_sqlite_trailing_comment_is_not_a_statement() -> None:
    assert sqls(split_sql("select 1; -- bye\n", dialect="sqlite")) == ["select 1"]


# -- allow non-idempotent markers --------------------------------------------------------


def test_allow_marker_on_the_statements_line() -> None:
    text = (
        "create index concurrently i on t (a); -- safe-migrate: allow non-idempotent -- new\n"
        "select 1;\n"
    )
    first, second = split_sql(text)
    assert first.allow_non_idempotent == "new"
    assert second.allow_non_idempotent is None


def test_allow_marker_on_the_comment_lines_above() -> None:
    text = (
        "select 1;\n"
        "-- safe-migrate: allow non-idempotent -- table is new, nobody reads it\n"
        "-- builds the index\n"
        "create index concurrently i on t (a);\n"
    )
    first, second = split_sql(text)
    assert first.allow_non_idempotent is None
    assert second.allow_non_idempotent == "table is new, nobody reads it"


@pytest.mark.parametrize(
    "marker",
    ["-- safe-migrate: allow non-idempotent", "-- safe-migrate: allow non-idempotent --   "],
)
def test_allow_marker_without_reason_is_an_error(marker: str) -> None:
    text = f"select 1;\n{marker}\ncreate index concurrently i on t (a);\n"
    with pytest.raises(MigrationSourceError, match=r"f\.sql:2: .*has no reason"):
        split_sql(text, path="f.sql")


def test_stray_allow_marker_is_an_error() -> None:
    # A blank line separates it from the statement: it is attached to nothing.
    text = "-- safe-migrate: allow non-idempotent -- why\n\ncreate index i on t (a);\n"
    with pytest.raises(MigrationSourceError, match=r"f\.sql:1: .*belongs to no statement"):
        split_sql(text, path="f.sql")


# -- idempotency allow-list ------------------------------------------------------------------

ACCEPTED = [
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
    "DROP INDEX CONCURRENTLY IF EXISTS i",
    "REINDEX INDEX CONCURRENTLY i",
    "REINDEX TABLE CONCURRENTLY t",
    "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh'",
    "VACUUM t",
    "VACUUM (ANALYZE) t",
    "ANALYZE t",
    "CREATE TABLE IF NOT EXISTS t (a int)",
    "CREATE TABLE IF NOT EXISTS t2 AS SELECT 1",
    "CREATE SCHEMA IF NOT EXISTS s",
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE SEQUENCE IF NOT EXISTS s",
    "DROP TABLE IF EXISTS t",
    "DROP ROLE IF EXISTS r",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int, DROP COLUMN IF EXISTS b",
    "ALTER TABLE t DROP CONSTRAINT IF EXISTS c",
    "SELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
]

REFUSED = [
    "CREATE INDEX CONCURRENTLY i ON t (a)",
    "DROP INDEX CONCURRENTLY i",
    "REINDEX INDEX i",
    "REINDEX (CONCURRENTLY false) INDEX i",
    "REINDEX (CONCURRENTLY 0) INDEX i",
    "ALTER TYPE mood ADD VALUE 'meh'",
    "ALTER TYPE mood RENAME VALUE 'a' TO 'b'",
    "CREATE TABLE t (a int)",
    "DROP TABLE t",
    "ALTER TABLE t ADD COLUMN a int",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int, ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
    "ALTER TABLE IF EXISTS t RENAME TO u",
    "SELECT 1 INTO t2",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "UPDATE t SET a = 1",
    "INSERT INTO t VALUES (1)",
    "SET maintenance_work_mem = '1GB'",
    "BEGIN",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_allow_list_accepts_idempotent_forms(sql: str) -> None:
    (statement,) = split_sql(sql)
    assert idempotent_form(statement) is not None, statement.node


@pytest.mark.parametrize("sql", REFUSED)
def test_allow_list_refuses_other_forms(sql: str) -> None:
    (statement,) = split_sql(sql)
    assert idempotent_form(statement) is None, idempotent_form(statement)


def test_sqlite_statements_match_no_form() -> None:
    (statement,) = split_sql("CREATE TABLE IF NOT EXISTS t (a)", dialect="sqlite")
    assert idempotent_form(statement) is None


def test_allow_list_is_documented_for_the_readme() -> None:
    descriptions = [form.sql for form in NO_TRANSACTION_ALLOWED]
    assert any("CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS" in d for d in descriptions)
    assert all(d and d == d.strip() for d in descriptions)
