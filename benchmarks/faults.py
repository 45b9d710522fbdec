"""Row 3: apply a history through a blind proxy that cuts a fraction of TCP chunks.

``FaultProxy(protocol=False)`` relays bytes between the client and the Postgres
server (TLS end to end, untouched) and, with ``set_random(rate, seed=run)``, closes
the connection on a random ``rate`` of the chunks it relays, either direction.
Both tools see the same seeds. Each run applies the whole history to an empty
database; a run completes when the process exits 0 with every migration applied
exactly once (ledger rows, and the seed INSERTs: exactly 3 rows per table).
Our time is compared with our fault-free time on the same history. The retry
settings are the package defaults (read from ``RetryPolicy()``), not tuned.

Writes benchmarks/results/faults.json.

Usage: python -m benchmarks.faults [--count 100] [--runs 20] [--rates 0.01 0.05]
"""

from __future__ import annotations

import argparse
import subprocess
import time
import typing as t

from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import count_rows
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import write_result


def exactly_once(servers: Servers, name: str, tool: str, count: int) -> bool:
    """Every migration applied once: the bookkeeping and the seed rows agree."""
    url = servers.cluster.server.url_for(name)
    if tool == "sm":
        rows = count_rows(url, "SELECT count(DISTINCT version) FROM safe_migrate_ledger")
        dupes = count_rows(
            url, "SELECT count(*) - count(DISTINCT version) FROM safe_migrate_ledger"
        )
        if rows != count or dupes != 0:
            return False
    else:
        head = count_rows(url, "SELECT version_num FROM alembic_version")
        if head != f"r{count:04d}":
            return False
    seeded = (count - 3) // 10 + 1 if count >= 3 else 0
    wrong = count_rows(
        url,
        "SELECT count(*) FROM (SELECT c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
        "AND c.relname ~ '^t[0-9]+$') s "
        "WHERE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM ' || "
        "quote_ident(s.relname), false, true, '')))[1]::text::int <> 3",
    )
    tables = count_rows(
        url,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname ~ '^t[0-9]+$'",
    )
    return wrong == 0 and tables >= seeded


class CountingProxy:
    """A blind ``FaultProxy`` of its own per run, counting the chunks it relays."""

    def __init__(self, port: int, rate: float, seed: int) -> None:
        from flask_safe_migrate.faults import FaultProxy

        self.proxy = FaultProxy("127.0.0.1", port, protocol=False)
        self.chunks = 0
        decide = self.proxy._random_hit  # benchmark-only instrumentation: one call per chunk

        def counted() -> bool:
            self.chunks += 1
            return decide()

        self.proxy._random_hit = counted  # type: ignore[method-assign]
        if rate:
            self.proxy.set_random(rate, seed=seed)
        self.proxy.start()

    def cuts(self) -> int:
        return sum(1 for e in self.proxy.events if e.kind == "cut")

    def stop(self) -> None:
        self.proxy.stop()


def one_run(
    servers: Servers, ws: Workspace, tool: str, rate: float, seed: int, timeout: float
) -> dict[str, t.Any]:
    name = servers.new_database()
    proxy = CountingProxy(servers.cluster.port, rate, seed)
    argv, cwd, app_dir = ws.command(tool)
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            argv,
            cwd=cwd,
            env=ws.env(proxy.proxy.url(servers.direct_url(name)), app_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code = completed.returncode
        lines = completed.stderr.strip().splitlines() if code else []
        errors = [line for line in lines if "Error" in line and "Background" not in line]
        tail = (errors or lines)[-1:]
    except subprocess.TimeoutExpired:
        code, tail = -1, ["timeout"]
    elapsed = time.perf_counter() - started
    proxy.stop()
    try:
        ok = code == 0 and exactly_once(servers, name, tool, ws.count)
    finally:
        servers.drop_database(name)
    result = {
        "tool": tool,
        "ok": ok,
        "exit": code,
        "s": elapsed,
        "cuts": proxy.cuts(),
        "chunks": proxy.chunks,
        "error": tail[0][:200] if tail else None,
    }
    log(
        f"faults {rate:.0%} seed {seed} {tool}: exit {code} {'ok' if ok else 'FAILED'} "
        f"{elapsed:.2f}s, {proxy.chunks} chunks, {result['cuts']} cut"
    )
    return result


def run(
    servers: Servers,
    ws: Workspace,
    runs: dict[float, int],
    timeout: float,
    clean_runs: int = 3,
    parallel_from: float = 0.05,
) -> dict[str, object]:
    """``runs`` maps a cut rate to its number of runs per tool.

    Rates >= ``parallel_from`` run their runs concurrently (each with its own proxy
    and database): there our process spends its time sleeping in backoff, so only
    the completion rate is quoted for them, not a time ratio.
    """
    from concurrent.futures import ThreadPoolExecutor

    from flask_safe_migrate.executor import RetryPolicy

    policy = RetryPolicy()
    figures: dict[str, object] = {
        "migrations": ws.count,
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
        for _ in range(clean_runs)
        for tool in ("sm", "fm")
    ]
    sm_clean = [r for r in clean if r["tool"] == "sm"]
    fm_clean = [r for r in clean if r["tool"] == "fm"]
    clean_median = median([r["s"] for r in sm_clean])
    figures["fault_free"] = {
        "ours_median_s": round(clean_median, 3),
        "flask_migrate_median_s": round(median([r["s"] for r in fm_clean]), 3),
        "ours_chunks_per_run": int(median([r["chunks"] for r in sm_clean])),
        "flask_migrate_chunks_per_run": int(median([r["chunks"] for r in fm_clean])),
    }
    for rate, count in runs.items():
        jobs = [
            (tool, 1000 * rep + 7)
            for rep in range(count)
            for tool in (("sm", "fm") if rep % 2 == 0 else ("fm", "sm"))
        ]
        parallel = rate >= parallel_from
        if parallel:
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                results = list(
                    pool.map(
                        lambda job, r=rate: one_run(servers, ws, job[0], r, job[1], timeout), jobs
                    )
                )
        else:
            results = [one_run(servers, ws, tool, rate, seed, timeout) for tool, seed in jobs]
        row: dict[str, object] = {"rate": rate, "runs": count, "concurrent": parallel}
        for tool, label in (("sm", "ours"), ("fm", "flask_migrate")):
            mine = [r for r in results if r["tool"] == tool]
            done = [r["s"] for r in mine if r["ok"]]
            row[f"{label}_completed"] = len(done)
            row[f"{label}_completion"] = round(len(done) / count, 3)
            row[f"{label}_median_s"] = round(median(done), 3) if done else None
            row[f"{label}_cuts_median"] = median([r["cuts"] for r in mine])
            errors = sorted({str(r["error"]) for r in mine if not r["ok"]})
            row[f"{label}_errors"] = errors[:3]
        if row["ours_median_s"] and not parallel:
            row["ours_vs_fault_free"] = round(float(row["ours_median_s"]) / clean_median, 3)  # type: ignore[arg-type]
        figures[f"rate_{rate}"] = row
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument(
        "--runs",
        type=int,
        nargs="+",
        default=[20, 20],
        help="runs per tool for each rate, in the order of --rates",
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    servers = Servers(bouncer=False)
    ws = Workspace(args.count)
    try:
        write_result(
            "faults", run(servers, ws, dict(zip(args.rates, args.runs, strict=False)), args.timeout)
        )
    finally:
        ws.destroy()
        servers.destroy()


if __name__ == "__main__":
    main()
