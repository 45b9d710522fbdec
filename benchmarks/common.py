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
import math
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

#: A process that imports the app (``smapp``) and exits: a booting web worker.
BOOT_ARGV = [sys.executable, "-c", "import smapp"]


def median(values: t.Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3) if theirs else float("inf")


def quantile(values: t.Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (``q`` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median_ci(values: t.Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (binomial order statistics).

    With too few values for the requested confidence it widens to (min, max).
    """
    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    cumulative, k = 0.0, 0
    # largest k with P(Binomial(n, 1/2) < k) <= tail: the k-th smallest value is the lower bound
    while k < n:
        next_cumulative = cumulative + math.comb(n, k) / 2**n
        if next_cumulative > tail:
            break
        cumulative, k = next_cumulative, k + 1
    low = max(k - 1, 0)
    return float(ordered[low]), float(ordered[n - 1 - low])


def spread(values: t.Sequence[float]) -> dict[str, t.Any]:
    """min, quartiles, max and the 95% interval of the median, rounded for the report."""
    low, high = median_ci(values)
    return {
        "min": round(min(values), 4),
        "q1": round(quantile(values, 0.25), 4),
        "median": round(median(values), 4),
        "q3": round(quantile(values, 0.75), 4),
        "max": round(max(values), 4),
        "median_ci95": [round(low, 4), round(high, 4)],
        "n": len(values),
    }


class CpuBusy:
    """Share of the machine's CPU time spent busy between ``start()`` and ``stop()`` (/proc/stat)."""

    def __init__(self) -> None:
        self._start: tuple[int, int] | None = None

    @staticmethod
    def _sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def start(self) -> CpuBusy:
        self._start = self._sample()
        return self

    def stop(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None or end[0] == self._start[0]:
            return None
        total, idle = end[0] - self._start[0], end[1] - self._start[1]
        return round(1 - idle / total, 3)


#: Where the figures go (``suite --quick`` points it at ``results/quick/``) and the
#: id shared by every file of one suite run.
_STATE: dict[str, t.Any] = {"results": RESULTS, "run_id": None}


def results_dir() -> str:
    return str(_STATE["results"])


def set_results_dir(path: str) -> None:
    _STATE["results"] = path


def set_run_id(run_id: str) -> None:
    """One id for every file a suite run writes, so the report can tell mixed runs apart."""
    _STATE["run_id"] = run_id


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


#: Paths whose uncommitted changes can move the figures (results and docs cannot).
CODE_PATHS = ("flask_safe_migrate", "benchmarks", "setup.cfg", "pyproject.toml", "tests/infra")


def provenance(quick: bool | None, servers: Servers | None = None) -> dict[str, t.Any]:
    """What produced a results file: commit, uncommitted code changes, when, how big, where.

    ``quick`` is True when the sizes were below the spec's (a smoke run), ``None`` when
    the caller did not say.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", *CODE_PATHS)
    dirty_paths = (
        None
        if status is None
        else [
            line[3:]
            for line in status.splitlines()
            if line[3:] and not line[3:].startswith("benchmarks/results")
        ]
    )
    info: dict[str, t.Any] = {
        "commit": commit.strip() if commit else None,
        "dirty": bool(dirty_paths) if dirty_paths is not None else None,
        "dirty_paths": (dirty_paths or [])[:20],
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": quick,
        "run_id": _STATE["run_id"] or f"standalone-{time.strftime('%Y%m%dT%H%M%S')}",
        "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "machine": machine(),
    }
    if servers is not None:
        info["servers"] = servers.versions()
    return info


def write_result(
    name: str,
    figures: dict[str, t.Any],
    *,
    quick: bool | None = None,
    servers: Servers | None = None,
) -> None:
    """Print ``figures`` and write them, with their provenance, to ``<results>/<name>.json``."""
    figures = {**figures, "provenance": provenance(quick, servers)}
    os.makedirs(results_dir(), exist_ok=True)
    with open(os.path.join(results_dir(), f"{name}.json"), "w") as fh:
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

    def boot(
        self, url: str, *, argv: list[str] | None = None, stderr: int | None = subprocess.DEVNULL
    ) -> subprocess.Popen[str]:
        """Start what a booting web worker does: import the app, auto-migrate on.

        ``argv``: another command for the same import (e.g. under a profiler).
        """
        return subprocess.Popen(
            argv or BOOT_ARGV,
            cwd=self.sm_dir,
            env=self.env(url, self.sm_dir, BENCH_AUTO="1"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )

    def destroy(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Workspaces:
    """Workspaces by history length, made on demand, reusing the ones given."""

    def __init__(self, *given: Workspace) -> None:
        self.given = {ws.count: ws for ws in given}
        self.made: dict[int, Workspace] = {}

    def __call__(self, count: int) -> Workspace:
        if count in self.given:
            return self.given[count]
        if count not in self.made:
            self.made[count] = Workspace(count)
        return self.made[count]

    def destroy(self) -> None:
        for ws in self.made.values():
            ws.destroy()
        self.made.clear()


class Servers:
    """A private TLS Postgres cluster and a PgBouncer (transaction mode, TLS) in front of it."""

    def __init__(self, bouncer: bool = True) -> None:
        from tests.infra.pgbouncer import PgBouncer
        from tests.infra.postgres import TlsCluster

        self._versions: dict[str, str] | None = None
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

    def versions(self) -> dict[str, str]:
        """Server versions, asked once."""
        if self._versions is None:
            self._versions = {
                "postgres": self.server_version(),
                "pgbouncer": self.bouncer_version(),
            }
        return self._versions

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


def exactly_once(servers: Servers, name: str, tool: str, count: int) -> bool:
    """Every migration applied once: the bookkeeping and the seed rows agree (one connection)."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(servers.cluster.server.url_for(name), poolclass=NullPool)
    try:
        with engine.connect() as conn:

            def one(sql: str) -> t.Any:
                return conn.exec_driver_sql(sql).scalar()

            if tool == "sm":
                rows = one("SELECT count(DISTINCT version) FROM safe_migrate_ledger")
                dupes = one("SELECT count(*) - count(DISTINCT version) FROM safe_migrate_ledger")
                if rows != count or dupes != 0:
                    return False
            elif one("SELECT version_num FROM alembic_version") != f"r{count:04d}":
                return False
            tables = (
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ '^t[0-9]+$'"
            )
            wrong = one(
                f"SELECT count(*) FROM ({tables}) s WHERE (xpath('/row/c/text()', query_to_xml("
                "'SELECT count(*) AS c FROM ' || quote_ident(s.relname), false, true, '')))[1]"
                "::text::int <> 3"
            )
            found = one(f"SELECT count(*) FROM ({tables}) s")
    finally:
        engine.dispose()
    seeded = (count - 3) // 10 + 1 if count >= 3 else 0
    return wrong == 0 and found >= seeded


def server_activity(servers: Servers, name: str, wait: float = 5.0) -> dict[str, int] | None:
    """Server connections opened and transactions committed in database ``name`` so far.

    Read from ``pg_stat_database`` once the database's last backend has gone (a backend
    flushes its counters when it exits), over an admin connection to another database.
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(servers.cluster.admin_url, poolclass=NullPool)
    try:
        deadline = time.monotonic() + wait
        while True:
            with engine.connect() as conn:
                row = conn.exec_driver_sql(
                    "SELECT numbackends, sessions, xact_commit FROM pg_stat_database "
                    "WHERE datname = %(name)s",
                    {"name": name},
                ).one_or_none()
            if row is None:
                return None
            if row[0] == 0 or time.monotonic() > deadline:
                return {"sessions": int(row[1]), "commits": int(row[2])}
            time.sleep(0.05)
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
