"""How verify reads SQL out of Python: bindings in source order, dynamic and unreadable SQL."""

from __future__ import annotations

import pathlib

from flask_safe_migrate.verify import verify_paths


def _write(tmp_path: pathlib.Path, name: str, source: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def _rules(report: object) -> list[tuple[str, int]]:
    return [(f.rule.name, f.line) for f in report.findings]  # type: ignore[attr-defined]


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


def test_the_nearest_binding_in_source_order_wins_over_an_earlier_nested_one(
    tmp_path: pathlib.Path,
) -> None:
    # ast.walk is breadth-first: the nested 'SELECT 1' used to shadow the f-string
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def purge(engine, table, flag):\n"
        "    if flag:\n"
        "        sql = 'SELECT 1'\n"
        "    sql = f'DELETE FROM {table}'\n"
        "    execute_with_retry(engine, sql)\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert _rules(report) == [("dynamic-sql", 8)]
    assert "f-string" in report.findings[0].message
    assert "SQL-injection" in report.findings[0].message


def test_a_later_certain_binding_replaces_earlier_conditional_ones(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def job(engine, table, flag):\n"
        "    if flag:\n"
        "        sql = f'DELETE FROM {table}'\n"
        "    sql = 'CLUSTER leads'\n"
        "    execute_with_retry(engine, sql)\n"
        "    sql = f'DROP TABLE {table}'  # after the call: not what it runs\n",
    )
    assert _rules(verify_paths([path], cwd=str(tmp_path))) == [("cluster", 8)]


def test_a_conditional_rebinding_to_non_literal_sql_is_dynamic(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def job(engine, table, flag):\n"
        "    sql = 'SELECT 1'\n"
        "    if flag:\n"
        "        sql = 'DELETE FROM ' + table\n"
        "    execute_with_retry(engine, sql)\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert _rules(report) == [("dynamic-sql", 8)]
    assert "lines 5, 7" in report.findings[0].message


def test_conditional_literal_alternatives_are_each_checked(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def job(engine, big):\n"
        "    if big:\n"
        "        sql = 'CLUSTER leads'\n"
        "    else:\n"
        "        sql = 'VACUUM FULL leads'\n"
        "    execute_with_retry(engine, sql)\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert sorted(_rules(report)) == [("cluster", 9), ("vacuum-full", 9)]


def test_sql_grown_with_plus_equals_is_dynamic_and_names_the_injection_risk(
    tmp_path: pathlib.Path,
) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def delete_user(engine, user_id):\n"
        "    sql = 'DELETE FROM users WHERE id = '\n"
        "    sql += user_id\n"
        "    execute_with_retry(engine, sql)\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert _rules(report) == [("dynamic-sql", 7)]
    message = report.findings[0].message
    assert "'+='" in message and "line 6" in message and "SQL-injection risk" in message


def test_module_constants_and_loops_over_local_lists(tmp_path: pathlib.Path) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def job(engine):\n"
        "    execute_with_retry(engine, LATER)\n"
        "    statements = ['CLUSTER a', 'VACUUM FULL b']\n"
        "    for sql in statements:\n"
        "        execute_with_retry(engine, sql)\n"
        "\n\n"
        "LATER = 'LOCK TABLE c'\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert sorted(_rules(report)) == [("cluster", 8), ("lock-table", 5), ("vacuum-full", 8)]


def test_sql_that_cannot_be_resolved_is_an_unverifiable_sql_warning(
    tmp_path: pathlib.Path,
) -> None:
    path = _write(
        tmp_path,
        "jobs.py",
        HEADER + "def run(engine, sql):\n"
        "    execute_with_retry(engine, sql)\n"
        "\n\n"
        "def job(engine):\n"
        "    run(engine, 'CLUSTER leads')\n"
        "    execute_with_retry(engine, render('x'))\n",
    )
    report = verify_paths([path], cwd=str(tmp_path))
    assert _rules(report) == [("unverifiable-sql", 5), ("unverifiable-sql", 10)]
    assert all(f.level.value == "warning" for f in report.findings)
    assert "the parameter 'sql' of run()" in report.findings[0].message
    assert "the result of render()" in report.findings[1].message
    assert report.ok  # a warning: verify says what it could not check, it does not fail

    # naming the forwarding helper a retry function checks its callers' SQL instead
    named = verify_paths([path], cwd=str(tmp_path), retry_functions=["run"])
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
