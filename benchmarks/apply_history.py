"""Rows 1-2: apply a generated history, and boot with nothing to apply, vs Flask-Migrate.

Whole processes: ``flask safe-migrate run`` vs ``flask db upgrade`` (Flask-Migrate's
default: one transaction for everything), on the same Postgres (TLS, SCRAM), the
same SQL, directly and through PgBouncer (transaction mode, TLS both sides). The two
tools alternate run by run (order flipped every repetition); each run gets an empty
database of its own. Then, on the up-to-date databases, the no-op boot of each tool,
alternated, and ``pending()`` in-process right after importing the app (first call
in a fresh interpreter, and warm calls). For the direct runs, the server's own
counters (``pg_stat_database``) give the connections each tool opened and the
transactions it committed, so the report can say why the times differ.

Writes benchmarks/results/apply_history.json.

Usage: python -m benchmarks.apply_history [--count 1000] [--runs 3] [--boots 3] [--probes 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import ratio
from benchmarks.common import server_activity
from benchmarks.common import spread
from benchmarks.common import write_result

PENDING_PROBE = """
import json, sys, time
started = time.perf_counter()
import smapp
imported = time.perf_counter()
first_started = time.perf_counter()
assert smapp.safe_migrate.pending(smapp.app) == []
first = time.perf_counter() - first_started
warm = []
for _ in range(int(sys.argv[1])):
    begun = time.perf_counter()
    assert smapp.safe_migrate.pending(smapp.app) == []
    warm.append(time.perf_counter() - begun)
print(json.dumps({"import_s": imported - started, "first_s": first, "warm_s": warm}))
"""


def pending_probe(ws: Workspace, url: str, warm: int = 15) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", PENDING_PROBE, str(warm)],
        cwd=ws.sm_dir,
        env=ws.env(url, ws.sm_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(
    servers: Servers, ws: Workspace, runs: int, boots: int, probes: int = 5
) -> dict[str, object]:
    """``runs`` alternated applies per target; after each direct pair ``boots`` no-op boots
    per tool; ``pending()`` probed in ``probes`` fresh interpreters in all."""
    targets = ["direct"] + (["pgbouncer"] if servers.bouncer is not None else [])
    apply: dict[str, dict[str, list[float]]] = {t: {"sm": [], "fm": []} for t in targets}
    noop: dict[str, list[float]] = {"sm": [], "fm": []}
    firsts: list[float] = []
    warms: list[float] = []
    activity: dict[str, list[dict[str, int]]] = {"sm": [], "fm": []}
    for rep in range(runs):
        order = ("sm", "fm") if rep % 2 == 0 else ("fm", "sm")
        for target in targets:
            urls: dict[str, str] = {}
            names: list[str] = []
            for tool in order:
                name = servers.new_database()
                names.append(name)
                url = servers.direct_url(name) if target == "direct" else servers.bouncer_url(name)
                urls[tool] = url
                elapsed, _ = ws.run(tool, url)
                apply[target][tool].append(elapsed)
                log(f"apply {ws.count} {target} {tool} run {rep + 1}: {elapsed:.2f}s")
                if target == "direct":
                    counters = server_activity(servers, name)
                    if counters is not None:
                        activity[tool].append(counters)
            if target == "direct":
                for boot in range(boots):
                    for tool in order if boot % 2 == 0 else order[::-1]:
                        elapsed, _ = ws.run(tool, urls[tool])
                        noop[tool].append(elapsed)
                # spread the probes over the repetitions: all of them by the last one
                due = probes * (rep + 1) // runs - probes * rep // runs
                for _ in range(due):
                    probe = pending_probe(ws, urls["sm"])
                    firsts.append(float(probe["first_s"]))  # type: ignore[arg-type]
                    warms.extend(probe["warm_s"])  # type: ignore[arg-type]
                first_ms = f"{firsts[-1] * 1000:.1f} ms" if firsts else "-"
                log(
                    f"no-op boot run {rep + 1}: sm {noop['sm'][-1] if noop['sm'] else 0:.2f}s "
                    f"fm {noop['fm'][-1] if noop['fm'] else 0:.2f}s pending() first {first_ms}"
                )
            for name in names:
                servers.drop_database(name)
    figures: dict[str, object] = {"migrations": ws.count, "runs": runs, "boots_per_run": boots}
    for tool, label in (("sm", "ours"), ("fm", "flask_migrate")):
        if activity[tool]:  # the same every run; the median guards against a stray connection
            figures[f"{label}_server_activity"] = {
                "sessions": int(median([a["sessions"] for a in activity[tool]])),
                "commits": int(median([a["commits"] for a in activity[tool]])),
                "runs": len(activity[tool]),
                "source": "pg_stat_database of the run's database, direct runs",
            }
    for target in targets:
        sm, fm = median(apply[target]["sm"]), median(apply[target]["fm"])
        figures[f"apply_{target}"] = {
            "ours_median_s": round(sm, 3),
            "flask_migrate_median_s": round(fm, 3),
            "ratio": ratio(sm, fm),
            "target_ratio": 0.6,
            "met": sm / fm <= 0.6,
            "ours_runs_s": [round(x, 3) for x in apply[target]["sm"]],
            "flask_migrate_runs_s": [round(x, 3) for x in apply[target]["fm"]],
        }
    if not noop["sm"] or not firsts:
        return figures
    sm, fm = median(noop["sm"]), median(noop["fm"])
    figures["noop_boot_process"] = {
        "ours_median_s": round(sm, 3),
        "flask_migrate_median_s": round(fm, 3),
        "ratio": ratio(sm, fm),
        "target_ratio": 0.6,
        "met": sm / fm <= 0.6,
        "samples_each": len(noop["sm"]),
        "ours_runs_s": [round(x, 3) for x in noop["sm"]],
        "flask_migrate_runs_s": [round(x, 3) for x in noop["fm"]],
    }
    figures["pending_in_process"] = {
        "first_call_median_ms": round(median(firsts) * 1000, 2),
        "warm_median_ms": round(median(warms) * 1000, 2),
        "target_ms": 30,
        "met": median(firsts) * 1000 < 30,
        "first_calls": len(firsts),
        "first_calls_ms": [round(x * 1000, 2) for x in firsts],
        "first_call_spread_ms": spread([x * 1000 for x in firsts]),
        "warm_calls": len(warms),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--no-pgbouncer", action="store_true")
    args = parser.parse_args()
    servers = Servers(bouncer=not args.no_pgbouncer)
    ws = Workspace(args.count)
    try:
        figures = run(servers, ws, args.runs, args.boots, args.probes)
        quick = args.count < 1000 or args.runs < 3 or args.no_pgbouncer
        write_result("apply_history", figures, quick=quick, servers=servers)
    finally:
        ws.destroy()
        servers.destroy()


if __name__ == "__main__":
    main()
