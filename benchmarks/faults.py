"""Row 3: apply a history through a blind proxy that cuts a fraction of TCP chunks.

``FaultProxy(protocol=False)`` relays bytes between the client and the Postgres
server (TLS end to end, untouched) and, with ``set_random(rate, seed=...)``, closes
the connection on a random ``rate`` of the chunks it relays, either direction.
Both tools see the same seeds. Each run applies the whole history to an empty
database of its own; a run completes when the process exits 0 with every
migration applied exactly once (ledger rows / ``alembic_version``, and the seed
INSERTs: exactly 3 rows per table). Our time is compared with our fault-free time
on the same history. The retry settings are the package defaults (read from
``RetryPolicy()``), not tuned.

How it fits the 10-minute budget of ``run_all`` (each choice is recorded in
faults.json and shown in the report's table cell):

* History size: the spec's 1000 migrations when the 1% phase fits its time budget,
  else the largest of ``--candidates`` that does. The estimate comes from two
  fault-free calibration runs per tool (time and relayed chunks are linear in the
  history length), a new connection's measured chunks and time, and the retry
  policy: a cut costs a reconnect and the migration again, plus half a backoff base
  when the retry at once is cut too. Both rates use the same history.
* Fault-free baseline: ``--clean-runs`` per tool, order flipped every repetition.
* Rates below ``--concurrent-from`` (1%): runs one at a time, tools alternating
  (order flipped every repetition), so the time ratio is measured without
  contention.
* Rates from ``--concurrent-from`` (5%) up: a failing run of ours spends a minute
  or more asleep in backoff before it gives up, so its runs are started
  ``--stagger`` seconds apart (tools alternating) and overlap. The machine's busy
  CPU share during the phase is recorded; overlap can only slow a run, so a time
  figure from this phase is an upper bound. A run still going after
  ``--concurrent-timeout`` seconds is stopped and counted as not completed.

Writes benchmarks/results/faults.json.

Usage: python -m benchmarks.faults [--runs 20] [--rates 0.01 0.05] [--budget 220]
       [--candidates 1000 500 200 100 50 20] [--concurrent-timeout 120]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import threading
import time
import typing as t

from benchmarks.common import CpuBusy
from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import Workspaces
from benchmarks.common import exactly_once
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import spread
from benchmarks.common import write_result

SPEC_MIGRATIONS = 1000
CANDIDATES = (1000, 500, 200, 100, 50, 20)
CALIBRATION = (20, 50)
#: Units before the first migration, each on a fresh connection: the ledger read, the
#: ledger creation, the lease.
STARTUP_UNITS = 3
#: The spec's row 3: every run completes at every rate, and up to 1% of chunks cut
#: also within twice our fault-free time.
TIME_TARGET_RATIO = 2.0
TIME_TARGET_UP_TO_RATE = 0.01
#: The least per-run timeout of an overlapping phase when ``run`` shortens it to end by
#: its ``deadline``.
MIN_CONCURRENT_TIMEOUT_S = 60.0


class CountingProxy:
    """A blind ``FaultProxy`` of its own per run, counting the chunks it relays."""

    def __init__(self, port: int, rate: float, seed: int) -> None:
        from flask_safe_migrate.faults import FaultProxy

        self.proxy = FaultProxy("127.0.0.1", port, protocol=False)
        self.chunks: int | None = None
        decide = getattr(self.proxy, "_random_hit", None)
        if decide is not None:  # benchmark-only instrumentation: one call per relayed chunk
            self.chunks = 0
            lock = threading.Lock()

            def counted() -> bool:
                with lock:
                    self.chunks = (self.chunks or 0) + 1
                return bool(decide())

            self.proxy._random_hit = counted  # type: ignore[method-assign]
        if rate:
            self.proxy.set_random(rate, seed=seed)
        self.proxy.start()

    def cuts(self) -> int:
        return sum(1 for e in self.proxy.events if e.kind == "cut")

    def stop(self) -> None:
        self.proxy.stop()


def fresh_connection(servers: Servers, connections: int = 5) -> dict[str, t.Any]:
    """What a retry's new connection costs before its first query, through the blind proxy.

    The package's own engine (``create_migration_engine``), set up by a first
    connection as a run's engine is, then ``connections`` more: the chunks each
    exchanges (SSLRequest, the TLS handshake, startup, SCRAM's messages, parameter
    status) and the seconds it takes; medians. All stay open until the end, so no
    connection's closing messages are counted with the next one's opening.
    """
    from flask_safe_migrate.engines import create_migration_engine

    name = servers.new_database()
    proxy = CountingProxy(servers.cluster.port, 0.0, 0)
    engine = create_migration_engine(proxy.proxy.url(servers.direct_url(name)))
    chunks: list[float] = []
    seconds: list[float] = []
    with contextlib.ExitStack() as opened:
        opened.callback(servers.drop_database, name)
        opened.callback(proxy.stop)
        opened.callback(engine.dispose)
        opened.enter_context(engine.connect())
        for _ in range(connections):
            before = proxy.chunks or 0
            started = time.perf_counter()
            opened.enter_context(engine.connect())
            seconds.append(time.perf_counter() - started)
            chunks.append((proxy.chunks or 0) - before)
    return {
        "chunks": int(median(chunks)),
        "seconds": round(median(seconds), 4),
        "connections": connections,
    }


def _short_error(line: str) -> str:
    """One error line without the parts that differ run by run (ports, durations)."""
    line = re.sub(r"port \d+", "port N", line)
    line = re.sub(r"in \d+(\.\d+)?s", "in Ns", line)
    return line[:220]


def one_run(
    servers: Servers, ws: Workspace, tool: str, rate: float, seed: int, timeout: float
) -> dict[str, t.Any]:
    """One whole-process upgrade of ``tool`` through its own proxy, into a fresh database."""
    name = servers.new_database()
    proxy = CountingProxy(servers.cluster.port, rate, seed)
    url = proxy.proxy.url(servers.direct_url(name))
    started = time.perf_counter()
    timed_out = False
    try:
        elapsed, completed = ws.run(tool, url, timeout=timeout, check=False)
        code = completed.returncode
        lines = completed.stderr.strip().splitlines() if code else []
        errors = [line for line in lines if "Error" in line and "Background" not in line]
        tail = (errors or lines)[-1:]
    except subprocess.TimeoutExpired:
        elapsed = time.perf_counter() - started
        code, tail, timed_out = -1, [f"still running after {timeout:.0f} s: stopped"], True
    proxy.stop()
    try:
        ok = code == 0 and exactly_once(servers, name, tool, ws.count)
    finally:
        servers.drop_database(name)
    result = {
        "tool": tool,
        "ok": ok,
        "exit": code,
        "timed_out": timed_out,
        "s": elapsed,
        "cuts": proxy.cuts(),
        "chunks": proxy.chunks,
        "error": _short_error(tail[0]) if tail else None,
    }
    log(
        f"faults {ws.count} migrations {rate:.0%} seed {seed} {tool}: exit {code} "
        f"{'ok' if ok else 'FAILED'} {elapsed:.2f}s, {proxy.chunks} chunks, {result['cuts']} cut"
    )
    return result


def _line(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Intercept and slope through two (size, value) points, neither negative."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    slope = max(0.0, (y1 - y0) / (x1 - x0)) if x1 != x0 else y0 / max(x0, 1)
    return max(0.0, y0 - slope * x0), slope


def choose_history(
    servers: Servers,
    workspace: t.Callable[[int], Workspace],
    *,
    runs: int,
    rate: float,
    budget_s: float,
    candidates: t.Sequence[int],
    calibration: t.Sequence[int],
    backoff_base: float,
    fresh: dict[str, t.Any],
) -> dict[str, t.Any]:
    """The largest candidate history whose ``runs`` runs per tool at ``rate`` fit ``budget_s``."""
    fits: dict[str, dict[str, list[tuple[int, float]]]] = {
        tool: {"s": [], "chunks": []} for tool in ("sm", "fm")
    }
    overheads: list[float] = []
    for i, size in enumerate(calibration):
        for tool in ("sm", "fm") if i % 2 == 0 else ("fm", "sm"):
            began = time.perf_counter()
            result = one_run(servers, workspace(size), tool, 0.0, 0, 600)
            overheads.append(time.perf_counter() - began - result["s"])
            if not result["ok"]:
                raise RuntimeError(f"fault-free calibration run of {tool} failed: {result}")
            fits[tool]["s"].append((size, result["s"]))
            fits[tool]["chunks"].append((size, float(result["chunks"] or 0)))
    overhead = median(overheads)
    model = {tool: {k: _line(v) for k, v in fit.items()} for tool, fit in fits.items()}

    def estimate(size: int) -> float:
        (s0, s1), (c0, c1) = model["sm"]["s"], model["sm"]["chunks"]
        # A cut costs a reconnect and the migration again, and when the retry at once is
        # cut too (it exchanges a fresh connection's chunks on top), a backoff sleep.
        again = 1 - (1 - rate) ** (c1 + fresh["chunks"])
        per_cut = fresh["seconds"] + s1 + again * backoff_base / 2
        ours = s0 + s1 * size + rate * (c0 + c1 * size) * per_cut
        theirs = model["fm"]["s"][0] + model["fm"]["s"][1] * size  # a cut only shortens it
        return runs * (ours + theirs + 2 * overhead)

    estimates = {size: round(estimate(size), 1) for size in candidates}
    fitting = [size for size in candidates if estimates[size] <= budget_s]
    chosen = max(fitting) if fitting else min(candidates)
    log(f"faults: history estimates {estimates} (budget {budget_s:.0f} s): {chosen} migrations")
    return {
        "spec_migrations": SPEC_MIGRATIONS,
        "chosen": chosen,
        "budget_s": budget_s,
        "for_rate": rate,
        "runs_per_tool": runs,
        "estimated_phase_s": estimates,
        "calibration": {
            tool: {
                "seconds_at": {str(x): round(y, 3) for x, y in fit["s"]},
                "chunks_at": {str(x): int(y) for x, y in fit["chunks"]},
            }
            for tool, fit in fits.items()
        },
        "per_run_overhead_s": round(overhead, 3),
        "model": "runs x (ours + Flask-Migrate fault-free time + rate x chunks x (a "
        "reconnect + one migration + backoff base / 2 when the retry at once is cut too) "
        "+ db setup/check), from the calibration runs",
    }


def _phase(
    servers: Servers,
    ws: Workspace,
    rate: float,
    runs: int,
    *,
    concurrent: bool,
    stagger: float,
    timeout: float,
) -> tuple[list[dict[str, t.Any]], float, float | None]:
    """Every run of one rate: (results, wall seconds, busy CPU share during the phase)."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [
        (tool, 1000 * rep + 7)
        for rep in range(runs)
        for tool in (("sm", "fm") if rep % 2 == 0 else ("fm", "sm"))
    ]
    cpu = CpuBusy().start()
    began = time.perf_counter()
    if concurrent:

        def launch(index: int) -> dict[str, t.Any]:
            time.sleep(index * stagger)
            tool, seed = jobs[index]
            return one_run(servers, ws, tool, rate, seed, timeout)

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(launch, range(len(jobs))))
    else:
        results = [one_run(servers, ws, tool, rate, seed, timeout) for tool, seed in jobs]
    return results, time.perf_counter() - began, cpu.stop()


def time_target(rate: float) -> float | None:
    """The most our time at ``rate`` may be, in multiples of our fault-free time (``None``: no limit)."""
    return TIME_TARGET_RATIO if rate <= TIME_TARGET_UP_TO_RATE else None


def row_met(row: dict[str, t.Any]) -> bool:
    """The spec's target for one rate: every run completes, and within :func:`time_target`."""
    if row.get("ours_completion") != 1.0:
        return False
    most = time_target(row.get("rate", 1.0))
    if most is None:
        return True
    vs = row.get("ours_vs_fault_free")
    return vs is not None and vs <= most


def expected_completion(
    chunks_per_migration: float,
    rate: float,
    attempts: int,
    migrations: int,
    fresh_connection_chunks: int,
    startup_chunks: float = 0.0,
) -> float:
    """Completion rate if every chunk were cut independently with probability ``rate``.

    A migration's first attempt runs on the connection the previous one committed on
    (``chunks_per_migration`` chunks); each retry opens a new connection, which adds
    ``fresh_connection_chunks``. A migration fails when all ``attempts`` are cut.
    The ``startup_chunks`` (the run's fixed traffic) are spread over
    :data:`STARTUP_UNITS` units that connect afresh on every attempt. Ignores the
    deadline, so the real rate can only be lower.
    """
    keep = 1 - rate
    first = keep**chunks_per_migration
    retry = keep ** (chunks_per_migration + fresh_connection_chunks)
    migration_ok = 1 - (1 - first) * (1 - retry) ** (attempts - 1)
    unit = keep ** max(startup_chunks / STARTUP_UNITS, float(fresh_connection_chunks))
    startup_ok = (1 - (1 - unit) ** attempts) ** STARTUP_UNITS
    return float(startup_ok * migration_ok**migrations)


def run(
    servers: Servers,
    workspace: t.Callable[[int], Workspace],
    *,
    runs: int = 20,
    rates: t.Sequence[float] = (0.01, 0.05),
    budget_s: float = 110.0,
    candidates: t.Sequence[int] = CANDIDATES,
    calibration: t.Sequence[int] = CALIBRATION,
    clean_runs: int = 3,
    concurrent_from: float = 0.05,
    stagger: float = 0.25,
    timeout: float = 300.0,
    concurrent_timeout: float = 120.0,
    deadline: float | None = None,
) -> dict[str, object]:
    """``workspace(n)`` gives a workspace with an ``n``-migration history (made on demand).

    ``deadline`` (a ``time.perf_counter()`` value): the overlapping phases shorten their
    per-run timeout (to no less than :data:`MIN_CONCURRENT_TIMEOUT_S`) so as to end by then; the timeout used is
    recorded with the row.
    """
    from flask_safe_migrate.executor import RetryPolicy

    policy = RetryPolicy()
    fresh = fresh_connection(servers)
    log(f"faults: a new connection through the proxy: {fresh}")
    choice = choose_history(
        servers,
        workspace,
        runs=runs,
        rate=min(rates),
        budget_s=budget_s,
        candidates=candidates,
        calibration=calibration,
        backoff_base=policy.backoff_base,
        fresh=fresh,
    )
    ws = workspace(int(choice["chosen"]))
    figures: dict[str, object] = {
        "migrations": ws.count,
        "spec_migrations": SPEC_MIGRATIONS,
        "history_choice": choice,
        "fresh_connection": fresh,
        "runs_per_tool": runs,
        "proxy": "FaultProxy(protocol=False) in front of Postgres (TLS end to end); "
        "closes the connection on a random fraction of relayed chunks",
        "retry_defaults": {
            "SAFE_MIGRATE_MAX_ATTEMPTS": policy.max_attempts,
            "SAFE_MIGRATE_BACKOFF_BASE": policy.backoff_base,
            "SAFE_MIGRATE_BACKOFF_CAP": policy.backoff_cap,
            "SAFE_MIGRATE_DEADLINE": policy.deadline,
        },
        "process_timeout_s": timeout,
    }
    clean = [
        one_run(servers, ws, tool, 0.0, 0, timeout)
        for rep in range(clean_runs)
        for tool in (("sm", "fm") if rep % 2 == 0 else ("fm", "sm"))
    ]
    sm_clean = [r for r in clean if r["tool"] == "sm"]
    fm_clean = [r for r in clean if r["tool"] == "fm"]
    if not all(r["ok"] for r in clean):
        raise RuntimeError(f"a fault-free run failed: {[r for r in clean if not r['ok']]}")
    clean_median = median([r["s"] for r in sm_clean])
    ours_chunks = int(median([r["chunks"] or 0 for r in sm_clean]))
    figures["fault_free"] = {
        "runs_each": clean_runs,
        "ours_median_s": round(clean_median, 3),
        "flask_migrate_median_s": round(median([r["s"] for r in fm_clean]), 3),
        "ours_runs_s": [round(r["s"], 3) for r in sm_clean],
        "flask_migrate_runs_s": [round(r["s"], 3) for r in fm_clean],
        "ours_chunks_per_run": ours_chunks,
        "flask_migrate_chunks_per_run": int(median([r["chunks"] or 0 for r in fm_clean])),
    }
    per_migration = choice["calibration"]["sm"]["chunks_at"]
    sizes = sorted(per_migration, key=int)
    chunk_base, chunk_slope = _line([(int(k), float(per_migration[k])) for k in sizes])
    for rate in rates:
        concurrent = rate >= concurrent_from
        run_timeout = timeout
        if concurrent:
            run_timeout = concurrent_timeout
            if deadline is not None:
                left = deadline - time.perf_counter() - 2 * runs * stagger
                run_timeout = max(MIN_CONCURRENT_TIMEOUT_S, min(concurrent_timeout, left))
        results, wall, busy = _phase(
            servers, ws, rate, runs, concurrent=concurrent, stagger=stagger, timeout=run_timeout
        )
        row: dict[str, t.Any] = {
            "rate": rate,
            "runs": runs,
            "concurrent": concurrent,
            "stagger_s": stagger if concurrent else None,
            "timeout_s": round(run_timeout, 1),
            "phase_wall_s": round(wall, 1),
            "cpu_busy_share": busy,
        }
        for tool, label in (("sm", "ours"), ("fm", "flask_migrate")):
            mine = [r for r in results if r["tool"] == tool]
            done = [r["s"] for r in mine if r["ok"]]
            row[f"{label}_completed"] = len(done)
            row[f"{label}_completion"] = round(len(done) / len(mine), 3) if mine else None
            row[f"{label}_median_s"] = round(median(done), 3) if done else None
            row[f"{label}_completed_runs_s"] = [round(x, 3) for x in done]
            row[f"{label}_timed_out"] = sum(1 for r in mine if r["timed_out"])
            row[f"{label}_gave_up"] = sum(1 for r in mine if not r["ok"] and not r["timed_out"])
            row[f"{label}_cuts_median"] = median([r["cuts"] for r in mine]) if mine else None
            errors: dict[str, int] = {}
            for r in mine:
                if not r["ok"]:
                    errors[str(r["error"])] = errors.get(str(r["error"]), 0) + 1
            row[f"{label}_errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:4])
        done = row["ours_completed_runs_s"]
        if done:
            row["ours_vs_fault_free"] = round(float(row["ours_median_s"]) / clean_median, 3)
            row["ours_vs_fault_free_spread"] = spread([x / clean_median for x in done])
        else:
            row["ours_vs_fault_free"] = None
        row["ours_expected_completion"] = round(
            expected_completion(
                chunk_slope,
                rate,
                policy.max_attempts,
                ws.count,
                fresh["chunks"],
                startup_chunks=chunk_base,
            ),
            3,
        )
        row["ours_chunks_per_migration"] = round(chunk_slope, 1)
        row["ours_chunks_per_fresh_connection"] = fresh["chunks"]
        row["met"] = row_met(row)
        figures[f"rate_{rate}"] = row
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per tool and rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument(
        "--budget", type=float, default=220, help="seconds for the lowest rate's runs"
    )
    parser.add_argument("--candidates", type=int, nargs="+", default=list(CANDIDATES))
    parser.add_argument("--clean-runs", type=int, default=3)
    parser.add_argument("--concurrent-from", type=float, default=0.05)
    parser.add_argument("--stagger", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--concurrent-timeout", type=float, default=120)
    args = parser.parse_args()
    servers = Servers(bouncer=False)
    spaces = Workspaces()
    try:
        figures = run(
            servers,
            spaces,
            runs=args.runs,
            rates=args.rates,
            budget_s=args.budget,
            candidates=args.candidates,
            clean_runs=args.clean_runs,
            concurrent_from=args.concurrent_from,
            stagger=args.stagger,
            timeout=args.timeout,
            concurrent_timeout=args.concurrent_timeout,
        )
        write_result("faults", figures, quick=args.runs < 20, servers=servers)
    finally:
        spaces.destroy()
        servers.destroy()


if __name__ == "__main__":
    main()
