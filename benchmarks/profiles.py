"""pyinstrument profiles of the rows that miss their target: where the time goes.

Each profile is saved as a text tree under ``<results>/profiles/`` and summarised in
``<results>/profiles.json`` for the report: inclusive time of named frames (``None``
when the frame is absent from the tree, e.g. after a refactoring), self time by
library, and the functions with the most self time. The report's explanations are
built from these numbers only.

Usage: python -m benchmarks.profiles [--count 1000] [--rows apply noop pending crowd executor faults verify]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import typing as t

from benchmarks.common import BOOT_ARGV
from benchmarks.common import ROOT
from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import Workspaces
from benchmarks.common import log
from benchmarks.common import results_dir
from benchmarks.common import write_result

# Frames of one migration's attempt (the runner's Postgres path); on each path the
# outermost match wins (the walk stops there), so nested matches are never counted
# twice. pyinstrument samples the main thread only.
APPLY_KEYS: list[tuple[str, str]] = [
    ("new server connection (libpq connect: TLS + SCRAM)", "_connect"),
    ("backoff sleeps between attempts", "sleep"),
    (
        "attempt setup: BEGIN, isolation, SET LOCAL timeouts, advisory lock, ledger re-read",
        "Runner._start_unit",
    ),
    ("the migration's own SQL", "Connection.exec_driver_sql"),
    ("ledger row", "Runner._record"),
    ("COMMIT", "Runner._commit"),
]

PENDING_KEYS: list[tuple[str, str]] = [
    ("server connection (libpq connect: TLS + SCRAM)", "_connect"),
    ("ledger query", "read_versions_raw"),
    ("migration file names", "find_files"),
    ("unapplied files read + checksum", "read_found"),
    ("module imports on first use", "_find_and_load"),
]


#: How long after the profiled applier the waiters of ``profile_crowd`` start (it has the lease by then).
WAITERS_DELAY_S = 1.0


def profiles_dir() -> str:
    return os.path.join(results_dir(), "profiles")


def _name(frame: t.Any) -> str:
    return f"{frame.class_name}.{frame.function}" if frame.class_name else str(frame.function)


def _walk(frame: t.Any, keys: list[tuple[str, str]], totals: dict[str, float]) -> None:
    for label, function in keys:
        if _name(frame) == function:
            totals[label] = totals.get(label, 0.0) + frame.time
            return
    for child in frame.children:
        _walk(child, keys, totals)


def named_frames(root: t.Any, keys: list[tuple[str, str]], scale: float = 1.0) -> dict[str, t.Any]:
    """Inclusive time of each named frame, times ``scale``; ``None`` when it never appears."""
    totals: dict[str, float] = {}
    _walk(root, keys, totals)
    return {
        label: (round(totals[label] * scale, 3) if label in totals else None) for label, _ in keys
    }


def _find(frame: t.Any, function: str) -> float:
    if _name(frame) == function:
        return float(frame.time)
    return sum(_find(child, function) for child in frame.children)


def _library(node: t.Any) -> str:
    path = node.file_path or ""
    if "site-packages/" in path:
        return str(path.split("site-packages/", 1)[1].split("/", 1)[0])
    short = node.file_path_short or ""
    if short.startswith("<"):
        return "built-in calls (driver I/O, socket waits, sleeps)"
    if "/lib/python3" in path:
        return "python standard library"
    return short.split("/", 1)[0] or "other"


def _synthetic(node: t.Any) -> bool:
    """pyinstrument's ``[self]``/``[await]`` nodes: time of their parent, not a call."""
    return bool(getattr(node, "is_synthetic", False))


def _self_time(node: t.Any) -> float:
    """Time in ``node`` itself (its synthetic children included), not in its calls."""
    calls = sum(float(child.time) for child in node.children if not _synthetic(child))
    return max(0.0, float(node.time) - calls)


def _self_time_by(frame: t.Any, key: t.Callable[[t.Any], str]) -> dict[str, float]:
    """Self time of every (non-synthetic) node under ``frame``, summed per ``key(node)``."""
    out: dict[str, float] = {}

    def visit(node: t.Any) -> None:
        if _synthetic(node):
            return
        name = key(node)
        out[name] = out.get(name, 0.0) + _self_time(node)
        for child in node.children:
            visit(child)

    visit(frame)
    return out


def by_library(frame: t.Any) -> dict[str, float]:
    """Self time grouped by top-level package (or built-in calls / standard library)."""
    out = _self_time_by(frame, _library)
    return dict(sorted(((k, round(v, 3)) for k, v in out.items()), key=lambda kv: -kv[1]))


def by_function(frame: t.Any) -> dict[str, float]:
    """Self time per function (``name (file)``), every call site summed."""
    return _self_time_by(frame, lambda node: f"{_name(node)} ({node.file_path_short or '?'})")


def _top(values: dict[str, float], n: int = 8) -> dict[str, float]:
    return {k: round(v, 4) for k, v in sorted(values.items(), key=lambda kv: -kv[1])[:n]}


def _save_text(session: t.Any, name: str) -> str:
    from pyinstrument.renderers import ConsoleRenderer

    os.makedirs(profiles_dir(), exist_ok=True)
    path = os.path.join(profiles_dir(), f"{name}.txt")
    text = ConsoleRenderer(unicode=True, color=False, short_mode=False).render(session)
    with open(path, "w") as fh:
        fh.write(text)
    return os.path.relpath(path, ROOT)  # e.g. benchmarks/results/profiles/apply.txt


def _pyinstrument_argv(session_file: str, argv: list[str]) -> list[str]:
    """``argv`` (``python -m ...`` or ``python -c ...``) run under pyinstrument."""
    return [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", session_file, *argv[1:]]


def _profile_upgrade(
    ws: Workspace, tool: str, url: str, session_file: str, timeout: float | None = None
) -> tuple[t.Any, int]:
    """``tool``'s whole-process upgrade of ``url`` under pyinstrument: its session, its exit code.

    With a ``timeout`` (a run through the cutting proxy) a failed run is profiled too;
    without, a failure raises.
    """
    from pyinstrument.session import Session

    argv, cwd, app_dir = ws.command(tool)
    completed = subprocess.run(
        _pyinstrument_argv(session_file, argv),
        cwd=cwd,
        env=ws.env(url, app_dir),
        check=timeout is None,
        capture_output=True,
        timeout=timeout,
    )
    return Session.load(session_file), completed.returncode


def _summary(session: t.Any, keys: list[tuple[str, str]], text_name: str) -> dict[str, t.Any]:
    root = session.root_frame()
    return {
        "total_s": round(float(root.time), 3),
        "cpu_s": round(float(session.cpu_time), 3),
        "frames_s": named_frames(root, keys),
        "self_by_library_s": by_library(root),
        "top_self_s": _top(by_function(root)),
        "text": _save_text(session, text_name),
    }


def profile_apply(servers: Servers, ws: Workspace) -> dict[str, object]:
    """Whole ``flask safe-migrate run`` process applying the history, direct TLS."""
    name = servers.new_database()
    session_file = os.path.join(ws.root, "apply.pyisession")
    try:
        session, _ = _profile_upgrade(ws, "sm", servers.direct_url(name), session_file)
    finally:
        servers.drop_database(name)
    out: dict[str, t.Any] = {
        "what": f"flask safe-migrate run, {ws.count} migrations, direct TLS",
        "migrations": ws.count,
        **_summary(session, APPLY_KEYS, "apply"),
    }
    out["startup_and_discovery_s"] = round(
        out["total_s"] - _find(session.root_frame(), "Runner.run"), 3
    )
    log(f"profile apply: {out['frames_s']}")
    return out


NOOP_KEYS: list[tuple[str, str]] = [
    ("module imports", "_find_and_load"),
    ("server connection (libpq connect: TLS + SCRAM)", "_connect"),
    ("migration files discovery (read + checksum)", "discover"),
    ("ledger query", "read_applied_raw"),
]


@contextlib.contextmanager
def applied_database(servers: Servers, ws: Workspace, tool: str = "sm") -> t.Iterator[str]:
    """A database brought up to date by ``tool`` (unprofiled); its direct URL."""
    name = servers.new_database()
    try:
        url = servers.direct_url(name)
        ws.run(tool, url)
        yield url
    finally:
        servers.drop_database(name)


def profile_noop(servers: Servers, ws: Workspace, ours_url: str | None = None) -> dict[str, object]:
    """Both tools' whole process with nothing to apply (the history already applied).

    ``ours_url``: a database our tool already brought up to date, to save applying again.
    """
    out: dict[str, t.Any] = {"migrations": ws.count}
    for tool, label in (("sm", "ours"), ("fm", "flask_migrate")):
        session_file = os.path.join(ws.root, f"noop_{tool}.pyisession")
        with contextlib.ExitStack() as stack:
            url = ours_url if tool == "sm" and ours_url else None
            if url is None:
                url = stack.enter_context(applied_database(servers, ws, tool))
            session, _ = _profile_upgrade(ws, tool, url, session_file)
        out[label] = _summary(session, NOOP_KEYS, f"noop_{label}")
    log(
        f"profile no-op boot: ours {out['ours']['frames_s']}, F-M {out['flask_migrate']['frames_s']}"
    )
    return out


def profile_executor(servers: Servers, statements: int = 3000) -> dict[str, object]:
    """``execute_with_retry`` and the bare loop on one pooled engine, same statements.

    Beside the self time by library, the functions whose self time grew most from
    the bare loop to the retry loop: that is where the overhead is.
    """
    import sqlalchemy as sa
    from pyinstrument import Profiler

    from benchmarks.executor_overhead import bare
    from benchmarks.executor_overhead import retried

    name = servers.new_database()
    out: dict[str, t.Any] = {"statements": statements}
    functions: dict[str, dict[str, float]] = {}
    try:
        engine = sa.create_engine(servers.direct_url(name))
        bare(engine, 50)
        retried(engine, 50)
        for label, loop in (("bare", bare), ("retry", retried)):
            profiler = Profiler(interval=0.0005)
            profiler.start()
            loop(engine, statements)
            profiler.stop()
            session = profiler.last_session
            root = session.root_frame()
            functions[label] = by_function(root)
            out[label] = {
                "total_s": round(float(root.time), 3),
                "self_by_library_s": by_library(root),
                "text": _save_text(session, f"executor_{label}"),
            }
        engine.dispose()
    finally:
        servers.drop_database(name)
    names = set(functions["bare"]) | set(functions["retry"])
    growth = {k: functions["retry"].get(k, 0.0) - functions["bare"].get(k, 0.0) for k in names}
    out["self_growth_s"] = _top(growth, 10)
    libraries = set(out["bare"]["self_by_library_s"]) | set(out["retry"]["self_by_library_s"])
    out["library_growth_s"] = _top(
        {
            lib: out["retry"]["self_by_library_s"].get(lib, 0.0)
            - out["bare"]["self_by_library_s"].get(lib, 0.0)
            for lib in libraries
        },
        10,
    )
    log(f"profile executor: {out['library_growth_s']}")
    return out


def profile_pending(servers: Servers, ws: Workspace, url: str | None = None) -> dict[str, object]:
    """The first ``pending()`` right after importing the app, in a fresh interpreter.

    ``url``: a database already up to date (else one is made and brought up to date).
    """
    from pyinstrument.session import Session

    session_file = os.path.join(ws.root, "pending.pyisession")
    code = (
        "import smapp\n"
        "from pyinstrument import Profiler\n"
        "p = Profiler(interval=0.0002); p.start()\n"
        "smapp.safe_migrate.pending(smapp.app)\n"
        f"p.stop(); p.last_session.save({session_file!r})\n"
    )
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(applied_database(servers, ws))
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ws.sm_dir,
            env=ws.env(url, ws.sm_dir),
            check=True,
            capture_output=True,
        )
    session = Session.load(session_file)
    root = session.root_frame()
    out = {
        "total_ms": round(float(root.time) * 1000, 2),
        "frames_ms": named_frames(root, PENDING_KEYS, 1000),
        "top_self_ms": {k: round(v * 1000, 2) for k, v in _top(by_function(root)).items()},
        "text": _save_text(session, "pending"),
    }
    log(f"profile pending: {out['frames_ms']}")
    return out


def profile_crowd(servers: Servers, ws: Workspace, waiters: int = 11) -> dict[str, object]:
    """The applying process through PgBouncer: alone, then with ``waiters`` booting beside it.

    The profiled process starts first (auto-migrate, so it takes the lease); the
    others start a second later, wait for the lease, poll, and find nothing to do.
    """
    from pyinstrument.session import Session

    out: dict[str, t.Any] = {"waiters": waiters, "migrations": ws.count}
    for label, crowd in (("alone", 0), ("with_waiters", waiters)):
        name = servers.new_database()
        session_file = os.path.join(ws.root, f"crowd_{label}.pyisession")
        url = servers.bouncer_url(name)
        try:
            started = time.perf_counter()
            applier = ws.boot(url, argv=_pyinstrument_argv(session_file, BOOT_ARGV))
            time.sleep(WAITERS_DELAY_S if crowd else 0.0)
            others = [ws.boot(url) for _ in range(crowd)]
            applier.wait(600)
            applier_s = time.perf_counter() - started
            for proc in others:
                proc.wait(600)
            wall = time.perf_counter() - started
        finally:
            servers.drop_database(name)
        session = Session.load(session_file)
        summary = _summary(session, APPLY_KEYS, f"crowd_{label}")
        connect = summary["frames_s"][APPLY_KEYS[0][0]] or 0.0
        out[label] = {
            "applier_s": round(applier_s, 3),
            "wall_s": round(wall, 3),
            "applier_cpu_s": summary["cpu_s"],
            "connect_s": round(connect, 3),
            "connect_ms_per_migration": round(connect / ws.count * 1000, 2),
            **summary,
        }
    log(
        f"profile crowd: applier alone {out['alone']['applier_s']} s, with waiters "
        f"{out['with_waiters']['applier_s']} s; connect per migration "
        f"{out['alone']['connect_ms_per_migration']} -> {out['with_waiters']['connect_ms_per_migration']} ms"
    )
    return out


def profile_faults(
    servers: Servers, ws: Workspace, rate: float, seed: int = 7
) -> dict[str, object]:
    """One run of ours through the cutting proxy at ``rate``: backoff sleeps vs work."""
    from benchmarks.faults import CountingProxy

    name = servers.new_database()
    session_file = os.path.join(ws.root, "faults.pyisession")
    proxy = CountingProxy(servers.cluster.port, rate, seed)
    try:
        url = proxy.proxy.url(servers.direct_url(name))
        session, code = _profile_upgrade(ws, "sm", url, session_file, timeout=300)
    finally:
        proxy.stop()
        servers.drop_database(name)
    out: dict[str, t.Any] = {
        "what": f"flask safe-migrate run, {ws.count} migrations, {rate:.0%} of chunks cut, seed {seed}",
        "exit": code,
        "cuts": proxy.cuts(),
        "migrations": ws.count,
        **_summary(session, APPLY_KEYS, "faults"),
    }
    log(f"profile faults: {out['frames_s']}")
    return out


def profile_verify(count: int) -> dict[str, object]:
    """``python -m flask_safe_migrate verify`` on ``count`` generated SQL files."""
    import tempfile

    from pyinstrument.session import Session

    from benchmarks.history import generate

    with tempfile.TemporaryDirectory() as tmp:
        directory = generate(os.path.join(tmp, "migrations"), count)
        session_file = os.path.join(tmp, "verify.pyisession")
        argv = [sys.executable, "-m", "flask_safe_migrate", "verify", directory, "--format", "json"]
        subprocess.run(_pyinstrument_argv(session_file, argv), cwd=ROOT, capture_output=True)
        session = Session.load(session_file)
        out: dict[str, t.Any] = {"files": count, **_summary(session, [], "verify")}
    log(f"profile verify: {out['self_by_library_s']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--fault-count", type=int, default=20)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["apply", "noop", "pending", "crowd", "executor", "faults", "verify"],
    )
    args = parser.parse_args()
    servers = Servers()
    spaces = Workspaces()
    found: dict[str, object] = {}
    try:
        ws = spaces(args.count)
        if "apply" in args.rows:
            found["apply"] = profile_apply(servers, ws)
        if "noop" in args.rows:
            found["noop"] = profile_noop(servers, ws)
        if "pending" in args.rows:
            found["pending"] = profile_pending(servers, ws)
        if "crowd" in args.rows:
            found["crowd"] = profile_crowd(servers, ws)
        if "executor" in args.rows:
            found["executor"] = profile_executor(servers)
        if "faults" in args.rows:
            found["faults"] = profile_faults(servers, spaces(args.fault_count), args.fault_rate)
        if "verify" in args.rows:
            found["verify"] = profile_verify(args.count)
        write_result("profiles", found, quick=args.count < 1000, servers=servers)
    finally:
        spaces.destroy()
        servers.destroy()


if __name__ == "__main__":
    main()
