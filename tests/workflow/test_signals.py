"""SIGTERM / SIGINT during `flask safe-migrate run`, in a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.helpers import backend_active
from tests.helpers import ledger
from tests.helpers import safe_migrate_cli
from tests.helpers import scalar
from tests.helpers import sigterm_during
from tests.helpers import started
from tests.helpers import subprocess_env
from tests.helpers import write_migrations
from tests.infra.postgres import DRIVERS
from tests.infra.postgres import with_driver

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


def _app(tmp_path, url: str, directory: str) -> dict[str, str]:
    """Writes the app module; the environment that runs it on ``url`` and ``directory``."""
    (tmp_path / "sigapp.py").write_text(APP)
    return subprocess_env(tmp_path, SM_TEST_URL=url, SM_TEST_DIR=directory, PYTHONUNBUFFERED="1")


def _signal_after(
    tmp_path, env: dict[str, str], args: list[str], line: str, sig: int
) -> tuple[int, str, str]:
    """``flask safe-migrate <args>``, sent ``sig`` 0.7 s after it printed ``line`` (by then inside
    a migration of 20 s of short sleeps); its exit code, stdout and stderr."""
    with started(
        safe_migrate_cli("sigapp", *args),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        seen = ""
        deadline = time.monotonic() + 30
        while line not in seen and time.monotonic() < deadline and process.poll() is None:
            seen += process.stdout.readline()
        assert line in seen, seen
        time.sleep(0.7)
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    return process.returncode, seen + out, err


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
    env = _app(tmp_path, pg_url, directory)
    code, out, err = _signal_after(tmp_path, env, ["run"], "0001_t applied", sig)
    # 0002 was cut (it would take 20 s): the "slow" table below is not there
    assert code == 1, (out, err)
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


def _applied(tmp_path, url: str, files: dict[str, str]) -> dict[str, str]:
    """``files`` applied by a real ``flask safe-migrate run``; the environment of that app."""
    env = _app(tmp_path, url, write_migrations(tmp_path / "m", files))
    subprocess.run(
        safe_migrate_cli("sigapp", "run"), cwd=tmp_path, env=env, check=True, capture_output=True
    )
    return env


def test_sigterm_stops_a_rollback_cleanly_too(pg_url, tmp_path) -> None:
    env = _applied(
        tmp_path,
        pg_url,
        {
            "0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\nDROP TABLE t;\n",
            "0002_slow.py": SLOW_DOWN,
            "0003_u.sql": "CREATE TABLE u (a int);\n-- safe-migrate: down\nDROP TABLE u;\n",
        },
    )
    # 0003 is reverted, then 0002's down part (20 s of sleeps) is cut
    code, out, err = _signal_after(
        tmp_path, env, ["rollback", "--to", "0"], "0003_u rolled back", signal.SIGTERM
    )
    assert code == 1, (out, err)
    assert "Traceback" not in err
    assert "stopped by SIGTERM: 1 rolled back by this run (0003_u)" in err
    assert "0002_slow's down part was rolled back: it is still applied" in err
    assert "the migration lease was released" in err
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert scalar(pg_url, "SELECT count(*) FROM safe_migrate_ledger_lease") == 0
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NOT NULL") is True  # DROP undone
    assert scalar(pg_url, "SELECT to_regclass('u') IS NULL") is True


@pytest.mark.parametrize("driver", DRIVERS)
def test_sigterm_cancels_a_long_down_statement_on_the_server(pg_url, tmp_path, driver) -> None:
    """Injects: SIGTERM while a down part sits in a 10-minute ``pg_sleep``.

    With psycopg2 the Python signal handler cannot run while the driver waits for the
    server: the rollback must cancel the statement on the server, or it would wait it out.
    """
    env = _applied(
        tmp_path,
        with_driver(pg_url, driver),
        {
            "0001_t.sql": "CREATE TABLE t (a int);\n-- safe-migrate: down\nDROP TABLE t;\n",
            "0002_slow.sql": (
                "CREATE TABLE slow (a int);\n-- safe-migrate: down\n"
                "DROP TABLE slow;\nSELECT pg_sleep(600);\n"
            ),
        },
    )
    sleeping, process, out, err = sigterm_during(
        safe_migrate_cli("sigapp", "rollback", "--to", "0"),
        pg_url,
        "SELECT pg_sleep(600)",
        cwd=tmp_path,
        env=env,
    )
    assert process.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert "0002_slow's down part was rolled back: it is still applied" in err, err
    assert "the migration lease was released" in err
    assert not backend_active(pg_url, sleeping), "the statement runs on without its client"
    assert ledger(pg_url) == [("0001", 1), ("0002", 1)]
    assert scalar(pg_url, "SELECT to_regclass('slow') IS NOT NULL") is True  # DROP undone
