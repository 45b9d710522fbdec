"""How verify reads SQL out of Python: bindings in source order, dynamic and unreadable SQL."""

from __future__ import annotations

import pathlib
import typing as t

import pytest

from flask_safe_migrate.verify import Report
from flask_safe_migrate.verify import verify_paths


def _write(tmp_path: pathlib.Path, name: str, source: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def _rules(report: Report) -> list[tuple[str, int]]:
    return [(f.rule.name, f.line) for f in report.findings]


def test_a_long_script_resolves_every_local_to_its_own_statement(tmp_path: pathlib.Path) -> None:
    # one function, many calls through locals: each call must see the binding
    # right above it (the scope is indexed once, not rescanned per call)
    lines = ["from flask_safe_migrate import execute_with_retry", "", "", "def migrate(engine):"]
    for number in range(300):
        lines.append(f"    sql = 'CLUSTER t{number}'")
        lines.append("    execute_with_retry(engine, sql)")
    path = _write(tmp_path, "db_migrate.py", "\n".join(lines) + "\n")
    report = verify_paths([path], cwd=str(tmp_path))
    clusters = [f for f in report.findings if f.rule.name == "cluster"]
    assert [f.line for f in clusters] == [6 + 2 * n for n in range(300)]
    assert [f.snippet for f in clusters[:2]] == ["CLUSTER t0", "CLUSTER t1"]
    assert report.statements == 300


HEADER = "from flask_safe_migrate import execute_with_retry\n\n\n"


def _verify_job(tmp_path: pathlib.Path, body: str, **options: t.Any) -> Report:
    """Verify ``jobs.py``: the import of ``execute_with_retry``, then ``body`` from line 4."""
    return verify_paths([_write(tmp_path, "jobs.py", HEADER + body)], cwd=str(tmp_path), **options)


@pytest.mark.parametrize(
    ("body", "expected", "said"),
    [
        pytest.param(
            # ast.walk is breadth-first: the nested 'SELECT 1' used to shadow the f-string
            "def purge(engine, table, flag):\n"
            "    if flag:\n"
            "        sql = 'SELECT 1'\n"
            "    sql = f'DELETE FROM {table}'\n"
            "    execute_with_retry(engine, sql)\n",
            [("dynamic-sql", 8)],
            ("f-string", "SQL-injection"),
            id="the-nearest-binding-in-source-order-wins-over-an-earlier-nested-one",
        ),
        pytest.param(
            "def job(engine, table, flag):\n"
            "    if flag:\n"
            "        sql = f'DELETE FROM {table}'\n"
            "    sql = 'CLUSTER leads'\n"
            "    execute_with_retry(engine, sql)\n"
            "    sql = f'DROP TABLE {table}'  # after the call: not what it runs\n",
            [("cluster", 8)],
            (),
            id="a-later-certain-binding-replaces-earlier-conditional-ones",
        ),
        pytest.param(
            "def job(engine, table, flag):\n"
            "    sql = 'SELECT 1'\n"
            "    if flag:\n"
            "        sql = 'DELETE FROM ' + table\n"
            "    execute_with_retry(engine, sql)\n",
            [("dynamic-sql", 8)],
            ("lines 5, 7",),
            id="a-conditional-rebinding-to-non-literal-sql-is-dynamic",
        ),
        pytest.param(
            "def job(engine, big):\n"
            "    if big:\n"
            "        sql = 'CLUSTER leads'\n"
            "    else:\n"
            "        sql = 'VACUUM FULL leads'\n"
            "    execute_with_retry(engine, sql)\n",
            [("cluster", 9), ("vacuum-full", 9)],
            (),
            id="conditional-literal-alternatives-are-each-checked",
        ),
        pytest.param(
            "def delete_user(engine, user_id):\n"
            "    sql = 'DELETE FROM users WHERE id = '\n"
            "    sql += user_id\n"
            "    execute_with_retry(engine, sql)\n",
            [("dynamic-sql", 7)],
            ("'+='", "line 6", "SQL-injection risk"),
            id="sql-grown-with-plus-equals-is-dynamic-and-names-the-injection-risk",
        ),
        pytest.param(
            "def job(engine):\n"
            "    execute_with_retry(engine, LATER)\n"
            "    statements = ['CLUSTER a', 'VACUUM FULL b']\n"
            "    for sql in statements:\n"
            "        execute_with_retry(engine, sql)\n"
            "\n\n"
            "LATER = 'LOCK TABLE c'\n",
            [("cluster", 8), ("lock-table", 5), ("vacuum-full", 8)],
            (),
            id="module-constants-and-loops-over-local-lists",
        ),
    ],
)
def test_which_binding_of_a_name_reaches_the_call(
    tmp_path: pathlib.Path, body: str, expected: list[tuple[str, int]], said: tuple[str, ...]
) -> None:
    report = _verify_job(tmp_path, body)
    assert sorted(_rules(report)) == expected
    for words in said:
        assert words in report.findings[0].message


def test_sql_that_cannot_be_resolved_is_an_unverifiable_sql_warning(
    tmp_path: pathlib.Path,
) -> None:
    body = (
        "def run(engine, sql):\n"
        "    execute_with_retry(engine, sql)\n"
        "\n\n"
        "def job(engine):\n"
        "    run(engine, 'CLUSTER leads')\n"
        "    execute_with_retry(engine, render('x'))\n"
    )
    report = _verify_job(tmp_path, body)
    assert _rules(report) == [("unverifiable-sql", 5), ("unverifiable-sql", 10)]
    assert all(f.level.value == "warning" for f in report.findings)
    assert "the parameter 'sql' of run()" in report.findings[0].message
    assert "the result of render()" in report.findings[1].message
    assert report.ok  # a warning: verify says what it could not check, it does not fail

    # naming the forwarding helper a retry function checks its callers' SQL instead
    named = _verify_job(tmp_path, body, retry_functions=["run"])
    assert _rules(named) == [("cluster", 9), ("unverifiable-sql", 10)]


def test_text_bindparams_chains_are_followed_to_the_literal(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        "from sqlalchemy import text\n\n\n"
        "def job(conn):\n"
        "    conn.execute(text('CLUSTER leads').bindparams(x=1).execution_options(a=1))\n"
        "    conn.execute(select(User))  # not SQL text: nothing to say\n",
    )
    assert _rules(verify_paths([path], cwd=str(tmp_path))) == [("cluster", 5)]


def test_a_migrations_parameter_is_its_executor_whatever_its_name(tmp_path: pathlib.Path) -> None:
    # upgrade(op) rather than upgrade(m): op.execute is still the migration's executor
    path = _write(
        tmp_path,
        "0001_rename.py",
        "def upgrade(op):\n"
        "    op.execute(render('x'))\n"
        "    with op.engine.begin():\n"
        "        op.execute('SELECT 1')\n",
    )
    assert _rules(verify_paths([path], cwd=str(tmp_path))) == [
        ("unverifiable-sql", 2),
        ("retry-inside-transaction", 4),
    ]
