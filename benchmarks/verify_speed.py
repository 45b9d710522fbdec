"""Time `python -m flask_safe_migrate verify` on a generated 1000-migration history.

The whole process is timed (interpreter start, imports, parsing, rules,
rendering), median of N runs, because that is what CI pays. Figures are
printed and written to benchmarks/results/verify_speed.json. The issue's
budget is < 2 s for 1000 files.

Usage: python benchmarks/verify_speed.py [--count 1000] [--runs 5] [--format json]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.history import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--format", default="json", choices=("text", "json", "sarif"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = generate(os.path.join(tmp, "migrations"), args.count)
        command = [sys.executable, "-m", "flask_safe_migrate", "verify", directory]
        command += ["--format", args.format]
        timings = []
        exit_code = None
        findings = dml = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            timings.append(time.perf_counter() - started)
            exit_code = completed.returncode
            if exit_code not in (0, 1):
                raise SystemExit(f"verify failed with exit {exit_code}:\n{completed.stderr}")
            if args.format == "json":
                document = json.loads(completed.stdout)
                findings, dml = len(document["findings"]), len(document["dml"])

    result = {
        "files": args.count,
        "runs": args.runs,
        "format": args.format,
        "median_s": round(statistics.median(timings), 3),
        "min_s": round(min(timings), 3),
        "max_s": round(max(timings), 3),
        "budget_s": 2.0,
        "within_budget": statistics.median(timings) < 2.0,
        "exit_code": exit_code,
        "findings": findings,
        "dml": dml,
        "python": sys.version.split()[0],
    }
    print(
        f"verify {args.count} files: median {result['median_s']} s "
        f"(min {result['min_s']}, max {result['max_s']}, {args.runs} runs; budget 2 s) "
        f"-> exit {exit_code}, {findings} findings, {dml} DML"
    )
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "verify_speed.json"), "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
