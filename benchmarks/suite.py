"""Every benchmark, one Postgres cluster and one PgBouncer, then the report.

Run through ``benchmarks/run_all``. ``--quick`` shrinks everything for a smoke test
(its figures are not meant for the docs).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks import apply_history
from benchmarks import concurrent_boot
from benchmarks import executor_overhead
from benchmarks import faults
from benchmarks import profiles
from benchmarks import report
from benchmarks import verify_speed
from benchmarks.common import RESULTS
from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import log
from benchmarks.common import machine
from benchmarks.common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run every benchmark and regenerate docs/benchmarks.md"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    q = args.quick
    count = 100 if q else 1000
    started = time.perf_counter()
    os.makedirs(RESULTS, exist_ok=True)
    servers = Servers()
    big = Workspace(count)
    small = Workspace(20)
    try:
        info = {"postgres": servers.server_version(), "pgbouncer": servers.bouncer_version()}
        log(f"servers: {info}")
        applied = apply_history.run(servers, big, runs=1 if q else 3, boots=2 if q else 3)
        write_result("apply_history", applied)
        write_result("verify_speed", verify_speed.run(count, 2 if q else 5))
        write_result(
            "executor_overhead",
            executor_overhead.run(servers, 1000 if q else 10000, 100 if q else 500),
        )
        write_result("concurrent_boot", concurrent_boot.run(servers, big, 12, 1 if q else 2))
        write_result(
            "faults",
            faults.run(
                servers,
                small,
                {0.01: 2 if q else 10, 0.05: 2 if q else 10},
                timeout=300,
                clean_runs=1 if q else 3,
            ),
        )
        found: dict[str, object] = {}
        if not all(applied[k]["met"] for k in ("apply_direct", "apply_pgbouncer")):
            found["apply"] = profiles.profile_apply(servers, big)
        executor = json.load(open(os.path.join(RESULTS, "executor_overhead.json")))
        if not executor["pooled"]["met"]:
            found["executor"] = profiles.profile_executor(servers)
        boot = json.load(open(os.path.join(RESULTS, "concurrent_boot.json")))
        if not boot["met"]:
            found["crowd"] = profiles.profile_crowd(servers, big)
        if not applied["pending_in_process"]["met"]:
            found["pending"] = profiles.profile_pending(servers, big)
        write_result("profiles", found)
    finally:
        big.destroy()
        small.destroy()
        servers.destroy()
    runtime = time.perf_counter() - started
    write_result(
        "suite", {"runtime_s": round(runtime, 1), "quick": q, "machine": machine(), "servers": info}
    )
    report.main()
    log(f"run_all done in {runtime:.0f} s")


if __name__ == "__main__":
    main()
