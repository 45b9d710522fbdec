"""Row 6: ``execute_with_retry`` vs a bare ``engine.begin()``, healthy connection.

Both run the same small statement (``SELECT :n``, rows fetched) in its own
transaction, on the same engine, in alternating rounds (order flipped every
round); the figure is the ratio of the median round times. Each round pair also
gives a per-round ratio: their spread (quartiles, min/max, 95% interval of the
median) says whether the verdict is outside the noise. ``execute_with_retry`` uses the engine it is given, so
the fair comparison passes it the same pooled engine as the bare loop (a default
``QueuePool`` engine, TLS to Postgres). Separately, the same comparison on the
package's NullPool migration engine (``create_migration_engine``: a new TLS
connection per call for both sides), with fewer statements since each one pays
a connection.

Writes benchmarks/results/executor_overhead.json.

Usage: python -m benchmarks.executor_overhead [--statements 10000] [--rounds 50]
       [--nullpool-statements 500] [--nullpool-rounds 10]
"""

from __future__ import annotations

import argparse
import time
import typing as t

from benchmarks.common import Servers
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import ratio
from benchmarks.common import spread
from benchmarks.common import write_result

SQL = "SELECT :n"


def bare(engine: t.Any, count: int) -> None:
    from sqlalchemy import text

    for n in range(count):
        with engine.begin() as conn:
            conn.execute(text(SQL), {"n": n}).all()


def retried(engine: t.Any, count: int) -> None:
    from flask_safe_migrate.executor import execute_with_retry

    for n in range(count):
        execute_with_retry(engine, SQL, {"n": n})


def compare(engine: t.Any, statements: int, rounds: int) -> dict[str, object]:
    per_round = max(1, statements // rounds)
    bare(engine, 20)  # warm the pool and the statement caches
    retried(engine, 20)
    times: dict[str, list[float]] = {"bare": [], "retry": []}
    for rep in range(rounds):
        for kind in ("bare", "retry") if rep % 2 == 0 else ("retry", "bare"):
            started = time.perf_counter()
            (bare if kind == "bare" else retried)(engine, per_round)
            times[kind].append(time.perf_counter() - started)
    b, r = median(times["bare"]), median(times["retry"])
    per_round_ratios = [x / y for x, y in zip(times["retry"], times["bare"], strict=True)]
    ratios = spread(per_round_ratios)
    low, high = ratios["median_ci95"]
    return {
        "statements_each": per_round * rounds,
        "rounds": rounds,
        "statements_per_round": per_round,
        "bare_median_round_s": round(b, 4),
        "retry_median_round_s": round(r, 4),
        "bare_us_per_statement": round(b / per_round * 1e6, 1),
        "retry_us_per_statement": round(r / per_round * 1e6, 1),
        "ratio": ratio(r, b),
        "target_ratio": 1.1,
        "met": r / b <= 1.1,
        "round_ratio_spread": ratios,
        # the target lies inside the 95% interval of the median per-round ratio
        "within_noise": low <= 1.1 <= high,
    }


def retry_call_noop(calls: int = 20000) -> float:
    """Microseconds per ``retry_call`` whose attempt does nothing: the retry machinery alone."""
    from flask_safe_migrate.executor import retry_call

    for _ in range(1000):
        retry_call(lambda n: None)
    started = time.perf_counter()
    for _ in range(calls):
        retry_call(lambda n: None)
    return round((time.perf_counter() - started) / calls * 1e6, 1)


def run(
    servers: Servers,
    statements: int,
    nullpool_statements: int,
    rounds: int = 50,
    nullpool_rounds: int = 10,
) -> dict[str, object]:
    import sqlalchemy as sa

    from flask_safe_migrate.engines import create_migration_engine

    name = servers.new_database()
    url = servers.direct_url(name)
    try:
        pooled = sa.create_engine(url)
        figures: dict[str, object] = {"pooled": compare(pooled, statements, rounds)}
        pooled.dispose()
        log(f"executor overhead, pooled engine: {figures['pooled']}")
        migration_engine = create_migration_engine(url)
        figures["nullpool"] = compare(migration_engine, nullpool_statements, nullpool_rounds)
        migration_engine.dispose()
        log(f"executor overhead, NullPool migration engine: {figures['nullpool']}")
        try:  # a helper of the package's API, not the figure itself: never fatal
            figures["retry_call_noop_us"] = retry_call_noop()
        except Exception as exc:
            log(f"retry_call no-op timing skipped: {exc!r}")
        return figures
    finally:
        servers.drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--nullpool-statements", type=int, default=500)
    parser.add_argument("--nullpool-rounds", type=int, default=10)
    args = parser.parse_args()
    servers = Servers(bouncer=False)
    try:
        figures = run(
            servers, args.statements, args.nullpool_statements, args.rounds, args.nullpool_rounds
        )
        write_result("executor_overhead", figures, quick=args.statements < 10000, servers=servers)
    finally:
        servers.destroy()


if __name__ == "__main__":
    main()
