"""Every benchmark, one Postgres cluster and one PgBouncer, then the report.

Run through ``benchmarks/run_all``. The full run writes ``benchmarks/results/*.json``,
``docs/benchmarks.md`` and ``docs/benchmarks.png``; it must finish in under 10
minutes on the 2-core machine the docs name, and ``suite.json`` records how long
each phase took. ``--quick`` shrinks everything for a smoke test and writes its
results, page and chart to ``benchmarks/results/quick/`` (ignored by git): quick
figures are not meant for the docs, and the report marks them as such.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import typing as t

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
from benchmarks.common import Workspaces
from benchmarks.common import log
from benchmarks.common import set_results_dir
from benchmarks.common import set_run_id
from benchmarks.common import write_result

BUDGET_S = 600

#: Sizes of the full run (the spec's) and of the smoke test.
SIZES: dict[str, dict[str, t.Any]] = {
    "full": {
        "migrations": 1000,
        "apply_runs": 3,
        "boots": 3,
        "probes": 5,
        "verify_runs": 5,
        "statements": 10000,
        "rounds": 50,
        "nullpool_statements": 500,
        "nullpool_rounds": 10,
        "processes": 12,
        "boot_runs": 2,
        "fault_runs": 20,
        "fault_budget_s": 220,
        "fault_candidates": faults.CANDIDATES,
        "fault_calibration": faults.CALIBRATION,
        "fault_concurrent_timeout_s": 120,
        "fault_stagger_s": 0.25,
    },
    "quick": {
        "migrations": 100,
        "apply_runs": 1,
        "boots": 2,
        "probes": 2,
        "verify_runs": 2,
        "statements": 1000,
        "rounds": 10,
        "nullpool_statements": 100,
        "nullpool_rounds": 5,
        "processes": 12,
        "boot_runs": 1,
        "fault_runs": 3,
        "fault_budget_s": 30,
        "fault_candidates": (100, 50, 20),
        "fault_calibration": (20, 50),
        "fault_concurrent_timeout_s": 90,
        "fault_stagger_s": 0.25,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run every benchmark and regenerate docs/benchmarks.md and .png"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, for a smoke test (results and page go to benchmarks/results/quick/)",
    )
    args = parser.parse_args()
    q = args.quick
    size = SIZES["quick" if q else "full"]
    if q:
        quick_dir = os.path.join(RESULTS, "quick")
        os.makedirs(quick_dir, exist_ok=True)
        with open(os.path.join(quick_dir, ".gitignore"), "w") as fh:
            fh.write("# smoke-test output of benchmarks/run_all --quick: never committed\n*\n")
        set_results_dir(quick_dir)
    set_run_id(f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}")
    started = time.perf_counter()
    phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str) -> t.Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            phases[name] = round(time.perf_counter() - began, 1)
            log(f"phase {name}: {phases[name]:.0f} s (total {time.perf_counter() - started:.0f} s)")

    count = size["migrations"]
    with phase("setup"):
        servers = Servers()
        big = Workspace(count)
        spaces = Workspaces(big)
    log(f"servers: {servers.versions()}")
    saved: dict[str, dict[str, t.Any]] = {}

    def save(name: str, figures: dict[str, t.Any]) -> None:
        write_result(name, figures, quick=q, servers=servers)
        saved[name] = figures

    try:
        with phase("apply_history"):
            applied = apply_history.run(
                servers, big, size["apply_runs"], size["boots"], size["probes"]
            )
            save("apply_history", applied)
        with phase("verify_speed"):
            save("verify_speed", verify_speed.run(count, size["verify_runs"]))
        with phase("executor_overhead"):
            executor = executor_overhead.run(
                servers,
                size["statements"],
                size["nullpool_statements"],
                size["rounds"],
                size["nullpool_rounds"],
            )
            save("executor_overhead", executor)
        with phase("concurrent_boot"):
            boot = concurrent_boot.run(servers, big, size["processes"], size["boot_runs"])
            save("concurrent_boot", boot)
        with phase("faults"):
            fault_figures = faults.run(
                servers,
                spaces,
                runs=size["fault_runs"],
                budget_s=size["fault_budget_s"],
                candidates=size["fault_candidates"],
                calibration=size["fault_calibration"],
                concurrent_timeout=size["fault_concurrent_timeout_s"],
                stagger=size["fault_stagger_s"],
                deadline=started + BUDGET_S - profile_reserve(applied),
            )
            save("faults", fault_figures)
        with phase("profiles"):
            save("profiles", profile_misses(servers, spaces, big, count, saved))
    finally:
        with phase("teardown"):
            spaces.destroy()
            big.destroy()
            servers.destroy()

    def summary() -> dict[str, t.Any]:
        runtime = time.perf_counter() - started
        return {
            "runtime_s": round(runtime, 1),
            "budget_s": BUDGET_S,
            "within_budget": runtime < BUDGET_S,
            "phases_s": dict(phases),
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
            "quick": q,
        }

    save("suite", summary())  # provisional, so the chart sees a complete set
    with phase("chart"):
        report.chart(report.load_all(), report.chart_path())
    save("suite", summary())
    report.main(["--no-chart", "--allow-quick"] if q else ["--no-chart"])
    log(f"run_all done in {time.perf_counter() - started:.0f} s (budget {BUDGET_S} s)")


def profile_reserve(applied: dict[str, t.Any]) -> float:
    """Seconds to keep for the profiles, teardown and chart, from the apply times measured.

    The profiles apply the history about five times (apply, an up-to-date database for
    the no-op and pending() profiles, the crowd alone and with waiters).
    """
    direct = float(applied.get("apply_direct", {}).get("ours_median_s") or 10.0)
    pooled = float(applied.get("apply_pgbouncer", {}).get("ours_median_s") or direct)
    return 2.5 * direct + 2.5 * pooled + 30.0


def profile_misses(
    servers: Servers,
    spaces: Workspaces,
    big: Workspace,
    count: int,
    results: dict[str, dict[str, t.Any]],
) -> dict[str, object]:
    """A pyinstrument profile for every row whose target was missed in ``results``."""
    found: dict[str, object] = {}
    applied = results["apply_history"]
    if not all(applied.get(k, {}).get("met", True) for k in ("apply_direct", "apply_pgbouncer")):
        found["apply"] = profiles.profile_apply(servers, big)
    noop_missed = not applied.get("noop_boot_process", {}).get("met", True)
    pending_missed = not applied.get("pending_in_process", {}).get("met", True)
    if noop_missed or pending_missed:
        with profiles.applied_database(servers, big) as url:  # applied once for both
            if noop_missed:
                found["noop"] = profiles.profile_noop(servers, big, url)
            if pending_missed:
                found["pending"] = profiles.profile_pending(servers, big, url)
    boot = results["concurrent_boot"]
    if not boot.get("met", True):
        found["crowd"] = profiles.profile_crowd(servers, big, boot.get("processes", 12) - 1)
    pooled = results["executor_overhead"].get("pooled", {})
    if not pooled.get("met", True) or pooled.get("within_noise"):
        found["executor"] = profiles.profile_executor(servers)
    fault_figures = results["faults"]
    rows = [v for k, v in fault_figures.items() if k.startswith("rate_")]
    if any(not faults.row_met(row) for row in rows):
        lowest = min(row["rate"] for row in rows)
        found["faults"] = profiles.profile_faults(
            servers, spaces(fault_figures["migrations"]), lowest
        )
    if not results["verify_speed"].get("met", True):
        found["verify"] = profiles.profile_verify(count)
    return found


if __name__ == "__main__":
    main()
