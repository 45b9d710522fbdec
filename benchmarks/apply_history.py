"""Apply a generated 1000-migration history with flask-safe-migrate; time it.

Figures printed and written to benchmarks/results/apply_history.json:
* apply: wall time of `upgrade()` on an empty database (median of N runs)
* boot_in_process: `pending()` on an up-to-date database, in-process (median)
* boot_process: whole `flask safe-migrate run` process with nothing to apply (median)

Usage: python benchmarks/apply_history.py [--url URL] [--count 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.history import generate  # noqa: E402

APP_MODULE = """
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_safe_migrate import SafeMigrate
app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_URL"]
db = SQLAlchemy(app)
SafeMigrate(app, db, directory=os.environ["BENCH_DIR"])
"""


def _admin(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "BENCH_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    from flask_safe_migrate import SafeMigrate

    work = tempfile.mkdtemp(prefix="sm-bench-")
    directory = generate(os.path.join(work, "migrations"), args.count)
    admin = sa.engine.make_url(args.url)
    applies: list[float] = []
    boots: list[float] = []
    processes: list[float] = []
    for run in range(args.runs):
        name = f"sm_bench_{uuid.uuid4().hex[:8]}"
        _admin(args.url, f'CREATE DATABASE "{name}"')
        url = admin.set(database=name).render_as_string(hide_password=False)
        try:
            app = Flask(f"bench{run}")
            app.config["SQLALCHEMY_DATABASE_URI"] = url
            db = SQLAlchemy(app)
            ext = SafeMigrate(app, db, directory=directory)
            started = time.perf_counter()
            outcomes = ext.upgrade(app)
            applies.append(time.perf_counter() - started)
            assert len(outcomes) == args.count
            for _ in range(5):
                started = time.perf_counter()
                assert ext.pending(app) == []
                boots.append(time.perf_counter() - started)
            module_dir = os.path.join(work, f"app{run}")
            os.makedirs(module_dir)
            with open(os.path.join(module_dir, "benchapp.py"), "w") as fh:
                fh.write(APP_MODULE)
            env = {
                **os.environ,
                "BENCH_URL": url,
                "BENCH_DIR": directory,
                "PYTHONPATH": module_dir + os.pathsep + ROOT,
            }
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "flask", "--app", "benchapp", "safe-migrate", "run"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                processes.append(time.perf_counter() - started)
        finally:
            _admin(args.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures = {
        "migrations": args.count,
        "runs": args.runs,
        "apply_median_s": round(statistics.median(applies), 3),
        "apply_runs_s": [round(x, 3) for x in applies],
        "per_migration_ms": round(statistics.median(applies) / args.count * 1000, 2),
        "boot_in_process_median_ms": round(statistics.median(boots) * 1000, 2),
        "boot_process_median_s": round(statistics.median(processes), 3),
    }
    print(json.dumps(figures, indent=2))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "apply_history.json"), "w") as fh:
        json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
