"""pyinstrument profiles of the rows that miss their target: where the time goes.

Each profile is saved as text under benchmarks/results/profiles/ and summarised
(inclusive time of the frames that matter, or self time by library) in
benchmarks/results/profiles.json for the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t

from benchmarks.common import RESULTS
from benchmarks.common import Servers
from benchmarks.common import Workspace
from benchmarks.common import log

PROFILES = os.path.join(RESULTS, "profiles")

# Frames of one migration's attempt, outermost match wins (the walk stops there).
APPLY_KEYS: list[tuple[str, str]] = [
    ("new server connection per migration (TLS + SCRAM)", "_connect"),
    ("SET TRANSACTION + set_config(lock_timeout, ...)", "Runner._set_locals"),
    ("advisory xact lock + backend pid + xid", "Connection.execute"),
    ("ledger re-check (read_one)", "read_one"),
    ("the migration's own SQL", "Connection.exec_driver_sql"),
    ("ledger row (insert_row)", "insert_row"),
    ("COMMIT", "RootTransaction._do_commit"),
    ("close connection", "Connection.close"),
]


PENDING_KEYS: list[tuple[str, str]] = [
    ("server connection (TLS + SCRAM)", "_connect"),
    ("ledger query", "read_applied_raw"),
    ("migration files discovery (read + checksum)", "discover"),
    ("module imports on first use", "_find_and_load"),
]


def _name(frame: t.Any) -> str:
    return f"{frame.class_name}.{frame.function}" if frame.class_name else str(frame.function)


def _walk(frame: t.Any, keys: list[tuple[str, str]], totals: dict[str, float]) -> None:
    for label, function in keys:
        if _name(frame) == function:
            totals[label] = totals.get(label, 0.0) + frame.time
            return
    for child in frame.children:
        _walk(child, keys, totals)


def _find(frame: t.Any, function: str) -> float:
    if _name(frame) == function:
        return float(frame.time)
    return sum(_find(child, function) for child in frame.children)


def by_library(frame: t.Any) -> dict[str, float]:
    """Self time grouped by top-level package (or <built-in>)."""
    out: dict[str, float] = {}

    def visit(node: t.Any) -> None:
        path = node.file_path_short or ""
        if "site-packages/" in (node.file_path or ""):
            lib = node.file_path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith("<"):
            lib = "built-in calls (driver I/O, socket waits)"
        else:
            lib = path.split("/", 1)[0] or "other"
        self_time = node.time - sum(child.time for child in node.children)
        out[lib] = out.get(lib, 0.0) + max(0.0, self_time)
        for child in node.children:
            visit(child)

    visit(frame)
    return dict(sorted(((k, round(v, 3)) for k, v in out.items()), key=lambda kv: -kv[1]))


def _save_text(session: t.Any, name: str) -> str:
    from pyinstrument.renderers import ConsoleRenderer

    os.makedirs(PROFILES, exist_ok=True)
    path = os.path.join(PROFILES, f"{name}.txt")
    text = ConsoleRenderer(unicode=True, color=False, short_mode=False).render(session)
    with open(path, "w") as fh:
        fh.write(text)
    return os.path.relpath(path, os.path.dirname(RESULTS))


def profile_apply(servers: Servers, ws: Workspace) -> dict[str, object]:
    """Whole ``flask safe-migrate run`` process applying the history, direct TLS."""
    from pyinstrument.session import Session

    name = servers.new_database()
    session_file = os.path.join(ws.root, "apply.pyisession")
    try:
        argv, cwd, app_dir = ws.command("sm")
        argv = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "pyisession",
            "-o",
            session_file,
            *argv[1:],
        ]
        subprocess.run(
            argv,
            cwd=cwd,
            env=ws.env(servers.direct_url(name), app_dir),
            check=True,
            capture_output=True,
        )
    finally:
        servers.drop_database(name)
    session = Session.load(session_file)
    root = session.root_frame()
    totals: dict[str, float] = {}
    _walk(root, APPLY_KEYS, totals)
    total = float(root.time)
    migrating = _find(root, "Runner.run")
    out = {
        "what": f"flask safe-migrate run, {ws.count} migrations, direct TLS",
        "total_s": round(total, 3),
        "cpu_s": round(float(session.cpu_time), 3),
        "startup_and_discovery_s": round(total - migrating, 3),
        "frames_s": {k: round(totals.get(k, 0.0), 3) for k, _ in APPLY_KEYS},
        "text": _save_text(session, "apply"),
    }
    log(f"profile apply: {out['frames_s']}")
    return out


def profile_executor(servers: Servers, statements: int = 3000) -> dict[str, object]:
    """``execute_with_retry`` and the bare loop on one pooled engine: self time by library."""
    import sqlalchemy as sa
    from pyinstrument import Profiler

    from benchmarks.executor_overhead import bare
    from benchmarks.executor_overhead import retried

    name = servers.new_database()
    out: dict[str, object] = {"statements": statements}
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
            out[label] = {
                "total_s": round(float(root.time), 3),
                "self_by_library_s": by_library(root),
                "text": _save_text(session, f"executor_{label}"),
            }
        engine.dispose()
    finally:
        servers.drop_database(name)
    log(f"profile executor: {out}")
    return out


def profile_pending(servers: Servers, ws: Workspace) -> dict[str, object]:
    """The first ``pending()`` right after importing the app, in a fresh interpreter."""
    from pyinstrument.session import Session

    name = servers.new_database()
    session_file = os.path.join(ws.root, "pending.pyisession")
    code = (
        "import smapp\n"
        "from pyinstrument import Profiler\n"
        "p = Profiler(interval=0.0002); p.start()\n"
        "smapp.safe_migrate.pending(smapp.app)\n"
        f"p.stop(); p.last_session.save({session_file!r})\n"
    )
    try:
        url = servers.direct_url(name)
        ws.run("sm", url)  # bring it up to date in another process
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ws.sm_dir,
            env=ws.env(url, ws.sm_dir),
            check=True,
            capture_output=True,
        )
    finally:
        servers.drop_database(name)
    session = Session.load(session_file)
    root = session.root_frame()
    totals: dict[str, float] = {}
    _walk(root, PENDING_KEYS, totals)
    out = {
        "total_ms": round(float(root.time) * 1000, 2),
        "frames_ms": {k: round(totals.get(k, 0.0) * 1000, 2) for k, _ in PENDING_KEYS},
        "text": _save_text(session, "pending"),
    }
    log(f"profile pending: {out}")
    return out


def profile_crowd(servers: Servers, ws: Workspace, waiters: int = 11) -> dict[str, object]:
    """The applying process profiled through PgBouncer: alone, then with ``waiters`` booting beside it.

    The profiled process starts first (auto-migrate, so it takes the lease); the
    others start a second later, wait for the lease, poll, and find nothing to do.
    """
    import time

    from pyinstrument.session import Session

    out: dict[str, object] = {"waiters": waiters}
    for label, crowd in (("alone", 0), ("with_waiters", waiters)):
        name = servers.new_database()
        session_file = os.path.join(ws.root, f"crowd_{label}.pyisession")
        env = ws.env(servers.bouncer_url(name), ws.sm_dir, BENCH_AUTO="1")
        try:
            started = time.perf_counter()
            applier = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pyinstrument",
                    "-r",
                    "pyisession",
                    "-o",
                    session_file,
                    "-c",
                    "import smapp",
                ],
                cwd=ws.sm_dir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0 if crowd else 0.0)
            others = [
                subprocess.Popen(
                    [sys.executable, "-c", "import smapp"],
                    cwd=ws.sm_dir,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(crowd)
            ]
            applier.wait(600)
            applier_s = time.perf_counter() - started
            for proc in others:
                proc.wait(600)
            wall = time.perf_counter() - started
        finally:
            servers.drop_database(name)
        session = Session.load(session_file)
        root = session.root_frame()
        totals: dict[str, float] = {}
        _walk(root, APPLY_KEYS, totals)
        connect = totals.get(APPLY_KEYS[0][0], 0.0)
        out[label] = {
            "applier_s": round(applier_s, 3),
            "wall_s": round(wall, 3),
            "applier_cpu_s": round(float(session.cpu_time), 3),
            "connect_s": round(connect, 3),
            "connect_ms_per_migration": round(connect / ws.count * 1000, 2),
            "other_frames_s": round(sum(v for k, v in totals.items() if k != APPLY_KEYS[0][0]), 3),
            "text": _save_text(session, f"crowd_{label}"),
        }
    log(f"profile crowd: {out}")
    return out
