"""The seed-style ``db_migrate.py`` yields exactly the expected findings and categories."""

from __future__ import annotations

import pathlib

from flask_safe_migrate.verify import verify_paths

SEED = pathlib.Path(__file__).parent / "seed" / "db_migrate.py"


def test_seed_style_script_findings_and_categories() -> None:
    report = verify_paths([SEED], cwd=str(SEED.parent))
    assert [(f.rule.name, f.line) for f in report.findings] == [
        ("retry-connection-outside-loop", 23),  # conn = engine.connect() before the loop
        ("retry-no-dispose", 24),  # the loop never disposes the pool
        ("concurrent-index-retry", 36),  # CIC IF NOT EXISTS through a hand-written retry
        ("dynamic-sql", 39),  # f-string
        ("unsafe-dml", 40),  # UPDATE without WHERE
        ("retry-inside-transaction", 49),  # inside 'with engine.begin()'
        ("retry-connection-reused", 53),  # conn passed to the retry helper
        ("retry-inside-transaction", 53),
        ("session-in-migration", 57),  # db.session.execute
        ("unsafe-dml", 57),  # DELETE ... WHERE body = '' is no safe category
        ("session-in-migration", 58),  # db.session.commit
        ("transaction-control", 58),
    ]
    assert [(e.line, e.category) for e in report.dml] == [
        (34, "backfill"),
        (35, "dedup"),
        (40, None),
        (44, "seed"),
        (49, "orphan_cleanup"),
        (57, None),
    ]
    assert [p.ok for p in report.points] == [False, False, False]
    assert report.exit_code == 1
    assert all(f.path == "db_migrate.py" for f in report.findings)
