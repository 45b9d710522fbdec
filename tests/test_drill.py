"""``flask safe-migrate drill``: finds the unsafe migration at the right point, and cleans up.

The drill's own proof on a safe history (every example migration ✅) is in
``tests/test_reliability.py``; here: the deliberately unsafe fixture
(``tests/fixtures/drill_unsafe``: a no-transaction Python migration whose UPDATE is not
idempotent), the JSON document, random mode, the refusals (SQLite, a pooler URL) and the
scratch databases being dropped, also when the drill is interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from flask_safe_migrate.drill import SCRATCH_PREFIX
from flask_safe_migrate.drill import plan_points
from flask_safe_migrate.loader import discover
from tests.helpers import EXAMPLE_MIGRATIONS
from tests.helpers import make_app
from tests.helpers import scalar
from tests.helpers import write_migrations
from tests.infra.pgbouncer import PgBouncer
from tests.infra.postgres import Server
from tests.infra.postgres import TlsCluster

REPO = Path(__file__).resolve().parent.parent
UNSAFE = REPO / "tests" / "fixtures" / "drill_unsafe"
VOLATILE = REPO / "tests" / "fixtures" / "drill_volatile"


def invoke(app: t.Any, *args: str) -> t.Any:
    return app.test_cli_runner().invoke(args=["safe-migrate", "drill", *args])


def scratch_databases(admin_url: str) -> set[str]:
    engine = sa.create_engine(admin_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (SCRATCH_PREFIX + "%",),
                )
            }
    finally:
        engine.dispose()


def test_drill_reports_the_unsafe_migration_at_the_point_that_breaks_it(
    pg_server: Server, pg_url: str
) -> None:
    """Injects: the drill's systematic cuts (before/after each statement, COMMIT in flight,
    COMMIT reply lost) on the unsafe fixture's three migrations.

    Checks: 0002 (no-transaction ``UPDATE accounts SET balance = balance + 10``) is ❌ at "cut
    after statement 1, its reply lost" with the doubled credit quoted from the rows (110
    expected, 120 found); the transactional 0001 and 0003 are ✅; exit 1; the table and the
    summary are printed; no scratch database is left.
    """
    before = scratch_databases(pg_server.admin_url)
    app, _ = make_app(pg_url, UNSAFE)
    result = invoke(app)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    row = {line.split()[1]: line for line in lines if line[:1] in ("✅", "❌")}
    assert row["0001"].startswith("✅") and "retry-safe" in row["0001"]
    assert row["0003"].startswith("✅") and "retry-safe" in row["0003"]
    assert row["0002"].startswith("❌"), row["0002"]
    assert "rows of public.accounts differ" in row["0002"]
    assert '"balance": 110' in row["0002"] and '"balance": 120' in row["0002"]
    assert (
        "after cut after statement 1 (UPDATE accounts SET balance = balance + 10), its reply lost"
        in row["0002"]
    )
    assert "1 migration(s) NOT retry-safe" in result.stdout
    # Progress went to stderr while it worked.
    assert "[2/3] ❌ 0002_credit_welcome_bonus" in result.stderr
    assert scratch_databases(pg_server.admin_url) - before == set()


def test_drill_json_document_names_the_failure_and_every_point(pg_url: str) -> None:
    """Injects: the systematic cuts on 0002 of the unsafe fixture only (``--from 0002 --to
    0002``; 0001 is applied cleanly to build the state).

    Checks: one JSON document with ``schema_version``, ``ok`` false, ``fault_points``,
    ``failures``; per migration ``version``, ``name``, ``checksum``, ``state``; 0001 is
    ``not_drilled``; 0002 ``unsafe`` with 4 points (before/after its one statement, COMMIT of the
    ledger row in flight / reply lost), every point fired, the statement points were retried,
    exactly the "after statement 1" point failed, with the fingerprint difference; exit 1.
    """
    app, _ = make_app(pg_url, UNSAFE)
    result = invoke(app, "--json", "--from", "0002", "--to", "0002")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1
    assert document["ok"] is False and document["mode"] == "systematic"
    assert document["fault_points"] == 4 and document["runs"] == 4
    assert document["failures"] == 1 and document["unreached"] == 0
    first, second = document["migrations"]
    assert set(second) >= {"version", "name", "checksum", "state", "fault_points", "failures"}
    assert first["version"] == "0001" and first["state"] == "not_drilled"
    assert second["version"] == "0002" and second["name"] == "credit_welcome_bonus"
    assert second["checksum"] == discover(UNSAFE)[1].checksum
    assert second["state"] == "unsafe" and second["transactional"] is False
    points = {p["point"]: p for p in second["points"]}
    assert all(p["fired"] for p in points.values()), points
    assert all(points[p]["attempts"] >= 2 for p in points if "statement" in p), points
    (failure,) = second["failures"]
    assert failure["point"].startswith("cut after statement 1 (UPDATE accounts")
    assert failure["error"] is None
    assert failure["differences"][0].startswith("rows of public.accounts differ (same count, 3)")
    assert sorted(p for p, v in points.items() if v["ok"]) == [
        "cut before statement 1 (UPDATE accounts SET balance = balance + 10)",
        "cut while the ledger row's COMMIT is in flight",
        "lost reply to the ledger row's COMMIT",
    ]


def test_drill_leaves_out_what_varies_between_clean_runs_and_compares_the_rest(
    pg_url: str,
) -> None:
    """Injects: the systematic cuts on ``tests/fixtures/drill_volatile``: random uuid keys, a
    root tenant that is its own parent and invoices pointing at tenants (0001),
    ``clock_timestamp()`` written into a column without a default by a transactional migration
    (0002), and a no-transaction ``renew_at = renew_at + interval '1 month'`` on a time column
    that has a default but holds data (0003).

    Checks: 0001 and 0002 are ✅ (no false ❌ from values that differ on every run), with the
    columns that varied between the two clean runs listed in the table and the JSON
    (``public.tenants.id`` and the keys copied from it into ``parent_id`` and ``tenant_id``, then
    ``public.invoices.migrated_at``); the defaulted ``renew_at`` is still compared, so 0003 is ❌
    at "cut after statement 1" with the doubled month quoted; exit 1.
    """
    app, _ = make_app(pg_url, VOLATILE)
    result = invoke(app, "--json")
    assert result.exit_code == 1, result.output
    first, second, third = json.loads(result.stdout)["migrations"]
    assert first["state"] == "retry_safe", first
    assert first["volatile_columns"] == [
        "public.invoices.tenant_id",
        "public.tenants.id",
        "public.tenants.parent_id",
    ]
    assert second["state"] == "retry_safe", second
    assert second["volatile_columns"] == ["public.invoices.migrated_at"]
    assert third["state"] == "unsafe" and third["volatile_columns"] == [], third
    (failure,) = third["failures"]
    assert failure["point"].startswith("cut after statement 1 (UPDATE tenants"), failure
    assert "rows of public.tenants differ" in failure["differences"][0], failure
    # One tenant quoted: expected one month on, found two (acme from 01, globex from 06).
    moved = re.findall(r'"renew_at": "(2024-\d\d)', failure["differences"][0])
    assert moved in (["2024-02", "2024-03"], ["2024-07", "2024-08"]), failure
    table = invoke(app, "--from", "0002", "--to", "0002")
    assert table.exit_code == 0, table.output
    assert (
        "retry-safe (not compared, varied between clean runs: public.invoices.migrated_at)"
        in table.stdout
    ), table.stdout


def test_drill_random_mode_on_a_transactional_migration(pg_url: str) -> None:
    """Injects: ``--random 4 --rate 0.1``: four applies of 0001 (transactional) with random cuts
    (seeds 7..10; odd seeds RST, even FIN) on every relayed chunk.

    Checks: the mode is ``random``; four runs (``runs``; no ``fault_points`` in this mode), each
    labelled with its seed (replayable) and where its cuts landed; a cut landed in every run (a
    run without one is repeated with another seed); 0001 is ✅ (a transaction survives any
    cut) and the document is ok (exit 0).
    """
    app, _ = make_app(pg_url, UNSAFE)
    result = invoke(app, "--json", "--random", "4", "--rate", "0.1", "--seed", "7", "--to", "0001")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["mode"] == "random" and document["ok"] is True
    assert document["fault_points"] is None and document["runs"] == 4
    (only,) = document["migrations"]
    assert only["state"] == "retry_safe" and only["runs"] == 4, only
    assert only["unreached"] == [] and all(p["fired"] for p in only["points"]), only
    labels = [p["point"] for p in only["points"]]
    seeds = [int(re.search(r"seed (\d+)", label)[1]) for label in labels]  # type: ignore[index]
    # Seed 7 + i, or, when no cut landed with it, 7 + i + 4k (the next unused seeds).
    assert [(seed - 7) % 4 for seed in seeds] == [0, 1, 2, 3], labels
    for label, seed in zip(labels, seeds, strict=True):
        how = "FIN" if seed % 2 == 0 else "RST"
        assert label.startswith(f"random cuts (rate 0.1, seed {seed}, {how}): "), label
        assert re.search(r": \d+ cut\(s\), after ", label), label


def test_drill_random_runs_without_a_cut_are_said_not_passed_over(pg_url: str) -> None:
    """Injects: ``--random 1`` at a rate (1e-9 per relayed chunk) at which no cut ever lands.

    Checks: the run is repeated with three other seeds (1 clean + 1 second clean + 4 faulty
    applies), then reported as "1 run(s) without a cut" next to the result, in a "Runs" column,
    and the summary counts random runs, not fault points; JSON says ``unreached`` 1.
    """
    app, _ = make_app(pg_url, UNSAFE)
    result = invoke(app, "--random", "1", "--rate", "1e-9", "--to", "0001")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[1:3]
    assert header.split()[:4] == ["Version", "Migration", "Runs", "Result"], result.stdout
    assert row.startswith("✅ 0001") and "retry-safe (1 run(s) without a cut)" in row, row
    assert "1 random run(s), 6 applies in" in result.stdout, result.stdout
    document = json.loads(
        invoke(app, "--json", "--random", "1", "--rate", "1e-9", "--to", "0001").stdout
    )
    assert document["unreached"] == 1 and document["migrations"][0]["points"][0]["fired"] is False


@pytest.mark.parametrize("as_json", [False, True])
def test_drill_that_cannot_reach_its_server_says_it_could_not_run(
    pg_url: str, as_json: bool
) -> None:
    """Injects: ``--scratch-url`` pointing at a port where no server listens.

    Checks: exit 1 (the exit-code table's "operation failed"), one line saying the drill could
    not run and naming the database error, no traceback; with ``--json`` the error document's
    type is DrillCouldNotRun.
    """
    app, _ = make_app(pg_url, UNSAFE)
    nowhere = "postgresql://postgres:hunter2@127.0.0.1:1/postgres"
    result = invoke(app, "--scratch-url", nowhere, *(["--json"] if as_json else []))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "hunter2" not in result.output
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert error["type"] == "DrillCouldNotRun" and error["exit_code"] == 1, error
        assert error["message"].startswith("the drill could not run: database error:"), error
    else:
        assert "Error: the drill could not run: database error:" in result.stderr, result.output


def test_drill_when_a_migration_fails_even_cleanly(pg_url: str, tmp_path: Path) -> None:
    """Injects: a history whose 0002 fails when applied cleanly (division by zero), followed by
    0003 and 0004.

    Checks: one row per migration: 0001 ✅, 0002 ❌ "the clean apply failed: ... division by
    zero", 0003 and 0004 "not reached" (``not_reached`` in JSON); exit 1 (the drill could not
    reach a verdict; the rows say so, none is "not retry-safe").
    """
    directory = write_migrations(
        tmp_path / "migrations",
        {
            "0001_things.sql": "CREATE TABLE things (id serial PRIMARY KEY, n integer);\n",
            "0002_broken.sql": "INSERT INTO things (n) VALUES (1 / 0);\n",
            "0003_more.sql": "ALTER TABLE things ADD COLUMN note text;\n",
            "0004_last.sql": "CREATE INDEX things_n_idx ON things (n);\n",
        },
    )
    app, _ = make_app(pg_url, directory)
    result = invoke(app)
    assert result.exit_code == 1, result.output
    row = {
        line.split()[1]: line for line in result.stdout.splitlines() if line[:1] in list("✅❌·")
    }
    assert list(row) == ["0001", "0002", "0003", "0004"], result.stdout
    assert row["0001"].startswith("✅ 0001"), row
    assert row["0002"].startswith("❌ 0002") and "the clean apply failed:" in row["0002"], row
    assert "division by zero" in row["0002"], row
    for version in ("0003", "0004"):
        assert row[version].split()[:2] == ["·", version], row
        assert "not reached: 0002 failed even when applied cleanly" in row[version], row
    assert "1 could not be drilled (failed even cleanly), 2 not reached" in result.stdout
    document = json.loads(invoke(app, "--json").stdout)
    states = [(m["version"], m["state"]) for m in document["migrations"]]
    assert states == [
        ("0001", "retry_safe"),
        ("0002", "failed"),
        ("0003", "not_reached"),
        ("0004", "not_reached"),
    ]


def test_drill_on_sqlite_says_it_needs_postgres(tmp_path: Path) -> None:
    """Injects nothing: an app on SQLite. Checks: exit 2 and a message naming PostgreSQL."""
    app, _ = make_app(f"sqlite:///{tmp_path / 'app.db'}", UNSAFE)
    result = invoke(app)
    assert result.exit_code == 2, result.output
    assert "the drill needs PostgreSQL" in result.output and "sqlite" in result.output


def test_drill_through_a_pooler_asks_for_a_direct_scratch_url(
    tls_cluster: TlsCluster, pgbouncer: PgBouncer, pgb_url: str
) -> None:
    """Injects: an app whose migration URL goes through PgBouncer (transaction mode).

    Checks: the drill refuses with exit 2 and names ``--scratch-url`` (templates cannot be
    copied through a pooler); with ``--scratch-url`` (direct, the password-authenticated app role
    with CREATEDB, plaintext) it drills 0001 of the unsafe fixture: ✅, exit 0.
    """
    app, _ = make_app(pgb_url, UNSAFE)
    refused = invoke(app)
    assert refused.exit_code == 2, refused.output
    assert "connection pooler" in refused.output and "--scratch-url" in refused.output
    direct = tls_cluster.app_url("postgres", sslmode="disable")
    result = invoke(app, "--scratch-url", direct, "--to", "0001")
    assert result.exit_code == 0, result.output
    assert "✅ 0001" in result.stdout and "every migration is retry-safe" in result.stdout
    assert scratch_databases(tls_cluster.admin_url) == set()


def start_drill(tmp_path: Path, url: str, *args: str) -> subprocess.Popen[str]:
    """A real ``flask safe-migrate drill`` process on the example history, against ``url``."""
    (tmp_path / "sm_drill_app.py").write_text(
        textwrap.dedent(
            f"""
            from tests.helpers import make_app

            app, ext = make_app({url!r}, {EXAMPLE_MIGRATIONS!r})
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAFE_MIGRATE_", "FLASK_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(tmp_path)])
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "sm_drill_app", "safe-migrate", "drill", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_drilling_0002(proc: subprocess.Popen[str]) -> list[str]:
    """Read the drill's progress until it starts the faulty applies of 0002; the lines read."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[2/10] 0002_create_statuses"):
            return seen
    pytest.fail("the drill never reached 0002:\n" + "".join(seen))


@pytest.mark.parametrize(
    ("sig", "repeat"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGHUP, 1), (signal.SIGINT, 100)],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGINT-burst"],
)
def test_drill_drops_its_scratch_databases_when_interrupted(
    sig: signal.Signals, repeat: int, pg_server: Server, pg_url: str, tmp_path: Path
) -> None:
    """Injects: ``SIGINT`` (Ctrl-C), ``SIGTERM`` (a cancelled CI job) or ``SIGHUP`` (a closed
    terminal or ssh session) to a real ``flask safe-migrate drill`` process on the example
    history, once it is drilling 0002; or a burst of up to 100 SIGINTs 5 ms apart (a held
    Ctrl-C), which goes on during the cleanup and the process's exit.

    Checks: it exits 1 (not killed by a later signal of the burst, which would be -n)
    saying its scratch databases were dropped, and none of them is left on the server (there
    were some while it ran).
    """
    before = scratch_databases(pg_server.admin_url)
    proc = start_drill(tmp_path, pg_url)
    try:
        seen = wait_until_drilling_0002(proc)
        during = scratch_databases(pg_server.admin_url) - before
        assert during, "no scratch database while drilling"
        for _ in range(repeat):
            if proc.poll() is not None:
                break
            proc.send_signal(sig)
            time.sleep(0.005)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, "".join(seen) + rest
    assert "Drill interrupted; its scratch databases were dropped." in rest
    deadline = time.monotonic() + 5
    while scratch_databases(pg_server.admin_url) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scratch_databases(pg_server.admin_url) - before == set()


KEEPERS = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sm\\_drill\\_%'"


def test_drill_cleanup_drops_what_a_killed_drill_left_and_keeps_a_running_ones(
    tls_cluster: TlsCluster, tls_db: str, tmp_path: Path
) -> None:
    """Injects: ``SIGKILL`` to a real drill process on the example history while it drills 0002
    (on a private cluster, so no other test's drill is around), which leaves its scratch
    databases; and a drill that is still running there (its admin connection named
    ``sm_drill_<run id>`` open, and a database of that run).

    Checks: ``drill --cleanup --json`` drops exactly the killed drill's databases (exit 0), keeps
    the running drill's database and says so; nothing of the killed run is left.
    """
    admin = tls_cluster.admin_url
    url = tls_cluster.app_url(tls_db, sslmode="disable")
    proc = start_drill(tmp_path, url)
    try:
        wait_until_drilling_0002(proc)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = scratch_databases(admin)
    assert left, "a SIGKILL cannot clean up, yet no scratch database was left"
    # The server notices the killed drill's connections are gone within moments.
    deadline = time.monotonic() + 10
    while scalar(admin, KEEPERS) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scalar(admin, KEEPERS) == 0
    running = f"{SCRATCH_PREFIX}feedc0de_0001_c0001"
    engine = sa.create_engine(
        admin,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": f"{SCRATCH_PREFIX}feedc0de"},
    )
    try:
        with engine.connect() as alive:
            alive.exec_driver_sql(f'CREATE DATABASE "{running}"')
            try:
                app, _ = make_app(url, EXAMPLE_MIGRATIONS)
                result = invoke(app, "--cleanup", "--json")
                assert result.exit_code == 0, result.output
                document = json.loads(result.stdout)
                assert sorted(document["dropped"]) == sorted(left), document
                assert document["kept"] == [running] and document["failed"] == []
                assert scratch_databases(admin) == {running}
            finally:
                alive.exec_driver_sql(f'DROP DATABASE IF EXISTS "{running}"')
    finally:
        engine.dispose()


def test_plan_points_for_a_python_migration_skip_the_runners_own_queries() -> None:
    """Injects nothing: a recorded query stream of a Python no-transaction migration.

    Checks: only the migration's own statement gets before/after points (not the runner's SET,
    ledger or lease queries), its occurrence count spans the whole run, and the COMMIT points
    target the ledger row's COMMIT.
    """
    migration = discover(UNSAFE)[1]
    queries = [
        "SELECT version, name FROM safe_migrate_ledger",
        "BEGIN",
        "UPDATE accounts SET balance = balance + 10",  # an earlier, identical query
        "COMMIT",
        "SET lock_timeout = '2s'",  # the window starts here
        "UPDATE accounts SET balance = balance + 10",
        "BEGIN",
        "INSERT INTO \"safe_migrate_ledger\" (version) VALUES ('0002')",
        "COMMIT",
        "DELETE FROM safe_migrate_ledger_lease WHERE id = 1",
    ]
    points, statements = plan_points(migration, queries, (4, 9))
    assert statements == ["UPDATE accounts SET balance = balance + 10"]
    assert [(p.when, p.nth) for p in points] == [
        ("before_query", 2),
        ("after_query", 2),
        ("commit_in_flight", 2),
        ("commit_reply_lost", 2),
    ]
