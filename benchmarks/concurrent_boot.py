"""Row 4: 12 processes booting at once with auto-migrate, through PgBouncer.

Each process imports the app with ``SAFE_MIGRATE_AUTO_MIGRATE = True`` (so
``init_app`` applies what is pending) and exits; the database is empty at the
start. The wall time from starting the first process to the last one exiting is
compared with one process doing the same alone (alternated run by run, fresh
database each). Exactly-once is checked after every run: one ledger row per
migration, no duplicates, each seed INSERT's 3 rows exactly once.

Writes benchmarks/results/concurrent_boot.json.

Usage: python -m benchmarks.concurrent_boot [--count 1000] [--processes 12] [--runs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import count_rows
from benchmarks.common import exactly_once
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import ratio
from benchmarks.common import write_result


def boot(servers: Servers, ws: Workspace, processes: int) -> tuple[float, bool, int]:
    name = servers.new_database()
    url = servers.bouncer_url(name)
    try:
        started = time.perf_counter()
        procs = [ws.boot(url, stderr=subprocess.PIPE) for _ in range(processes)]
        codes = []
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            codes.append(proc.returncode)
            if proc.returncode != 0:
                log(f"boot process failed: {err[-1500:]}")
        elapsed = time.perf_counter() - started
        ok = all(code == 0 for code in codes) and exactly_once(servers, name, "sm", ws.count)
        appliers = count_rows(
            servers.cluster.server.url_for(name),
            "SELECT count(DISTINCT applied_by) FROM safe_migrate_ledger",
        )
        return elapsed, ok, int(appliers)
    finally:
        servers.drop_database(name)


def run(servers: Servers, ws: Workspace, processes: int, runs: int) -> dict[str, object]:
    alone: list[float] = []
    crowd: list[float] = []
    all_ok = True
    appliers: list[int] = []
    for rep in range(runs):
        for n in (1, processes) if rep % 2 == 0 else (processes, 1):
            elapsed, ok, who = boot(servers, ws, n)
            all_ok = all_ok and ok
            (alone if n == 1 else crowd).append(elapsed)
            if n > 1:
                appliers.append(who)
            log(
                f"concurrent boot {n} process(es), run {rep + 1}: {elapsed:.2f}s "
                f"exactly-once {'ok' if ok else 'FAILED'}, {who} applier(s)"
            )
    one, many = median(alone), median(crowd)
    return {
        "migrations": ws.count,
        "processes": processes,
        "runs": runs,
        "alone_median_s": round(one, 3),
        "concurrent_median_s": round(many, 3),
        "ratio": ratio(many, one),
        "target_ratio": 1.3,
        "met": many / one <= 1.3 and all_ok,
        "exactly_once": all_ok,
        "distinct_appliers": appliers,
        "alone_runs_s": [round(x, 3) for x in alone],
        "concurrent_runs_s": [round(x, 3) for x in crowd],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=12)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    servers = Servers()
    ws = Workspace(args.count)
    try:
        figures = run(servers, ws, args.processes, args.runs)
        quick = args.count < 1000 or args.processes < 12
        write_result("concurrent_boot", figures, quick=quick, servers=servers)
    finally:
        ws.destroy()
        servers.destroy()


if __name__ == "__main__":
    main()
