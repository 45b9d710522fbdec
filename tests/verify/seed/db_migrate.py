# ruff: noqa
# fmt: off
"""A hand-written migration script in the seed's style, with known violations.

tests/verify/test_seed_style.py lists exactly what verify must find here;
keep the two in step (the line numbers matter).
"""

import time

from sqlalchemy import create_engine
from sqlalchemy import text

from app import db

engine = create_engine("postgresql://app@db/app")

DEDUP_EMAILS = "DELETE FROM leads a USING leads b WHERE a.email = b.email AND a.id > b.id"
STATUSES = [{"n": "new"}, {"n": "won"}, {"n": "lost"}]


def execute_with_retry(engine, sql, params=None, max_retries=10):
    conn = engine.connect()  # opened once, outside the loop
    for attempt in range(max_retries):
        try:
            return conn.execute(text(sql), params or {})
        except Exception:
            time.sleep(2**attempt)  # backoff, but no engine.dispose()


def migrate_leads():
    execute_with_retry(engine, "ALTER TABLE leads ADD COLUMN order_index integer")
    # one-time backfill: number existing leads
    execute_with_retry(engine, "UPDATE leads SET order_index = id WHERE order_index IS NULL")
    execute_with_retry(engine, DEDUP_EMAILS)
    execute_with_retry(
        engine, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS leads_email_key ON leads (email)"
    )
    execute_with_retry(engine, f"UPDATE leads SET status = '{'new'}'")
    execute_with_retry(engine, "UPDATE leads SET score = score + 1")


def seed_statuses():
    execute_with_retry(engine, "INSERT INTO statuses (name) VALUES (:n)", STATUSES)


def cleanup_notes():
    with engine.begin() as conn:
        execute_with_retry(
            engine,
            "DELETE FROM notes WHERE NOT EXISTS (SELECT 1 FROM leads WHERE leads.id = notes.lead_id)",
        )
        execute_with_retry(
            conn,
            "ALTER TABLE notes ADD CONSTRAINT notes_lead_fkey FOREIGN KEY (lead_id) REFERENCES leads (id) NOT VALID",
        )
    db.session.execute(text("DELETE FROM notes WHERE body = ''"))
    db.session.commit()
