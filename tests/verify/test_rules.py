"""Every rule and every DML category has bad and ok fixtures, and they behave."""

from __future__ import annotations

import pathlib

import pytest

from flask_safe_migrate.verify import RULES
from flask_safe_migrate.verify import Rule
from flask_safe_migrate.verify import verify_paths

ROOT = pathlib.Path(__file__).parent.parent.parent
FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CATEGORIES = FIXTURES / "categories"


def _entries(directory: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    return [
        (directory.name, entry)
        for entry in sorted(directory.iterdir())
        if entry.name.startswith(("bad_", "ok_"))
    ]


RULE_CASES = [
    case
    for rule_dir in sorted(FIXTURES.iterdir())
    if rule_dir.is_dir() and rule_dir != CATEGORIES
    for case in _entries(rule_dir)
]
CATEGORY_CASES = [case for cat in sorted(CATEGORIES.iterdir()) for case in _entries(cat)]


def _id(case: tuple[str, pathlib.Path]) -> str:
    return f"{case[0]}/{case[1].name}"


def test_every_rule_and_category_has_bad_and_ok_fixtures() -> None:
    for name in [rule.name for rule in RULES] + ["dedup", "seed", "backfill", "orphan_cleanup"]:
        directory = FIXTURES / name if (FIXTURES / name).is_dir() else CATEGORIES / name
        kinds = {entry.name.split("_")[0] for _, entry in _entries(directory)}
        assert kinds == {"bad", "ok"}, name


SECTIONS = ("## What it does", "## Why is this bad?", "## Use instead")


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_every_rule_has_a_docstring_with_what_why_and_alternative(rule: Rule) -> None:
    assert rule.fix and rule.summary
    doc = rule.doc
    assert doc.startswith(f"{rule.name} ({rule.code})"), doc[:80]
    places = [doc.find(section) for section in SECTIONS]
    assert -1 not in places and places == sorted(places), f"{rule.name}: needs {SECTIONS} in order"
    ends = [*places[1:], len(doc)]
    for section, start, end in zip(SECTIONS, places, ends, strict=True):
        body = doc[start + len(section) : end].strip()
        assert len(body.split()) >= 5, f"{rule.name}: '{section}' says too little: {body!r}"


def _readme_rule_table() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Verify\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_the_readme_rule_table_matches_the_rule_registry() -> None:
    table = _readme_rule_table()
    assert [row[0].strip("`") for row in table] == [rule.name for rule in RULES]
    for row, rule in zip(table, RULES, strict=True):
        name, code, point, severity = row[:4]
        assert (code, point) == (rule.code, str(rule.point)), rule.name
        # the first severity is the rule's own; 'error / warning' when some findings differ
        assert severity.split(" / ")[0] == rule.severity.value, rule.name
        assert set(severity.split(" / ")) <= {"error", "warning"}, rule.name


@pytest.mark.parametrize("case", RULE_CASES, ids=_id)
def test_rule_fixture(case: tuple[str, pathlib.Path]) -> None:
    rule, entry = case
    report = verify_paths([entry])
    hits = [f for f in report.findings if f.rule.name == rule and f.suppressed is None]
    if entry.name.startswith("bad_"):
        assert hits, f"{entry} should trigger {rule}"
    else:
        assert not hits, [f.message for f in hits]


@pytest.mark.parametrize("case", CATEGORY_CASES, ids=_id)
def test_category_fixture(case: tuple[str, pathlib.Path]) -> None:
    category, entry = case
    report = verify_paths([entry])
    assert report.dml, "the fixture has DML"
    if entry.name.startswith("ok_"):
        assert all(e.category == category and e.safe for e in report.dml), report.dml
        assert all(e.reason for e in report.dml)
    else:
        assert all(e.category is None and not e.safe for e in report.dml), report.dml
        assert any(f.rule.name == "unsafe-dml" for f in report.findings)


def test_example_app_migrations_verify_with_exit_zero() -> None:
    report = verify_paths(["example_app/migrations"])
    assert report.ok and report.exit_code == 0
    assert all(point.ok for point in report.points)
    assert [e.category for e in report.dml] == [
        "seed",
        "backfill",
        "dedup",
        "dedup",
        "orphan_cleanup",
        "orphan_cleanup",
    ]
    # the deliberate small-table trade-offs are reported as warnings
    assert sorted(f.rule.name for f in report.findings) == [
        "foreign-key-not-valid",
        "lock-table",
        "lock-table",
        "require-concurrent-index",
    ]
    assert all(f.level.value == "warning" for f in report.findings)


def test_dedup_index_in_the_next_migration_on_that_table(tmp_path: pathlib.Path) -> None:
    (tmp_path / "0001_dedup.sql").write_text(
        "DELETE FROM leads a USING leads b WHERE a.email = b.email AND a.id > b.id;\n"
    )
    (tmp_path / "0002_other.sql").write_text("ALTER TABLE users ADD COLUMN note text;\n")
    (tmp_path / "0003_index.sql").write_text(
        "-- safe-migrate: no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS leads_email_key ON leads (email);\n"
    )
    report = verify_paths([tmp_path], cwd=str(tmp_path))
    assert [e.category for e in report.dml] == ["dedup"]
    assert "0003_index.sql:2" in report.dml[0].reason
    assert report.ok


def test_seed_row_limit_is_configurable(tmp_path: pathlib.Path) -> None:
    (tmp_path / "seed.sql").write_text("INSERT INTO s (n) VALUES (1), (2), (3);\n")
    assert verify_paths([tmp_path], seed_max_rows=3).dml[0].category == "seed"
    assert verify_paths([tmp_path], seed_max_rows=2).dml[0].category is None


def test_configured_retry_function_names(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jobs.py").write_text(
        "import time\n\n\ndef run_sql(engine, sql):\n    for attempt in range(3):\n"
        "        try:\n            with engine.begin() as conn:\n                return conn.execute(sql)\n"
        "        except Exception:\n            time.sleep(1)\n"
    )
    assert verify_paths([tmp_path]).ok
    report = verify_paths([tmp_path], retry_functions=["execute_with_retry", "run_sql"])
    assert [f.rule.name for f in report.findings] == ["retry-no-dispose"]
