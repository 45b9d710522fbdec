"""The example CRM: its history applies on real Postgres and matches its models."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from example_app import create_app
from example_app.models import db
from tests.helpers import fingerprint
from tests.helpers import ledger
from tests.helpers import scalar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_history_applies_and_matches_the_models(pg_url) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": pg_url})
    outcomes = app.extensions["safe_migrate"].upgrade(app)
    assert (
        len(outcomes) == len(os.listdir(os.path.join(ROOT, "example_app", "migrations"))) - 1
    )  # README
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    inspector = sa.inspect(engine)
    for table in db.metadata.sorted_tables:
        live = {c["name"] for c in inspector.get_columns(table.name)}
        assert live == {c.name for c in table.columns}, table.name
    engine.dispose()
    assert scalar(pg_url, "SELECT count(*) FROM statuses") == 5  # the seed, once
    assert scalar(
        pg_url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'leads_status_id_idx'::regclass"
    )


def test_requests_use_the_session_on_the_migrated_schema(pg_url) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": pg_url, "SAFE_MIGRATE_AUTO_MIGRATE": True})
    client = app.test_client()
    created = client.post("/leads", json={"email": "ada@example.com", "company": "Analytical"})
    assert created.status_code in (200, 201), created.get_data(as_text=True)
    listed = client.get("/leads").get_json()
    assert any(
        lead["email"] == "ada@example.com"
        for lead in (listed if isinstance(listed, list) else listed["leads"])
    )


def test_cli_against_database_url_with_a_postgres_scheme(pg_url) -> None:
    url = sa.engine.make_url(pg_url)
    # What hosting providers hand out: postgres://, no driver.
    provider_url = url.set(drivername="postgres").render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": provider_url, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "flask", "--app", "example_app", "safe-migrate"]
    first = subprocess.run([*command, "run"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert "0010_validate_leads_owner_fk applied" in first.stdout
    check = subprocess.run(
        [*command, "status", "--check"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(ledger(pg_url)) == 10
    assert fingerprint(pg_url).row_counts["public.statuses"] == 5
