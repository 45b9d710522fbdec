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
