"""Turn benchmarks/results/*.json into docs/benchmarks.md and docs/benchmarks.png.

Every number and count on the page comes from the results files; a missing file
or key leaves its row out (or shows "—") instead of failing. The provenance of
each file (commit, uncommitted code changes, date, quick flag, run id) is printed
and shown on the page; a loud banner goes on top when any input came from a
``--quick`` run, from another commit or run, from uncommitted code, or has no
provenance. Writing the official docs/benchmarks.md from quick results is refused
unless ``--allow-quick`` is given.

Usage: python -m benchmarks.report [--results DIR] [--doc PATH] [--chart PATH]
       [--allow-quick] [--no-chart]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import typing as t

from benchmarks.common import RESULTS
from benchmarks.common import ROOT
from benchmarks.common import results_dir
from benchmarks.common import set_results_dir
from benchmarks.faults import MIN_CONCURRENT_TIMEOUT_S
from benchmarks.faults import time_target
from benchmarks.history import STEP_KINDS
from benchmarks.history import census
from benchmarks.profiles import WAITERS_DELAY_S

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
CHART = os.path.join(ROOT, "docs", "benchmarks.png")
NAMES = (
    "apply_history",
    "faults",
    "concurrent_boot",
    "verify_speed",
    "executor_overhead",
    "profiles",
    "suite",
)
OURS_C, THEIRS_C = "#2b6cb0", "#c05621"
MET_C, MISSED_C = "#2f855a", "#c53030"

D = dict[str, t.Any]


# ----------------------------------------------------------------------------- inputs


def _load(name: str) -> D | None:
    path = os.path.join(results_dir(), f"{name}.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"warning: {path} unreadable ({exc}); left out", file=sys.stderr)
        return None
    return data if isinstance(data, dict) else None


def load_all() -> dict[str, D | None]:
    return {name: _load(name) for name in NAMES}


def g(data: t.Any, *keys: t.Any, default: t.Any = None) -> t.Any:
    """``data[k1][k2]...``, or ``default`` when any step is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, dict) or key not in data or data[key] is None:
            return default
        data = data[key]
    return data


def _official() -> bool:
    return os.path.realpath(results_dir()) == os.path.realpath(RESULTS)


def chart_path() -> str:
    return CHART if _official() else os.path.join(results_dir(), "benchmarks.png")


def doc_path() -> str:
    return DOC if _official() else os.path.join(results_dir(), "benchmarks.md")


# ----------------------------------------------------------------------------- formatting


def _num(x: t.Any, fmt: str = ".2f", unit: str = "") -> str:
    if not isinstance(x, int | float) or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:{fmt}}{unit}"


def _x(x: t.Any) -> str:
    return _num(x, ".2f", "x")


def _verdict(met: t.Any, within_noise: bool = False) -> str:
    if met is None:
        return "—"
    word = "**met**" if met else "**missed**"
    return f"{word} (within noise)" if within_noise else word


def _pct(x: t.Any) -> str:
    return _num(x * 100 if isinstance(x, int | float) else None, ".0f", "%")


def _plural(n: t.Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rel_link(path: str, doc: str) -> str:
    """A link from the page to a file given relative to the repository root."""
    target = os.path.join(ROOT, path)
    return f"[`{path}`]({os.path.relpath(target, os.path.dirname(doc))})"


# ----------------------------------------------------------------------------- provenance


def provenance_problems(data: dict[str, D | None]) -> tuple[list[str], bool]:
    """Banner lines about where the figures came from, and whether any input was quick."""
    present = {name: d for name, d in data.items() if d is not None}
    problems: list[str] = []
    missing = [name for name in NAMES if name not in present]
    if missing:
        problems.append("Not measured (no results file): " + ", ".join(missing) + ".")
    no_prov = [name for name, d in present.items() if not isinstance(d.get("provenance"), dict)]
    if no_prov:
        problems.append(
            "No provenance recorded (not written by a benchmark script; commit and size "
            "unknown): " + ", ".join(no_prov) + "."
        )
    prov = {name: d["provenance"] for name, d in present.items() if name not in no_prov}
    quick = [name for name, p in prov.items() if p.get("quick")]
    if quick:
        problems.append(
            "**QUICK (smoke-test) FIGURES** — not the spec's sizes, not for quoting: "
            + ", ".join(quick)
            + "."
        )
    commits = {p.get("commit") for p in prov.values()}
    if len(commits) > 1 or None in commits:
        problems.append(
            "**MIXED COMMITS**: "
            + "; ".join(
                f"{name} @ {str(p.get('commit') or 'unknown')[:10]}" for name, p in prov.items()
            )
            + "."
        )
    runs = {p.get("run_id") for p in prov.values()}
    if len(runs) > 1:
        problems.append(
            f"**MIXED RUNS**: the files come from {len(runs)} different runs "
            "(see Provenance below); figures from different runs are not comparable."
        )
    dirty = sorted({path for p in prov.values() for path in (p.get("dirty_paths") or [])})
    if any(p.get("dirty") for p in prov.values()):
        problems.append(
            "Measured with uncommitted code changes: " + ", ".join(dirty[:8]) + "."
            if dirty
            else "Measured with uncommitted code changes."
        )
    return problems, bool(quick)


def provenance_table(data: dict[str, D | None]) -> list[str]:
    lines = [
        "| Results file | Commit | Uncommitted code | Quick | Date | Run |",
        "|---|---|---|---|---|---|",
    ]
    for name in NAMES:
        d = data.get(name)
        if d is None:
            lines.append(f"| {name}.json | — (missing) | | | | |")
            continue
        p = d.get("provenance")
        if not isinstance(p, dict):
            lines.append(f"| {name}.json | unknown (no provenance) | ? | ? | ? | ? |")
            continue
        dirty = p.get("dirty")
        lines.append(
            f"| {name}.json | `{str(p.get('commit') or 'unknown')[:10]}` | "
            f"{'yes' if dirty else ('no' if dirty is False else '?')} | "
            f"{'**yes**' if p.get('quick') else ('no' if p.get('quick') is False else '?')} | "
            f"{p.get('date', '?')} | {p.get('run_id', '?')} |"
        )
    return lines


# ----------------------------------------------------------------------------- ratio rows


class Row(t.NamedTuple):
    label: str
    value: float | None  # what the bar shows (a ratio)
    target: float | None  # where the target marker goes (same unit), None: no ratio target
    met: bool | None
    text: str  # label beside the bar
    low: float | None = None  # error bar (e.g. 95% interval of the median per-round ratio)
    high: float | None = None


def ratio_rows(data: dict[str, D | None]) -> list[Row]:
    """One bar per target of the spec: ours / theirs (or the row's own reference)."""
    rows: list[Row] = []
    apply = data.get("apply_history") or {}
    for key, where in (("apply_direct", "direct"), ("apply_pgbouncer", "PgBouncer")):
        r = apply.get(key)
        if isinstance(r, dict) and r.get("ratio") is not None:
            rows.append(
                Row(
                    f"1 apply {g(apply, 'migrations', default='?')}, {where}\nvs flask db upgrade",
                    r["ratio"],
                    r.get("target_ratio", 0.6),
                    r.get("met"),
                    f"{r['ratio']:.2f}x (target <= {r.get('target_ratio', 0.6)}x)",
                )
            )
    noop = apply.get("noop_boot_process")
    if isinstance(noop, dict) and noop.get("ratio") is not None:
        rows.append(
            Row(
                "2 no-op boot, whole process\nvs flask db upgrade",
                noop["ratio"],
                noop.get("target_ratio", 0.6),
                noop.get("met"),
                f"{noop['ratio']:.2f}x (target <= {noop.get('target_ratio', 0.6)}x)",
            )
        )
    pend = apply.get("pending_in_process")
    if isinstance(pend, dict) and pend.get("first_call_median_ms") is not None:
        budget = pend.get("target_ms", 30)
        rows.append(
            Row(
                f"2 pending() in-process\nvs its {budget} ms budget",
                pend["first_call_median_ms"] / budget,
                1.0,
                pend.get("met"),
                f"{pend['first_call_median_ms']:.1f} ms = {pend['first_call_median_ms'] / budget:.2f}x "
                f"the budget (target < {budget} ms)",
            )
        )
    faults = data.get("faults") or {}
    for row in _fault_rows(faults):
        vs = row.get("ours_vs_fault_free")
        done = f"{row.get('ours_completed', '?')}/{row.get('runs', '?')} completed"
        most = time_target(row.get("rate", 1))
        target_text = f"target 100%, <= {most:g}x" if most else "target 100%"
        rows.append(
            Row(
                f"3 {row.get('rate', 0):.0%} chunks cut, {faults.get('migrations', '?')} migr.\n"
                "time vs our fault-free",
                vs,
                most,
                row.get("met"),
                (
                    f"{vs:.2f}x, "
                    if vs is not None
                    else ("no time ratio, " if row.get("ours_completed") else "none completed, ")
                )
                + f"{done} ({target_text})",
            )
        )
    conc = data.get("concurrent_boot") or {}
    if conc.get("ratio") is not None:
        rows.append(
            Row(
                f"4 {conc.get('processes', '?')} processes at once\nvs 1 alone (PgBouncer)",
                conc["ratio"],
                conc.get("target_ratio", 1.3),
                conc.get("met"),
                f"{conc['ratio']:.2f}x (target <= {conc.get('target_ratio', 1.3)}x), "
                f"exactly once: {'yes' if conc.get('exactly_once') else 'NO'}",
            )
        )
    verify = data.get("verify_speed") or {}
    if verify.get("ours_median_s") is not None:
        budget = g(verify, "budget_s", default=2.0)
        if verify.get("ratio") is not None:
            rows.append(
                Row(
                    f"5 verify {verify.get('files', '?')} files\nvs squawk (no ratio target)",
                    verify["ratio"],
                    None,
                    verify.get("met"),
                    f"{verify['ratio']:.1f}x; target is < {budget:g} s: "
                    f"{verify['ours_median_s']:.2f} s",
                )
            )
        else:
            rows.append(
                Row(
                    f"5 verify {verify.get('files', '?')} files\nvs its {budget:g} s budget",
                    verify["ours_median_s"] / budget,
                    1.0,
                    verify.get("met"),
                    f"{verify['ours_median_s']:.2f} s (target < {budget:g} s; squawk not run)",
                )
            )
    executor = data.get("executor_overhead") or {}
    for key, label in (("pooled", "pooled engine"), ("nullpool", "NullPool engine")):
        e = executor.get(key)
        if not isinstance(e, dict) or e.get("ratio") is None:
            continue
        ci = g(e, "round_ratio_spread", "median_ci95", default=[None, None])
        rows.append(
            Row(
                f"6 execute_with_retry\nvs bare begin(), {label}",
                e["ratio"],
                e.get("target_ratio", 1.1),
                e.get("met"),
                f"{e['ratio']:.3f}x (target <= {e.get('target_ratio', 1.1)}x)"
                + (", within noise" if e.get("within_noise") else ""),
                ci[0],
                ci[1],
            )
        )
    return rows


def _fault_rows(faults: D) -> list[D]:
    rows = [v for k, v in faults.items() if k.startswith("rate_") and isinstance(v, dict)]
    return sorted(rows, key=lambda r: r.get("rate", 0))


# ----------------------------------------------------------------------------- chart


def chart(data: dict[str, D | None], path: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = path or chart_path()
    problems, quick = provenance_problems(data)
    fig = plt.figure(figsize=(16, 17))
    grid = fig.add_gridspec(
        3, 3, height_ratios=[1.5, 1, 1], hspace=0.62, wspace=0.3, top=0.93, bottom=0.06
    )
    title = "flask-safe-migrate vs the alternatives (medians; ratio = ours / theirs)"
    if quick:
        title = "QUICK SMOKE-TEST FIGURES, NOT FOR QUOTING\n" + title
    fig.suptitle(title, fontsize=14, color=MISSED_C if quick else "black", y=0.995)

    # -- panel 0: every target at a glance
    ax = fig.add_subplot(grid[0, :])
    rows = ratio_rows(data)
    ys = list(range(len(rows)))[::-1]
    values = [r.value for r in rows if r.value]
    lo = min([*values, *[r.target for r in rows if r.target]], default=0.5)
    hi = max([*values, *[r.target for r in rows if r.target]], default=2)
    for y, r in zip(ys, rows, strict=True):
        colour = MET_C if r.met else MISSED_C
        if r.value:
            xerr = None
            if r.low is not None and r.high is not None:
                xerr = [[max(r.value - r.low, 0)], [max(r.high - r.value, 0)]]
            ax.barh(y, r.value, height=0.6, color=colour, alpha=0.85, xerr=xerr, capsize=3)
            ax.text(
                max(r.value, r.target or 0, r.high or 0) * 1.12, y, r.text, va="center", fontsize=9
            )
        else:
            ax.text(lo, y, "  " + r.text, va="center", fontsize=9, color=colour)
        if r.target:
            ax.plot([r.target, r.target], [y - 0.42, y + 0.42], color="black", lw=2.5)
    ax.set_xscale("log")
    ax.set_xlim(min(lo, 1) / 2.5, max(hi, 1) * 16)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_yticks(ys)
    ax.set_yticklabels([r.label for r in rows], fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("ratio, log scale (lower is better; 1 = parity, dotted)", fontsize=9)
    ax.set_title("Every target: ratio per row, target marked |", fontsize=12, pad=28)
    ax.legend(
        handles=[
            Patch(color=MET_C, label="target met"),
            Patch(color=MISSED_C, label="target missed"),
            Line2D([0], [0], color="black", lw=2.5, label="target"),
        ],
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=3,
        frameon=False,
        fontsize=9,
    )

    def bars(
        cell: t.Any,
        title: str,
        labels: list[str],
        ours: list[float | None],
        theirs: list[float | None],
        names: tuple[str, str],
        unit: str,
        note: str = "",
        fmt: str = "{:.3g}",
    ) -> t.Any:
        ax = fig.add_subplot(cell)
        x = range(len(labels))
        w = 0.38
        for offset, series, name, colour in (
            (-w / 2, ours, names[0], OURS_C),
            (w / 2, theirs, names[1], THEIRS_C),
        ):
            heights = [v if v is not None else 0 for v in series]
            drawn = ax.bar([i + offset for i in x], heights, w, label=name, color=colour)
            for bar, v in zip(drawn, series, strict=True):
                ax.annotate(
                    fmt.format(v) if v is not None else "n/a",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8.5,
                )
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=9)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10, pad=24)
        # legend above the axes, under the title: it never covers a bar or its label
        ax.legend(
            loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8.5
        )
        ax.margins(y=0.18)
        if note:
            ax.set_xlabel(note, fontsize=8.5)
        return ax

    apply = data.get("apply_history") or {}
    cells = [grid[1, 0], grid[1, 1], grid[1, 2], grid[2, 0], grid[2, 1], grid[2, 2]]
    targets = [(k, lab) for k, lab in (("apply_direct", "direct (TLS)"), ("apply_pgbouncer", "PgBouncer (TLS)")) if isinstance(apply.get(k), dict)]  # fmt: skip
    if targets:
        bars(
            cells[0],
            f"1. Apply {apply.get('migrations', '?')} migrations, whole process "
            f"(median of {apply.get('runs', '?')})",
            [lab for _, lab in targets],
            [g(apply, k, "ours_median_s") for k, _ in targets],
            [g(apply, k, "flask_migrate_median_s") for k, _ in targets],
            ("flask safe-migrate run", "flask db upgrade"),
            "seconds",
            "\n".join(f"{lab}: {_x(g(apply, k, 'ratio'))}" for k, lab in targets),
        )
    noop = apply.get("noop_boot_process")
    if isinstance(noop, dict):
        pend = apply.get("pending_in_process") or {}
        bars(
            cells[1],
            f"2. Boot with nothing to apply, whole process ({noop.get('samples_each', '?')} each)",
            ["no-op boot"],
            [noop.get("ours_median_s")],
            [noop.get("flask_migrate_median_s")],
            ("flask safe-migrate run", "flask db upgrade"),
            "seconds",
            f"ratio {_x(noop.get('ratio'))}; pending() in-process first call "
            f"{_num(pend.get('first_call_median_ms'), '.1f', ' ms')}",
        )
    faults = data.get("faults") or {}
    frows = _fault_rows(faults)
    if frows:
        ax3 = bars(
            cells[2],
            f"3. Runs completed under cuts ({faults.get('migrations', '?')} migrations, "
            "higher is better)",
            [f"{r.get('rate', 0):.0%} of chunks cut" for r in frows],
            [(r.get("ours_completion") or 0) * 100 for r in frows],
            [(r.get("flask_migrate_completion") or 0) * 100 for r in frows],
            ("flask-safe-migrate", "Flask-Migrate"),
            "% of runs completed",
            "\n".join(
                f"{r.get('rate', 0):.0%}: ours {r.get('ours_completed')}/{r.get('runs')}, "
                f"F-M {r.get('flask_migrate_completed')}/{r.get('runs')}"
                for r in frows
            ),
            "{:.0f}%",
        )
        ax3.set_ylim(0, 118)
    conc = data.get("concurrent_boot") or {}
    if conc.get("concurrent_median_s") is not None:
        bars(
            cells[3],
            f"4. {conc.get('processes', '?')} processes auto-migrating at once, PgBouncer",
            ["wall time"],
            [conc.get("concurrent_median_s")],
            [conc.get("alone_median_s")],
            (f"{conc.get('processes', '?')} at once", "1 alone"),
            "seconds",
            f"ratio {_x(conc.get('ratio'))}; exactly once: "
            f"{'yes' if conc.get('exactly_once') else 'NO'}",
        )
    verify = data.get("verify_speed") or {}
    if verify.get("ours_median_s") is not None:
        bars(
            cells[4],
            f"5. Lint {verify.get('files', '?')} SQL files, whole process",
            ["time"],
            [verify.get("ours_median_s")],
            [verify.get("squawk_median_s")],
            ("verify", str(verify.get("squawk_version") or "squawk")),
            "seconds",
            f"ratio {_x(verify.get('ratio'))}; budget < {g(verify, 'budget_s', default=2.0):g} s",
        )
    pooled = g(data, "executor_overhead", "pooled")
    if isinstance(pooled, dict):
        spread = pooled.get("round_ratio_spread") or {}
        ci = spread.get("median_ci95") or [None, None]
        bars(
            cells[5],
            f"6. Executor overhead, pooled engine ({pooled.get('statements_each', '?')} statements)",
            ["per statement"],
            [pooled.get("retry_us_per_statement")],
            [pooled.get("bare_us_per_statement")],
            ("execute_with_retry", "bare engine.begin()"),
            "microseconds",
            f"ratio {_num(pooled.get('ratio'), '.3f', 'x')}"
            + (
                f"; per-round ratios {_num(spread.get('min'), '.2f')}-"
                f"{_num(spread.get('max'), '.2f')}, 95% CI of median "
                f"{_num(ci[0], '.3f')}-{_num(ci[1], '.3f')}"
                if spread
                else ""
            ),
        )
    if problems:
        fig.text(
            0.5,
            0.005,
            "\n".join(p.replace("**", "") for p in problems)[:600],
            ha="center",
            va="bottom",
            fontsize=8.5,
            color=MISSED_C,
            wrap=True,
        )
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- page


def _defaults_text(faults: D) -> str:
    d = faults.get("retry_defaults") or {}
    if not d:
        return "retry defaults not recorded"
    return (
        f"package defaults: {d.get('SAFE_MIGRATE_MAX_ATTEMPTS')} attempts, backoff base "
        f"{d.get('SAFE_MIGRATE_BACKOFF_BASE')} s, cap {d.get('SAFE_MIGRATE_BACKOFF_CAP')} s, "
        f"deadline {d.get('SAFE_MIGRATE_DEADLINE')} s"
    )


def _history_note(faults: D) -> str:
    """The row-3 history deviation, for the table cell itself."""
    n, spec = faults.get("migrations"), faults.get("spec_migrations", 1000)
    if n is None or n == spec:
        return f"the same {spec}-migration history"
    choice = faults.get("history_choice") or {}
    estimates = choice.get("estimated_phase_s") or {}
    bigger = sorted((int(k), v) for k, v in estimates.items() if int(k) > n)
    why = ""
    own = estimates.get(str(n))
    budget = choice.get("budget_s")
    rate = _pct(choice.get("for_rate"))
    if isinstance(own, int | float) and isinstance(budget, int | float) and own > budget:
        why = (
            f": the smallest candidate, and even it was estimated at ~{own:.0f} s for the {rate} "
            f"runs, over their {budget:.0f} s budget"
        )
    elif bigger:
        size, est = bigger[0]
        why = (
            f": the largest that fits the 10-minute budget ({size} would need ~{est:.0f} s "
            f"for the {rate} runs, budget {_num(budget, '.0f')} s)"
        )
    return f"**{n}-migration history, NOT the spec's {spec}**{why}"


def document(data: dict[str, D | None], doc: str, chart_file: str | None = None) -> str:
    lines: list[str] = []
    add = lines.append
    apply = data.get("apply_history") or {}
    faults = data.get("faults") or {}
    conc = data.get("concurrent_boot") or {}
    verify = data.get("verify_speed") or {}
    executor = data.get("executor_overhead") or {}
    profiles = data.get("profiles") or {}
    suite = data.get("suite") or {}
    problems, quick = provenance_problems(data)

    add("# Benchmarks")
    add("")
    if problems:
        add("> [!WARNING]")
        add("> **These figures are not a clean full run:**")
        for p in problems:
            add(f"> * {p}")
        add("")
    n = apply.get("migrations") or conc.get("migrations") or verify.get("files")
    history = ""
    if isinstance(n, int):
        history = (
            f" (`benchmarks/history.py`: {n} migrations, {math.ceil(n / len(STEP_KINDS))} tables × "
            f"{len(STEP_KINDS)} steps: {', '.join(STEP_KINDS)}; Flask-Migrate gets the same SQL "
            "as chained Alembic revisions, each `op.execute(<same SQL>)`)"
        )
    add("flask-safe-migrate against what users would pick instead: Flask-Migrate (Alembic) for")
    add("applying migrations, squawk for linting them. Every figure below comes from")
    add("`benchmarks/run_all`, which writes `benchmarks/results/*.json`, this page and the chart.")
    add("Both tools run from one venv (`pip install -e '.[bench]'`) against the same private")
    add(f"Postgres cluster, with the same generated history{history}.")
    add("The two systems alternate run by run; figures are medians and ratios of medians.")
    cpus = _recorded(data, "machine").get("cpus")
    machine = f"{cpus}-core machine" if cpus else "machine"
    add(f"Absolute times on a shared {machine} are noise: read the ratios.")
    add("")
    chart_link = os.path.relpath(chart_file or chart_path(), os.path.dirname(doc))
    add(f"![benchmarks chart]({chart_link})")
    add("")
    add("## Summary")
    add("")
    add("| # | What | flask-safe-migrate | Alternative | Ratio (ours / theirs) | Target | |")
    add("|---|---|---|---|---|---|---|")
    _summary_rows(add, apply, faults, conc, verify, executor)
    add("")
    runtime = suite.get("runtime_s")
    if runtime is not None:
        phases = suite.get("phases_s") or {}
        budget = g(suite, "budget_s", default=600)
        add(
            f"`benchmarks/run_all{' --quick' if suite.get('quick') else ''}` took "
            f"**{runtime:.0f} s** for all of this (budget: {budget:.0f} s = {budget / 60:g} minutes; "
            f"{'within' if runtime < budget else '**OVER**'} budget)"
            + (
                ": " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + "."
                if phases
                else "."
            )
        )
        add("")
    _where_time_goes(add, doc, apply, faults, conc, verify, executor, profiles)
    _findings(add, verify)
    _machine(add, data)
    add("## Provenance")
    add("")
    add("Each results file records the commit and the uncommitted code changes it was measured")
    add("with, when, whether it was a `--quick` smoke run, and the run it belongs to.")
    add("")
    lines.extend(provenance_table(data))
    add("")
    _method(add, faults)
    return "\n".join(lines)


def _summary_rows(add: t.Callable[[str], None], apply: D, faults: D, conc: D, verify: D, executor: D) -> None:  # fmt: skip
    n = apply.get("migrations", "?")
    for key, where in (
        ("apply_direct", "direct, TLS"),
        ("apply_pgbouncer", "through PgBouncer (transaction mode, TLS)"),
    ):
        r = apply.get(key)
        if not isinstance(r, dict):
            continue
        add(
            f"| 1 | Apply {n} migrations to an empty database, {where} (whole process, median of "
            f"{apply.get('runs', '?')}) | {_num(r.get('ours_median_s'), '.2f', ' s')} | Flask-Migrate "
            f"`flask db upgrade` {_num(r.get('flask_migrate_median_s'), '.2f', ' s')} | "
            f"{_x(r.get('ratio'))} | <= {r.get('target_ratio', 0.6)}x | {_verdict(r.get('met'))} |"
        )
    noop = apply.get("noop_boot_process")
    if isinstance(noop, dict):
        add(
            f"| 2 | Boot with nothing to apply, {n} on disk and applied (whole process, median of "
            f"{noop.get('samples_each', '?')} each) | {_num(noop.get('ours_median_s'), '.2f', ' s')} | "
            f"`flask db upgrade` {_num(noop.get('flask_migrate_median_s'), '.2f', ' s')} | "
            f"{_x(noop.get('ratio'))} | <= {noop.get('target_ratio', 0.6)}x | {_verdict(noop.get('met'))} |"
        )
    pend = apply.get("pending_in_process")
    if isinstance(pend, dict):
        s = pend.get("first_call_spread_ms") or {}
        rng = (
            f", range {_num(s.get('min'), '.1f')}-{_num(s.get('max'), '.1f')} ms"
            if s.get("n", 0) > 1
            else ""
        )
        add(
            f"| 2 | `pending()` in-process after import, {n} migrations (first call in a fresh "
            f"process, median of {pend.get('first_calls', '?')}{rng}; warm calls "
            f"{_num(pend.get('warm_median_ms'), '.1f', ' ms')}) | "
            f"{_num(pend.get('first_call_median_ms'), '.1f', ' ms')} | — | — | "
            f"< {pend.get('target_ms', 30)} ms | {_verdict(pend.get('met'))} |"
        )
    ff = faults.get("fault_free") or {}
    for row in _fault_rows(faults):
        rate = row.get("rate", 0)
        runs = row.get("runs", "?")
        if row.get("concurrent"):
            how = f"started {_num(row.get('stagger_s'), 'g')} s apart and overlapping"
            if row.get("cpu_busy_share") is not None:  # None: /proc/stat unreadable
                how += f" (CPU busy {_pct(row['cpu_busy_share'])} during the phase)"
            how += (
                ", so times are upper bounds; a run still going after "
                f"{_num(row.get('timeout_s'), '.0f')} s is stopped and counts as not completed"
            )
        else:
            how = "one at a time, tools alternating"
        ours = f"{row.get('ours_completed', '?')}/{runs} completed ({_pct(row.get('ours_completion'))})"
        gave, stopped = row.get("ours_gave_up"), row.get("ours_timed_out")
        if gave or stopped:
            ours += f": {gave or 0} gave up, {stopped or 0} stopped"
        vs = row.get("ours_vs_fault_free")
        if vs is not None:
            sp = row.get("ours_vs_fault_free_spread") or {}
            ours += (
                f"; median time {_num(row.get('ours_median_s'), '.2f', ' s')} = **{vs:.2f}x** our "
                f"fault-free {_num(ff.get('ours_median_s'), '.2f', ' s')}"
                + (
                    f" (runs {_num(sp.get('min'), '.1f')}-{_num(sp.get('max'), '.1f')}x)"
                    if sp.get("n", 0) > 1
                    else ""
                )
            )
        most = time_target(rate)
        target = f"100%, <= {most:g}x time" if most else "100%"
        add(
            f"| 3 | {_history_note(faults)}, through a blind proxy cutting {rate:.0%} of chunks, "
            f"{runs} runs per tool, {how} ({_defaults_text(faults)}) | {ours} | Flask-Migrate "
            f"{row.get('flask_migrate_completed', '?')}/{runs} completed "
            f"({_pct(row.get('flask_migrate_completion'))}) | "
            f"{_x(vs) + ' of fault-free' if vs is not None else '—'} | {target} | "
            f"{_verdict(row.get('met'))} |"
        )
    if conc:
        appliers = conc.get("distinct_appliers") or []
        add(
            f"| 4 | {conc.get('processes', '?')} processes booting at once with auto-migrate through "
            f"PgBouncer, {conc.get('migrations', '?')} migrations (median of {conc.get('runs', '?')}) | "
            f"{_num(conc.get('concurrent_median_s'), '.2f', ' s')}, exactly once: "
            f"{'yes' if conc.get('exactly_once') else 'NO'}"
            + (f" (appliers per run: {', '.join(map(str, appliers))})" if appliers else "")
            + f" | one process alone {_num(conc.get('alone_median_s'), '.2f', ' s')} | "
            f"{_x(conc.get('ratio'))} | <= {conc.get('target_ratio', 1.3)}x | {_verdict(conc.get('met'))} |"
        )
    if verify:
        squawk = (
            f"{verify.get('squawk_version')} {_num(verify.get('squawk_median_s'), '.3f', ' s')}"
            if verify.get("squawk_median_s") is not None
            else str(verify.get("squawk_note") or "squawk not run")
        )
        add(
            f"| 5 | Lint {verify.get('files', '?')} migration files (whole process, median of "
            f"{verify.get('runs', '?')}) | `verify` {_num(verify.get('ours_median_s'), '.2f', ' s')} | "
            f"{squawk} | {_num(verify.get('ratio'), '.1f', 'x')} | < {g(verify, 'budget_s', default=2.0):g} s | "
            f"{_verdict(verify.get('met'))} |"
        )
    for key, what in (
        ("pooled", "same pooled engine"),
        ("nullpool", "our NullPool migration engine (new TLS connection per statement)"),
    ):
        e = executor.get(key)
        if not isinstance(e, dict):
            continue
        sp = e.get("round_ratio_spread") or {}
        ci = sp.get("median_ci95") or [None, None]
        spread_text = (
            f"; per-round ratios: median {_num(sp.get('median'), '.3f')}, IQR "
            f"{_num(sp.get('q1'), '.3f')}-{_num(sp.get('q3'), '.3f')}, range "
            f"{_num(sp.get('min'), '.3f')}-{_num(sp.get('max'), '.3f')}, 95% CI of the median "
            f"{_num(ci[0], '.3f')}-{_num(ci[1], '.3f')}"
            if sp
            else ""
        )
        unit, scale = ("µs", 1.0) if key == "pooled" else ("ms", 1000.0)
        fmt = ".0f" if key == "pooled" else ".2f"
        retry = e.get("retry_us_per_statement")
        bare = e.get("bare_us_per_statement")
        add(
            f"| 6 | `execute_with_retry` vs bare `engine.begin()`, {what}, "
            f"{e.get('statements_each', '?')} small statements each in {e.get('rounds', '?')} "
            f"alternating rounds | {_num(retry / scale if retry else None, fmt, f' {unit}/statement')} | "
            f"{_num(bare / scale if bare else None, fmt, f' {unit}/statement')} | "
            f"{_num(e.get('ratio'), '.3f', 'x')}{spread_text} | <= {e.get('target_ratio', 1.1)}x | "
            f"{_verdict(e.get('met'), bool(e.get('within_noise')))} |"
        )


def _share(part: t.Any, whole: t.Any) -> str:
    if not isinstance(part, int | float) or not whole:
        return "—"
    return f"{part / whole * 100:.0f}%"


def _frames_table(add: t.Callable[[str], None], frames: D, total: float, per: int | None) -> None:
    head = "| Frame (inclusive time, all calls) | Seconds | Share |"
    add(head + (" ms per migration |" if per else ""))
    add("|---|---|---|" + ("---|" if per else ""))
    for label, secs in frames.items():
        if secs is None:
            add(f"| {label} | not in this profile | |" + (" |" if per else ""))
            continue
        row = f"| {label} | {secs:.2f} | {_share(secs, total)} |"
        add(row + (f" {secs / per * 1000:.1f} |" if per else ""))


def _largest(frames: D) -> tuple[str, float] | None:
    found = [(k, v) for k, v in frames.items() if isinstance(v, int | float)]
    return max(found, key=lambda kv: kv[1]) if found else None


def _top_list(top: D, unit: str = "s", n: int = 5) -> str:
    items = list(top.items())[:n]
    return ", ".join(f"`{k}` {v:.3f} {unit}" for k, v in items) if items else "—"


def _where_time_goes(
    add: t.Callable[[str], None],
    doc: str,
    apply: D,
    faults: D,
    conc: D,
    verify: D,
    executor: D,
    profiles: D,
) -> None:
    add("## Where the time goes (targets missed)")
    add("")
    add("Each missed target has a pyinstrument profile; the full trees are linked, and every")
    add(
        "number below is read from "
        f"`{os.path.relpath(os.path.join(results_dir(), 'profiles.json'), ROOT)}`."
    )
    add("")
    missed_rows: list[str] = []
    if not all(g(apply, k, "met", default=True) for k in ("apply_direct", "apply_pgbouncer")):
        missed_rows.append("1")
    ap = profiles.get("apply")
    if "1" in missed_rows:
        add("### Row 1: applying the history")
        add("")
        activity = [
            (label, apply.get(f"{key}_server_activity"))
            for key, label in (("ours", "flask-safe-migrate"), ("flask_migrate", "Flask-Migrate"))
        ]
        n = apply.get("migrations")
        if all(isinstance(a, dict) for _, a in activity) and n:
            add(
                "What the server saw (`pg_stat_database` of the run's database, direct runs): "
                + "; ".join(
                    f"{label} opened {_plural(a['sessions'], 'connection')} and committed "
                    f"{_plural(a['commits'], 'transaction')} ({a['sessions'] / n:.2f} and "
                    f"{a['commits'] / n:.2f} per migration)"
                    for label, a in activity
                )
                + "."
            )
            add("")
        ff = faults.get("fault_free") or {}
        fn = faults.get("migrations")
        if ff.get("ours_chunks_per_run") and fn:
            add(
                f"Traffic, as TCP chunks relayed by row 3's proxy ({fn} migrations, "
                f"fault-free): ours {ff['ours_chunks_per_run']} ({ff['ours_chunks_per_run'] / fn:.0f} "
                f"per migration), Flask-Migrate {ff.get('flask_migrate_chunks_per_run', '?')}."
            )
            add("")
        if isinstance(ap, dict) and isinstance(ap.get("frames_s"), dict):
            total = ap.get("total_s") or 0
            add(
                f"pyinstrument on `{ap.get('what', 'flask safe-migrate run')}` ({_num(total, '.1f', ' s')} "
                f"wall, {_num(ap.get('cpu_s'), '.1f', ' s')} CPU in our process; full tree: "
                f"{_rel_link(str(ap.get('text')), doc) if ap.get('text') else '—'}):"
            )
            add("")
            _frames_table(add, ap["frames_s"], total, ap.get("migrations"))
            if ap.get("startup_and_discovery_s") is not None:
                add(
                    f"| outside `Runner.run` (interpreter start, imports, discovery) | "
                    f"{ap['startup_and_discovery_s']:.2f} | {_share(ap['startup_and_discovery_s'], total)} |"
                    + (" |" if ap.get("migrations") else "")
                )
            add("")
            largest = _largest(ap["frames_s"])
            if largest:
                libraries = ap.get("self_by_library_s") or {}
                add(
                    f"The largest item is **{largest[0]}**: {_share(largest[1], total)} of the run."
                    + (
                        f" Self time by library: {_top_list(libraries, 's', 4)}."
                        if libraries
                        else ""
                    )
                )
                add("")
            own_sql = ap["frames_s"].get("the migration's own SQL")
            outside = ap.get("startup_and_discovery_s")
            direct = apply.get("apply_direct") or {}
            theirs = direct.get("flask_migrate_median_s")
            target = direct.get("target_ratio")
            if all(isinstance(x, int | float) for x in (own_sql, outside, theirs, target)):
                floor = own_sql + outside
                goal = target * theirs
                add(
                    f"The floor under this row: the migrations' own SQL ({own_sql:.2f} s, server"
                    f" work Flask-Migrate pays too) plus the process around the run"
                    f" ({outside:.2f} s) make {floor:.2f} s, "
                    + ("already more than" if floor > goal else "under")
                    + f" the target's {target:g} × {theirs:.2f} s = {goal:.2f} s. What is ours is"
                    " the bookkeeping each migration pays for committing, locking and recording"
                    " on its own (the attempt setup above)."
                )
                add("")
        else:
            add("No profile recorded for this row.")
            add("")
    noop = apply.get("noop_boot_process") or {}
    pend = apply.get("pending_in_process") or {}
    if noop.get("met") is False or pend.get("met") is False:
        add("### Row 2: booting with nothing to apply")
        add("")
        np_ = profiles.get("noop")
        if noop.get("met") is False and isinstance(np_, dict):
            add(
                "pyinstrument on both whole processes, history already applied (full trees: "
                + ", ".join(
                    _rel_link(str(g(np_, k, "text")), doc)
                    for k in ("ours", "flask_migrate")
                    if g(np_, k, "text")
                )
                + "):"
            )
            add("")
            ours, theirs = np_.get("ours") or {}, np_.get("flask_migrate") or {}
            add("| | flask-safe-migrate | Flask-Migrate |")
            add("|---|---|---|")
            add(
                f"| whole process (under the profiler) | {_num(ours.get('total_s'), '.3f', ' s')} | "
                f"{_num(theirs.get('total_s'), '.3f', ' s')} |"
            )
            for label in ours.get("frames_s") or {}:
                a = g(ours, "frames_s", label)
                b = g(theirs, "frames_s", label)
                add(
                    f"| {label} | {_num(a, '.3f', ' s') if a is not None else 'not in profile'} | "
                    f"{_num(b, '.3f', ' s') if b is not None else 'not in profile'} |"
                )
            add("")
            imports = g(ours, "frames_s", "module imports")
            if isinstance(imports, int | float) and ours.get("total_s"):
                add(
                    f"Module imports are {_share(imports, ours['total_s'])} of our no-op process"
                    f" ({_share(g(theirs, 'frames_s', 'module imports'), theirs.get('total_s'))}"
                    " of Flask-Migrate's). Top self time in ours: "
                    f"{_top_list(ours.get('top_self_s') or {}, 's', 4)}."
                )
                add("")
        elif noop.get("met") is False:
            add("No profile recorded for the whole-process no-op boot.")
            add("")
        pp = profiles.get("pending")
        if pend.get("met") is False and isinstance(pp, dict):
            frames = pp.get("frames_ms") or {}
            total = pp.get("total_ms") or 0
            add(
                f"`pending()`: pyinstrument on the first call in a fresh interpreter right after "
                f"`import app` ({_num(total, '.1f', ' ms')} under the profiler; measured without it: "
                f"{_num(pend.get('first_call_median_ms'), '.1f', ' ms')}; full tree: "
                f"{_rel_link(str(pp.get('text')), doc) if pp.get('text') else '—'}):"
            )
            measured = pend.get("first_call_median_ms")
            if isinstance(measured, int | float) and total and not 0.5 <= total / measured <= 2:
                add("")
                add(
                    f"**The profile ({total:.1f} ms) and the measurement ({measured:.1f} ms)"
                    " disagree by more than 2x: check the Provenance table (they may come from"
                    " different runs or sizes).**"
                )
            add("")
            add("| Frame (inclusive) | ms | Share |")
            add("|---|---|---|")
            for label, ms in frames.items():
                add(
                    f"| {label} | {_num(ms, '.1f') if ms is not None else 'not in this profile'} | "
                    f"{_share(ms, total)} |"
                )
            add("")
            largest = _largest(frames)
            if largest:
                add(
                    f"The largest item is **{largest[0]}** ({_share(largest[1], total)}); warm calls "
                    f"take {_num(pend.get('warm_median_ms'), '.1f', ' ms')}. Top self time: "
                    f"{_top_list(pp.get('top_self_ms') or {}, 'ms', 4)}."
                )
                add("")
        elif pend.get("met") is False:
            add("No profile recorded for `pending()`.")
            add("")
    frows = _fault_rows(faults)
    if any(not r.get("met") for r in frows):
        add("### Row 3: under faults")
        add("")
        ff = faults.get("fault_free") or {}
        fn = faults.get("migrations")
        add(
            f"History: {_history_note(faults)}. The retry settings are the {_defaults_text(faults)};"
            " they were not tuned for this row."
        )
        add("")
        choice = faults.get("history_choice") or {}
        if choice.get("estimated_phase_s"):
            add(
                "How the history was chosen (estimated seconds for the "
                f"{choice.get('runs_per_tool', '?')} runs per tool at {_pct(choice.get('for_rate'))}, "
                f"budget {choice.get('budget_s', '?')} s): "
                + ", ".join(
                    f"{k} migrations ~{v:.0f} s" for k, v in choice["estimated_phase_s"].items()
                )
                + "."
            )
            add("")
        for r in frows:
            errors = r.get("ours_errors") or {}
            expected = r.get("ours_expected_completion")
            line = (
                f"* {_pct(r.get('rate'))}: ours {r.get('ours_completed')}/{r.get('runs')} completed"
            )
            if expected is not None:
                line += (
                    f" (if each chunk were cut independently: a migration's first attempt "
                    f"exchanges ~{r.get('ours_chunks_per_migration', '?')} chunks on the kept "
                    f"connection, each retry ~{r.get('ours_chunks_per_fresh_connection', '?')} more "
                    f"for its new connection, and a unit gives up after the policy's attempts; "
                    f"then a {fn}-migration run would complete with probability {_pct(expected)})"
                )
            if errors:
                line += "; why the others stopped: " + "; ".join(
                    f"{count}× `{err}`" for err, count in list(errors.items())[:3]
                )
            add(line + ".")
        add("")
        fp = profiles.get("faults")
        if isinstance(fp, dict) and isinstance(fp.get("frames_s"), dict):
            total = fp.get("total_s") or 0
            add(
                f"pyinstrument on `{fp.get('what', 'one run')}` (exit {fp.get('exit', '?')}, "
                f"{fp.get('cuts', '?')} cuts, {_num(total, '.1f', ' s')}; fault-free median "
                f"{_num(ff.get('ours_median_s'), '.2f', ' s')}; full tree: "
                f"{_rel_link(str(fp.get('text')), doc) if fp.get('text') else '—'}):"
            )
            add("")
            _frames_table(add, fp["frames_s"], total, None)
            add("")
            sleep = g(fp, "frames_s", "backoff sleeps between attempts")
            if isinstance(sleep, int | float) and total:
                fresh = frows[0].get("ours_chunks_per_fresh_connection", "?")
                add(
                    f"Backoff sleeps are {_share(sleep, total)} of that run. A cut is retried at"
                    " once on a new connection; only when that retry is cut too does a backoff"
                    " wait follow, on the package's unchanged schedule. The more chunks an"
                    f" attempt exchanges (a new connection alone is ~{fresh}), the more often a"
                    " retry is cut again: at high cut rates, a unit that runs out of its"
                    " attempts is what stops a run (see the completion model above)."
                )
                add("")
        else:
            add("No profile recorded for this row.")
            add("")
    if conc and conc.get("met") is False:
        add(f"### Row 4: {conc.get('processes', '?')} processes at once")
        add("")
        appliers = conc.get("distinct_appliers") or []
        add(
            f"Exactly once: {'held in every run' if conc.get('exactly_once') else '**FAILED**'}"
            + (f" (distinct appliers per run: {', '.join(map(str, appliers))})" if appliers else "")
            + f"; {conc.get('processes', '?')} at once {_num(conc.get('concurrent_median_s'), '.2f', ' s')}"
            f" vs alone {_num(conc.get('alone_median_s'), '.2f', ' s')}."
        )
        add("")
        cp = profiles.get("crowd")
        if isinstance(cp, dict) and isinstance(cp.get("alone"), dict):
            a, w = cp.get("alone") or {}, cp.get("with_waiters") or {}
            add(
                f"pyinstrument on the applying process through PgBouncer, alone and then with "
                f"{cp.get('waiters', '?')} processes booting beside it {WAITERS_DELAY_S:g} s later"
                " (full trees: "
                + ", ".join(_rel_link(str(x.get("text")), doc) for x in (a, w) if x.get("text"))
                + "):"
            )
            add("")
            add("| | applier wall | applier CPU | connect, per migration | whole run |")
            add("|---|---|---|---|---|")
            for label, x in (("alone", a), (f"with {cp.get('waiters', '?')} waiters", w)):
                add(
                    f"| {label} | {_num(x.get('applier_s'), '.1f', ' s')} | "
                    f"{_num(x.get('applier_cpu_s'), '.1f', ' s')} | "
                    f"{_num(x.get('connect_ms_per_migration'), '.1f', ' ms')} "
                    f"({_num(x.get('connect_s'), '.1f', ' s')}) | {_num(x.get('wall_s'), '.1f', ' s')} |"
                )
            add("")
            keys = list((a.get("frames_s") or {}).keys())
            growth = [
                (k, (g(w, "frames_s", k) or 0) - (g(a, "frames_s", k) or 0))
                for k in keys
                if g(w, "frames_s", k) is not None
            ]
            growth.sort(key=lambda kv: -kv[1])
            extra_wall = (w.get("applier_s") or 0) - (a.get("applier_s") or 0)
            extra_cpu = (w.get("applier_cpu_s") or 0) - (a.get("applier_cpu_s") or 0)
            if growth:
                add(
                    f"With the waiters the applier took {extra_wall:+.1f} s of wall time and "
                    f"{extra_cpu:+.1f} s of CPU time; the frames that grew most: "
                    + ", ".join(f"{k} {v:+.2f} s" for k, v in growth[:3])
                    + "."
                    + (
                        " The extra time is waiting (the CPU time barely moved): for a core,"
                        " for PgBouncer and for the server, all shared with the"
                        " other processes starting up and polling the lease."
                        if extra_wall > 0 and extra_cpu < extra_wall / 3
                        else ""
                    )
                )
                add("")
        else:
            add("No profile recorded for this row.")
            add("")
    if verify and verify.get("met") is False:
        add("### Row 5: `verify`")
        add("")
        vp = profiles.get("verify")
        if isinstance(vp, dict):
            add(
                f"Self time by library: {_top_list(vp.get('self_by_library_s') or {}, 's', 6)}; "
                f"top functions: {_top_list(vp.get('top_self_s') or {}, 's', 5)} (full tree: "
                f"{_rel_link(str(vp.get('text')), doc) if vp.get('text') else '—'})."
            )
        else:
            add("No profile recorded for this row.")
        add("")
    pooled = executor.get("pooled") or {}
    if pooled and (pooled.get("met") is False or pooled.get("within_noise")):
        add("### Row 6: `execute_with_retry` overhead on a pooled engine")
        add("")
        gap = None
        if pooled.get("retry_us_per_statement") and pooled.get("bare_us_per_statement"):
            gap = pooled["retry_us_per_statement"] - pooled["bare_us_per_statement"]
        if pooled.get("within_noise"):
            sp = pooled.get("round_ratio_spread") or {}
            ci = sp.get("median_ci95") or [None, None]
            add(
                f"The verdict is within noise: the 95% interval of the median per-round ratio "
                f"({_num(ci[0], '.3f')}-{_num(ci[1], '.3f')}, {sp.get('n', '?')} rounds) contains "
                f"the target {pooled.get('target_ratio', 1.1)}."
            )
            add("")
        ex = profiles.get("executor")
        noop_us = executor.get("retry_call_noop_us")
        if gap is not None:
            add(
                f"Measured gap: {gap:+.1f} µs per statement ({_num(pooled.get('retry_us_per_statement'), '.1f')}"
                f" vs {_num(pooled.get('bare_us_per_statement'), '.1f')} µs)."
                + (
                    f" `retry_call` around an attempt that does nothing costs {noop_us:.1f} µs per"
                    f" call: {noop_us / gap * 100:.0f}% of the gap; the rest is elsewhere."
                    if isinstance(noop_us, int | float) and gap > 0
                    else ""
                )
            )
            add("")
        if isinstance(ex, dict) and isinstance(ex.get("retry"), dict):
            statements = ex.get("statements", "?")
            by_library: D = ex.get("library_growth_s") or {}
            b_total, r_total = g(ex, "bare", "total_s"), g(ex, "retry", "total_s")
            add(
                f"pyinstrument, {statements} statements each on one pooled engine: bare loop "
                f"{_num(b_total, '.2f', ' s')}, retry loop {_num(r_total, '.2f', ' s')} (full trees: "
                + ", ".join(
                    _rel_link(str(g(ex, k, "text")), doc)
                    for k in ("retry", "bare")
                    if g(ex, k, "text")
                )
                + "). Self time, retry loop minus bare loop:"
            )
            add("")
            if by_library:
                add("| Library | extra self time (s) |")
                add("|---|---|")
                for lib, secs in by_library.items():
                    add(f"| {lib} | {secs:+.3f} |")
                add("")
                top_lib, top_secs = next(iter(by_library.items()))
                add(f"The largest growth is in **{top_lib}** ({top_secs:+.3f} s).")
            functions = ex.get("self_growth_s") or {}
            if functions:
                add(
                    "Functions whose self time grew most: "
                    + ", ".join(f"`{k}` {v:+.3f} s" for k, v in list(functions.items())[:6])
                    + "."
                )
            add("")
        else:
            add("No profile recorded for this row.")
            add("")


def _findings(add: t.Callable[[str], None], verify: D) -> None:
    if not verify:
        return
    files = verify.get("files")
    add(f"## Findings side by side: `verify` vs squawk on the same {files or '?'} files")
    add("")
    ours = verify.get("ours_by_rule") or {}
    theirs = verify.get("squawk_by_rule") or {}
    add(
        f"`verify` flags {verify.get('ours_files_flagged', '?')} files "
        f"({verify.get('ours_findings', '?')} findings) and classifies "
        f"{verify.get('ours_dml_classified', '?')} DML statements; squawk flags "
        f"{verify.get('squawk_files_flagged', '—')} files ({verify.get('squawk_findings', '—')} findings)."
    )
    if isinstance(files, int):
        kinds = census(files)
        add(
            "The generated history holds "
            + ", ".join(f"{count} `{kind}`" for kind, count in kinds.items())
            + " statements."
        )
    add("")
    add("| flask-safe-migrate `verify` rule | count | squawk rule | count |")
    add("|---|---|---|---|")
    a_items, b_items = list(ours.items()), list(theirs.items())
    for i in range(max(len(a_items), len(b_items))):
        a = a_items[i] if i < len(a_items) else ("", "")
        b = b_items[i] if i < len(b_items) else ("", "")
        add(f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |")
    add("")
    add("squawk is a native binary; `verify` is a Python process, and its time includes the")
    add("interpreter start and imports.")
    add("")


def _recorded(data: dict[str, D | None], key: str) -> D:
    """``provenance[key]`` of the first results file that recorded it (suite.json first)."""
    for name in ("suite", *NAMES):
        found = g(data, name, "provenance", key)
        if found:
            return t.cast(D, found)
    return {}


def _machine(add: t.Callable[[str], None], data: dict[str, D | None]) -> None:
    m = _recorded(data, "machine")
    servers = _recorded(data, "servers")
    add("## Machine and versions")
    add("")
    if m:
        add(f"* {m.get('cpus')} cores ({m.get('cpu')}), {m.get('memory')}, {m.get('os')}")
        add(
            f"* Python {m.get('python')}; "
            + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items())
        )
    if servers:
        add(
            f"* PostgreSQL {servers.get('postgres')} (private cluster from `tests/infra`, TLS, "
            f"SCRAM, `fsync=off`), {servers.get('pgbouncer')} in transaction mode, TLS on both sides"
        )
    if m:
        add(f"* measured {m.get('date')}")
    add("")


def _method(add: t.Callable[[str], None], faults: D) -> None:
    add("## How each row is measured")
    add("")
    add("* Rows 1-2, `python -m benchmarks.apply_history`: whole processes, a fresh database per")
    add("  run, tools alternating (order flipped every repetition); direct connections use TLS")
    add("  with SCRAM, like a managed Postgres. The no-op boots run on the databases the direct")
    add("  runs just brought up to date. `pending()` is timed on its first call in a fresh")
    add("  interpreter right after importing the app (warm calls reported too).")
    add("* Row 3, `python -m benchmarks.faults`: `FaultProxy(protocol=False)` with")
    add("  `set_random(rate, seed=...)`, one proxy and one fresh database per run, the same seeds")
    add("  for both tools. A run completes when the process exits 0 and every migration was")
    add("  applied exactly once (ledger / `alembic_version`, and 3 seed rows per table). The")
    add("  fault-free baseline alternates the tools with the order flipped every repetition.")
    choice = faults.get("history_choice") or {}
    if choice:
        sizes = list(g(choice, "calibration", "sm", "seconds_at", default={}))
        add(
            f"  History length: the spec's {choice.get('spec_migrations', '?')} when the "
            f"{_pct(choice.get('for_rate'))} runs fit their {choice.get('budget_s', '?')} s share of"
            " the budget, else the largest candidate that does, estimated from one fault-free"
            f" calibration run per tool at each of {' and '.join(sizes) or '?'} migrations (time"
            " and chunks are linear in the history length) and the retry policy: "
            f"{choice.get('model', '?')}."
        )
    concurrent = [r for r in _fault_rows(faults) if r.get("concurrent")]
    if concurrent:
        r = concurrent[0]
        add(
            f"  From {_pct(r.get('rate'))} up a failing run of ours spends a minute or more asleep"
            " in backoff, so those runs "
            + f"start {_num(r.get('stagger_s'), 'g')} s apart and overlap: the busy CPU share"
            f" during the phase is recorded ({_pct(r.get('cpu_busy_share'))}), and since overlap"
            " can only slow a run, its time figures are upper bounds. A run still going after"
            f" {_num(r.get('timeout_s'), '.0f')} s is stopped and counted as not completed"
            f" (`run_all` shortens this timeout, to no less than {MIN_CONCURRENT_TIMEOUT_S:.0f} s,"
            " when the run would otherwise overrun its 10-minute budget)."
        )
    add(
        "* Row 4, `python -m benchmarks.concurrent_boot`: N `python -c 'import app'` processes with"
    )
    add("  `SAFE_MIGRATE_AUTO_MIGRATE = True`, started together through PgBouncer on an empty")
    add("  database, vs one alone (alternated); exactly-once is checked as in row 3.")
    add("* Row 5, `python -m benchmarks.verify_speed`: `python -m flask_safe_migrate verify DIR")
    add("  --format json` vs `squawk --reporter json FILES` (squawk-cli from PyPI, default rules).")
    add("* Row 6, `python -m benchmarks.executor_overhead`: `SELECT :n` with its rows fetched, one")
    add("  pooled engine for both, alternating rounds (order flipped every round); the per-round")
    add("  ratios give the spread and a distribution-free 95% interval of their median. A verdict")
    add("  is marked *within noise* when that interval contains the target. The NullPool row uses")
    add("  `create_migration_engine`.")
    add("* Profiles, `python -m benchmarks.profiles`: pyinstrument, for every missed target.")
    add("")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="results directory (default: benchmarks/results)")
    parser.add_argument("--doc", help="page to write (default: docs/benchmarks.md)")
    parser.add_argument("--chart", help="chart to write (default: docs/benchmarks.png)")
    parser.add_argument(
        "--allow-quick",
        action="store_true",
        help="write the official docs even from --quick results (with a banner)",
    )
    parser.add_argument("--no-chart", action="store_true", help="leave the chart as it is")
    args = parser.parse_args(argv)
    if args.results:
        set_results_dir(os.path.abspath(args.results))
    data = load_all()
    problems, quick = provenance_problems(data)
    for name in NAMES:
        p = g(data, name, "provenance") or {}
        print(
            f"{name:18} commit {str(p.get('commit') or '?')[:10]:10} dirty {p.get('dirty', '?')!s:5} "
            f"quick {p.get('quick', '?')!s:5} {p.get('date', '?')} run {p.get('run_id', '?')}"
            if data.get(name) is not None
            else f"{name:18} (missing)"
        )
    for problem in problems:
        print(f"WARNING: {problem.replace('**', '')}", file=sys.stderr)
    doc = os.path.abspath(args.doc) if args.doc else doc_path()
    chart_file = os.path.abspath(args.chart) if args.chart else chart_path()
    official = os.path.realpath(doc) == os.path.realpath(DOC) or os.path.realpath(
        chart_file
    ) == os.path.realpath(CHART)
    if quick and official and not args.allow_quick:
        print(
            f"error: some results in {os.path.relpath(results_dir(), ROOT)} come from a --quick "
            f"run; refusing to write {os.path.relpath(DOC, ROOT)} from them. Run the full "
            "benchmarks/run_all, or pass --allow-quick (the page then carries a banner).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if not args.no_chart:
        chart(data, chart_file)
    os.makedirs(os.path.dirname(doc), exist_ok=True)
    with open(doc, "w") as fh:
        fh.write(document(data, doc, chart_file))
    print(
        f"wrote {os.path.relpath(doc, ROOT)}"
        + ("" if args.no_chart else f" and {os.path.relpath(chart_file, ROOT)}")
    )


if __name__ == "__main__":
    main()
