"""SIGTERM / SIGINT during `flask safe-migrate run`, in a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ledger
from tests.helpers import scalar
from tests.helpers import write_migrations

APP = """
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_safe_migrate import SafeMigrate

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["SM_TEST_URL"]
app.config["SAFE_MIGRATE_BACKOFF_BASE"] = 0.05
db = SQLAlchemy(app)
SafeMigrate(app, db, directory=os.environ["SM_TEST_DIR"])
"""

SLOW_TX = (
    "def upgrade(m):\n"
    "    m.execute('CREATE TABLE slow (a int)')\n"
    "    for _ in range(400):\n"
    "        m.execute('SELECT pg_sleep(0.05)')\n"
)
SLOW_NO_TX = "-- safe-migrate: no-transaction\n" + "".join(
    "SELECT pg_sleep(0.05);\n" for _ in range(400)
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    ("sig", "name", "body", "expected"),
    [
        (signal.SIGTERM, "0002_slow.py", SLOW_TX, "0002_slow was rolled back and is not applied"),
        (
            signal.SIGINT,
            "0002_slow.sql",
            SLOW_NO_TX,
            "0002_slow runs outside a transaction and stopped between statements",
        ),
    ],
)
def test_a_signal_stops_the_run_cleanly_and_says_where_the_database_is(
    pg_url, tmp_path, sig, name, body, expected
) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (a int);\n",
            name: body,
            "0003_u.sql": "CREATE TABLE u (a int);\n",
        },
    )
    (tmp_path / "sigapp.py").write_text(APP)
    env = {
        **os.environ,
        "SM_TEST_URL": pg_url,
        "SM_TEST_DIR": directory,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT]),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "sigapp", "safe-migrate", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 30
    while "0001_t applied" not in seen and time.monotonic() < deadline:
        seen += process.stdout.readline()
    assert "0001_t applied" in seen, seen
    time.sleep(0.7)  # well inside 0002 (20 s of sleeps)
    started = time.monotonic()
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 5, "the stop was not prompt"
    assert process.returncode == 1, (seen + out, err)
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(sig).name}: 1 applied by this run (0001_t)" in err
    assert expected in err and "the migration lease was released" in err
    assert ledger(pg_url) == [("0001", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM safe_migrate_ledger_lease") == 0
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NULL") is True
    assert scalar(pg_url, "SELECT to_regclass('u') IS NULL") is True
