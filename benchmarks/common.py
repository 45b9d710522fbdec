"""Shared machinery for the benchmarks: one private Postgres + PgBouncer, two Flask apps.

Both tools run against the same server (a private TLS cluster from
``tests/infra``, SCRAM passwords, ``fsync=off``) with the same generated history,
from the same venv:

* ``smapp``: Flask-SQLAlchemy + ``SafeMigrate`` over ``safe_migrations/`` (SQL files)
* ``fmapp``: Flask-SQLAlchemy + Flask-Migrate over ``migrations/`` (``flask db init``
  layout plus the same SQL as chained Alembic revisions)

The app modules read ``BENCH_URL`` (and ``BENCH_AUTO``) from the environment.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.history import generate  # noqa: E402
from benchmarks.history import generate_alembic  # noqa: E402

SM_APP = """
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_safe_migrate import SafeMigrate

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_URL"]
app.config["SAFE_MIGRATE_DIRECTORY"] = os.path.join(os.path.dirname(__file__), "safe_migrations")
app.config["SAFE_MIGRATE_AUTO_MIGRATE"] = os.environ.get("BENCH_AUTO") == "1"
db = SQLAlchemy(app)
safe_migrate = SafeMigrate(app, db)
"""

FM_APP = """
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_migrate import Migrate

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_URL"]
db = SQLAlchemy(app)
migrate = Migrate(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
"""


def median(values: t.Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3) if theirs else float("inf")


def write_result(name: str, figures: dict[str, t.Any]) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as fh:
        json.dump(figures, fh, indent=2)
        fh.write("\n")
    print(json.dumps(figures, indent=2), flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Workspace:
    """Two app modules sharing one generated history of ``count`` migrations."""

    def __init__(self, count: int, root: str | None = None) -> None:
        self.count = count
        self.root = tempfile.mkdtemp(prefix=f"sm-bench-{count}-", dir=root)
        self.sm_dir = os.path.join(self.root, "sm")
        self.fm_dir = os.path.join(self.root, "fm")
        os.makedirs(self.sm_dir)
        os.makedirs(self.fm_dir)
        with open(os.path.join(self.sm_dir, "smapp.py"), "w") as fh:
            fh.write(SM_APP)
        with open(os.path.join(self.fm_dir, "fmapp.py"), "w") as fh:
            fh.write(FM_APP)
        self.sql_dir = generate(os.path.join(self.sm_dir, "safe_migrations"), count)
        # `flask db init` writes env.py, alembic.ini, script.py.mako and versions/.
        completed = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "fmapp", "db", "init"],
            cwd=self.fm_dir,
            env=self.env("postgresql+psycopg2://unused@127.0.0.1/unused", self.fm_dir),
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"flask db init failed:\n{completed.stderr}")
        generate_alembic(os.path.join(self.fm_dir, "migrations", "versions"), count)

    @staticmethod
    def env(url: str, app_dir: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFE_MIGRATE_")}
        env.update(BENCH_URL=url, PYTHONPATH=app_dir + os.pathsep + ROOT, **extra)
        env.pop("FLASK_APP", None)
        return env

    def command(self, tool: str) -> tuple[list[str], str, str]:
        """argv, cwd, app dir of the whole-process upgrade for ``tool`` ('sm' or 'fm')."""
        if tool == "sm":
            argv = [sys.executable, "-m", "flask", "--app", "smapp", "safe-migrate", "run"]
            return argv, self.sm_dir, self.sm_dir
        argv = [sys.executable, "-m", "flask", "--app", "fmapp", "db", "upgrade"]
        return argv, self.fm_dir, self.fm_dir

    def run(
        self, tool: str, url: str, *, timeout: float = 600, check: bool = True
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ``tool``'s upgrade as a whole process; its wall time and outcome."""
        argv, cwd, app_dir = self.command(tool)
        started = time.perf_counter()
        completed = subprocess.run(
            argv,
            cwd=cwd,
            env=self.env(url, app_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        elapsed = time.perf_counter() - started
        if check and completed.returncode != 0:
            raise RuntimeError(
                f"{tool} upgrade failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
            )
        return elapsed, completed

    def destroy(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Servers:
    """A private TLS Postgres cluster and a PgBouncer (transaction mode, TLS) in front of it."""

    def __init__(self, bouncer: bool = True) -> None:
        from tests.infra.pgbouncer import PgBouncer
        from tests.infra.postgres import TlsCluster

        self.cluster = TlsCluster()
        self.cluster.start()
        self.bouncer = None
        if bouncer:
            self.bouncer = PgBouncer(self.cluster, pool_size=20)
            self.bouncer.start()

    def new_database(self) -> str:
        from tests.infra.postgres import APP_USER

        return self.cluster.server.create_database(owner=APP_USER, prefix="sm_bench")

    def drop_database(self, name: str) -> None:
        if self.bouncer is not None:
            try:  # PgBouncer keeps server connections to it open
                self.bouncer.admin(f'KILL "{name}"')
            except Exception:
                pass
        self.cluster.server.drop_database(name)

    def direct_url(self, database: str) -> str:
        return self.cluster.app_url(database)  # TLS, SCRAM

    def bouncer_url(self, database: str) -> str:
        assert self.bouncer is not None
        return self.bouncer.app_url(database)  # client TLS and server TLS

    def server_version(self) -> str:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        engine = sa.create_engine(self.cluster.admin_url, poolclass=NullPool)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
        return str(version)

    def bouncer_version(self) -> str:
        if self.bouncer is None:
            return ""
        try:
            return str(self.bouncer.admin("SHOW VERSION")[0][0])
        except Exception:
            return "?"

    def destroy(self) -> None:
        if self.bouncer is not None:
            self.bouncer.destroy()
        self.cluster.destroy()


def count_rows(url: str, sql: str) -> t.Any:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(sql).scalar()
    finally:
        engine.dispose()


def machine() -> dict[str, t.Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
            memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    for package in (
        "flask-safe-migrate",
        "flask-migrate",
        "alembic",
        "sqlalchemy",
        "flask-sqlalchemy",
        "psycopg2-binary",
        "squawk-cli",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "-"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
