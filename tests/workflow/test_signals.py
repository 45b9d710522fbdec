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
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    # 0002 was cut (it would take 20 s): the "slow" table below is not there
    assert process.returncode == 1, (seen + out, err)
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(sig).name}: 1 applied by this run (0001_t)" in err
    assert expected in err and "the migration lease was released" in err
    assert ledger(pg_url) == [("0001", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM safe_migrate_ledger_lease") == 0
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NULL") is True
    assert scalar(pg_url, "SELECT to_regclass('u') IS NULL") is True


SLOW_DOWN = (
    "def upgrade(m):\n"
    "    m.execute('CREATE TABLE slow (a int)')\n"
    "def downgrade(m):\n"
    "    m.execute('DROP TABLE slow')\n"
    "    for _ in range(400):\n"
    "        m.execute('SELECT pg_sleep(0.05)')\n"
)


def test_sigterm_stops_a_rollback_cleanly_too(pg_url, tmp_path) -> None:
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\nDROP TABLE t;\n",
            "0002_slow.py": SLOW_DOWN,
            "0003_u.sql": "CREATE TABLE u (a int);\n-- safe-migrate: down\nDROP TABLE u;\n",
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
    flask = [sys.executable, "-m", "flask", "--app", "sigapp", "safe-migrate"]
    subprocess.run([*flask, "run"], cwd=tmp_path, env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*flask, "rollback", "--to", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 30
    while "0003_u rolled back" not in seen and time.monotonic() < deadline:
        seen += process.stdout.readline()
    assert "0003_u rolled back" in seen, seen
    time.sleep(0.7)  # inside 0002's down part (20 s of sleeps)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, (seen + out, err)
    assert "Traceback" not in err
    assert "stopped by SIGTERM: 1 rolled back by this run (0003_u)" in err
    assert "0002_slow's down part was rolled back: it is still applied" in err
    assert "the migration lease was released" in err
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM safe_migrate_ledger_lease") == 0
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NOT NULL") is True  # DROP undone
    assert scalar(pg_url, "SELECT to_regclass('u') IS NULL") is True


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_sigterm_cancels_a_long_down_statement_on_the_server(pg_url, tmp_path, driver) -> None:
    """Injects: SIGTERM while a down part sits in a 10-minute ``pg_sleep``.

    With psycopg2 the Python signal handler cannot run while the driver waits for the
    server: the rollback must cancel the statement on the server, or it would wait it out.
    """
    from tests.infra.postgres import with_driver

    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\nDROP TABLE t;\n",
            "0002_slow.sql": (
                "CREATE TABLE slow (a int);\n-- safe-migrate: down\n"
                "DROP TABLE slow;\nSELECT pg_sleep(600);\n"
            ),
        },
    )
    (tmp_path / "sigapp.py").write_text(APP)
    env = {
        **os.environ,
        "SM_TEST_URL": with_driver(pg_url, driver),
        "SM_TEST_DIR": directory,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT]),
        "PYTHONUNBUFFERED": "1",
    }
    flask = [sys.executable, "-m", "flask", "--app", "sigapp", "safe-migrate"]
    subprocess.run([*flask, "run"], cwd=tmp_path, env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*flask, "rollback", "--to", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sleeping_query = (
        "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
        " AND query LIKE 'SELECT pg_sleep(600)%'"
    )
    try:
        sleeping = None
        deadline = time.monotonic() + 30
        while sleeping is None and time.monotonic() < deadline and process.poll() is None:
            sleeping = scalar(pg_url, sleeping_query)
            time.sleep(0.05)
        assert sleeping is not None, "0002's down part never started its statement"
        process.send_signal(signal.SIGTERM)
        # Generous: without a cancel the process would wait out the 10-minute statement.
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert "0002_slow's down part was rolled back: it is still applied" in err, err
    assert "the migration lease was released" in err
    still_running = (
        f"SELECT count(*) FROM pg_stat_activity WHERE pid = {sleeping} AND state = 'active'"
    )
    assert scalar(pg_url, still_running) == 0, "the statement runs on without its client"
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NOT NULL") is True  # DROP undone
