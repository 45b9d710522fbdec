"""Row 5: ``python -m flask_safe_migrate verify`` vs squawk on the same 1000 SQL files.

Whole processes are timed (interpreter start, imports, parsing, rules,
rendering), alternated run by run, because that is what CI pays. squawk is
``squawk-cli`` from PyPI (a native binary), run on the same files with its
default rules. The findings of each are counted by rule, side by side.

Writes benchmarks/results/verify_speed.json.

Usage: python -m benchmarks.verify_speed [--count 1000] [--runs 5]
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


def squawk_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "squawk")
    found = here if os.path.exists(here) else shutil.which("squawk")
    if not found:
        raise SystemExit("squawk not found: pip install -e '.[bench]' (squawk-cli)")
    return found


def run(count: int, runs: int) -> dict[str, object]:
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
        squawk_cmd = [squawk_binary(), "--reporter", "json", *files]
        timings: dict[str, list[float]] = {"ours": [], "squawk": []}
        outputs: dict[str, str] = {}
        codes: dict[str, int] = {}
        for rep in range(runs):
            order = ("ours", "squawk") if rep % 2 == 0 else ("squawk", "ours")
            for tool in order:
                command = ours_cmd if tool == "ours" else squawk_cmd
                started = time.perf_counter()
                completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                timings[tool].append(time.perf_counter() - started)
                if tool == "ours" and completed.returncode not in (0, 1):
                    raise SystemExit(f"verify failed ({completed.returncode}):\n{completed.stderr}")
                outputs[tool], codes[tool] = completed.stdout, completed.returncode
        ours_doc = json.loads(outputs["ours"])
        squawk_doc = json.loads(outputs["squawk"] or "[]")
    ours_rules = collections.Counter(f["rule"] for f in ours_doc["findings"])
    squawk_rules = collections.Counter(f["rule_name"] for f in squawk_doc)
    ours_files = len({f["path"] for f in ours_doc["findings"]})
    squawk_files = len({f["file"] for f in squawk_doc})
    ours_s, squawk_s = median(timings["ours"]), median(timings["squawk"])
    version = subprocess.run([squawk_binary(), "--version"], capture_output=True, text=True)
    log(f"verify {count} files: ours {ours_s:.3f}s, squawk {squawk_s:.3f}s")
    return {
        "files": count,
        "runs": runs,
        "ours_median_s": round(ours_s, 3),
        "squawk_median_s": round(squawk_s, 3),
        "ratio": ratio(ours_s, squawk_s),
        "budget_s": 2.0,
        "met": ours_s < 2.0,
        "squawk_version": version.stdout.strip(),
        "ours_exit": codes["ours"],
        "squawk_exit": codes["squawk"],
        "ours_findings": sum(ours_rules.values()),
        "ours_files_flagged": ours_files,
        "ours_dml_classified": len(ours_doc.get("dml", [])),
        "ours_by_rule": dict(ours_rules.most_common()),
        "squawk_findings": sum(squawk_rules.values()),
        "squawk_files_flagged": squawk_files,
        "squawk_by_rule": dict(squawk_rules.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    write_result("verify_speed", run(args.count, args.runs))


if __name__ == "__main__":
    main()
