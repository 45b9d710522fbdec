"""Row 5: ``python -m flask_safe_migrate verify`` vs squawk on the same 1000 SQL files.

Whole processes are timed (interpreter start, imports, parsing, rules,
rendering), alternated run by run, because that is what CI pays. squawk is
``squawk-cli`` from PyPI (a native binary), run on the same files with its
default rules. The findings of each are counted by rule, side by side. Without
squawk installed, its column is left empty (``null``) with a note, and verify
is still timed.

A second figure times one large hand-written ``db_migrate.py`` (``--calls``
calls to ``execute_with_retry``, half through local variables, in one
function): verify indexes each scope once, so its time must grow linearly with
the calls of a file, not quadratically. squawk does not read Python.

Writes benchmarks/results/verify_speed.json.

Usage: python -m benchmarks.verify_speed [--count 1000] [--runs 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT
from benchmarks.common import log
from benchmarks.common import median
from benchmarks.common import ratio
from benchmarks.common import write_result
from benchmarks.history import generate
from benchmarks.history import steps

SQUAWK_MISSING = "squawk not installed (pip install -e '.[bench]' for squawk-cli): not compared"


def squawk_binary() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "squawk")
    return here if os.path.exists(here) else shutil.which("squawk")


def large_python_file(path: str, calls: int) -> str:
    """A seed-style ``db_migrate.py``: one function making ``calls`` executor calls.

    Every other call passes its SQL through a local variable bound just
    above it (what made verify quadratic before scopes were indexed).
    """
    lines = [
        "from flask_safe_migrate import execute_with_retry",
        "",
        "",
        "def migrate(engine):",
    ]
    for number, sql in steps(calls):
        statement = sql.strip()
        if number % 2 == 0:
            lines.append(f"    sql_{number} = {statement!r}")
            lines.append(f"    execute_with_retry(engine, sql_{number})")
        else:
            lines.append(f"    execute_with_retry(engine, {statement!r})")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def time_python_file(calls: int, runs: int) -> dict[str, object]:
    """Whole-process time of verify on one ``calls``-call Python file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = large_python_file(os.path.join(tmp, "db_migrate.py"), calls)
        command = [sys.executable, "-m", "flask_safe_migrate", "verify", path, "--format", "json"]
        timings: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            timings.append(time.perf_counter() - started)
            if completed.returncode not in (0, 1):
                raise SystemExit(f"verify failed ({completed.returncode}):\n{completed.stderr}")
    seconds = median(timings)
    log(f"verify one .py file with {calls} calls: {seconds:.3f}s")
    return {
        "python_file_calls": calls,
        "python_file_median_s": round(seconds, 3),
        "python_file_budget_s": 2.0,
        "python_file_met": seconds < 2.0,
    }


def run(count: int, runs: int, calls: int = 2000) -> dict[str, object]:
    squawk = squawk_binary()
    if squawk is None:
        log(SQUAWK_MISSING)
    with tempfile.TemporaryDirectory() as tmp:
        directory = generate(os.path.join(tmp, "migrations"), count)
        files = sorted(glob.glob(os.path.join(directory, "*.sql")))
        ours_cmd = [
            sys.executable,
            "-m",
            "flask_safe_migrate",
            "verify",
            directory,
            "--format",
            "json",
        ]
        commands = {"ours": ours_cmd}
        if squawk is not None:
            commands["squawk"] = [squawk, "--reporter", "json", *files]
        timings: dict[str, list[float]] = {tool: [] for tool in commands}
        outputs: dict[str, str] = {}
        codes: dict[str, int] = {}
        for rep in range(runs):
            order = list(commands) if rep % 2 == 0 else list(reversed(commands))
            for tool in order:
                started = time.perf_counter()
                completed = subprocess.run(commands[tool], cwd=ROOT, capture_output=True, text=True)
                timings[tool].append(time.perf_counter() - started)
                if tool == "ours" and completed.returncode not in (0, 1):
                    raise SystemExit(f"verify failed ({completed.returncode}):\n{completed.stderr}")
                outputs[tool], codes[tool] = completed.stdout, completed.returncode
        ours_doc = json.loads(outputs["ours"])
    ours_rules = collections.Counter(f["rule"] for f in ours_doc["findings"])
    ours_s = median(timings["ours"])
    figures: dict[str, object] = {
        "files": count,
        "runs": runs,
        "ours_median_s": round(ours_s, 3),
        "budget_s": 2.0,
        "met": ours_s < 2.0,
        "ours_exit": codes["ours"],
        "ours_findings": sum(ours_rules.values()),
        "ours_files_flagged": len({f["path"] for f in ours_doc["findings"]}),
        "ours_dml_classified": len(ours_doc.get("dml", [])),
        "ours_by_rule": dict(ours_rules.most_common()),
    }
    if squawk is None:
        log(f"verify {count} files: ours {ours_s:.3f}s; {SQUAWK_MISSING}")
        figures.update(
            squawk_median_s=None,
            ratio=None,
            squawk_version=None,
            squawk_exit=None,
            squawk_findings=None,
            squawk_files_flagged=None,
            squawk_by_rule={},
            squawk_note=SQUAWK_MISSING,
        )
    else:
        squawk_doc = json.loads(outputs["squawk"] or "[]")
        squawk_rules = collections.Counter(f["rule_name"] for f in squawk_doc)
        squawk_s = median(timings["squawk"])
        version = subprocess.run([squawk, "--version"], capture_output=True, text=True)
        log(f"verify {count} files: ours {ours_s:.3f}s, squawk {squawk_s:.3f}s")
        figures.update(
            squawk_median_s=round(squawk_s, 3),
            ratio=ratio(ours_s, squawk_s),
            squawk_version=version.stdout.strip(),
            squawk_exit=codes["squawk"],
            squawk_findings=sum(squawk_rules.values()),
            squawk_files_flagged=len({f["file"] for f in squawk_doc}),
            squawk_by_rule=dict(squawk_rules.most_common()),
        )
    figures.update(time_python_file(calls, runs))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    write_result("verify_speed", run(args.count, args.runs, args.calls), quick=args.count < 1000)


if __name__ == "__main__":
    main()
