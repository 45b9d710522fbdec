"""``flask safe-migrate drill``: the drill (see :mod:`.drill`) as a command with a table and JSON.

Progress goes to stderr, so ``--json`` keeps stdout to the one document; the table and the exit
code are what a CI step looks at, with the one table every command uses: 0 every migration
retry-safe; 1 any ❌ (not retry-safe), or the drill could not reach a verdict (see
:class:`.drill.DrillCouldNotRun`; the message and JSON say which), or it was stopped by a
signal; 2 usage or configuration.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
import typing as t

import click

from .classify import first_line
from .classify import is_database_error
from .cli import cli
from .cli import emit_json
from .cli import extension
from .cli import handle_errors
from .errors import BadInputError
from .errors import ConfigError
from .errors import SafeMigrateError
from .redact import redact

if t.TYPE_CHECKING:
    from .drill import DrillCouldNotRun
    from .drill import DrillReport

_MARKS = {
    "retry_safe": "✅",
    "unsafe": "❌",
    "failed": "❌",
    "not_reached": "·",
    "not_drilled": "·",
}


def render_table(report: DrillReport) -> list[str]:
    """The drill's table, one row per migration (also used by the README's sample)."""
    rows = [
        (_MARKS[m.state], m.version, m.name, str(len(m.points)), m.detail())
        for m in report.migrations
    ]
    width = max([len("Migration")] + [len(r[2]) for r in rows])
    counted = "Runs" if report.mode == "random" else "Points"
    lines = [f"   {'Version':<8} {'Migration':<{width}} {counted:>6}  Result"]
    for mark, version, name, points, detail in rows:
        # ✅ and ❌ take two columns in a terminal, the dot one.
        pad = " " if mark == "·" else ""
        lines.append(f"{mark}{pad} {version:<8} {name:<{width}} {points:>6}  {detail}")
    return lines


@contextlib.contextmanager
def _quiet_retry_log() -> t.Iterator[None]:
    """Silence the package's retry warnings while drilling: there the faults are on purpose.

    Every faulty apply logs "attempt 1 failed ... retrying"; an app that configured logging
    would otherwise get hundreds of them. What the drill found is in its own output.
    """
    from .log import logger

    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@cli.command("drill")
@click.option(
    "--scratch-url",
    metavar="URL",
    help=(
        "Direct URL of the Postgres server to create scratch databases on (a role with "
        "CREATEDB). Default: the migration URL; required when that goes through a pooler."
    ),
)
@click.option(
    "--random",
    "random_runs",
    type=click.IntRange(min=1),
    metavar="N",
    help="N runs per migration with random cuts instead of one per systematic fault point.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    default=0.02,
    show_default=True,
    help="With --random: probability of a cut per relayed chunk.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="With --random: seed of the first run (run i uses seed + i), to replay a failure.",
)
@click.option("--from", "from_version", metavar="VERSION", help="Drill this version and later.")
@click.option("--to", "to_version", metavar="VERSION", help="Stop after this version.")
@click.option("--bind", metavar="NAME", help="Drill a Flask-SQLAlchemy bind's migrations.")
@click.option(
    "--cleanup",
    is_flag=True,
    help=(
        "Drill nothing: drop the scratch databases (sm_drill_*) that killed drills left on the"
        " server; those of drills still running are kept."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@handle_errors
def drill_command(
    scratch_url: str | None,
    random_runs: int | None,
    rate: float,
    seed: int,
    from_version: str | None,
    to_version: str | None,
    bind: str | None,
    cleanup: bool,
    as_json: bool,
) -> None:
    """Cut the connection at every point of every migration; check each ends as a clean run.

    On scratch databases (dropped afterwards, also on Ctrl-C): each migration is applied twice
    cleanly, then again from the state before it with the connection cut before and after each
    statement and around its COMMIT; the runner retries, and the schema, data and ledger must
    equal the clean run's. Exit 1 if any migration is not retry-safe, or if the drill could not
    reach a verdict (a migration failed even cleanly, a database error; the output says
    which). PostgreSQL only.
    """
    from .drill import Drill
    from .drill import DrillInterrupted

    ext = extension()
    runner = ext.runner(bind=bind)
    settings = ext.settings()
    if cleanup:
        _cleanup(scratch_url or runner.db.url, settings.connect_timeout, as_json)
        return
    drill = Drill(
        scratch_url or runner.db.url,
        runner.directory,
        ledger_table=settings.ledger_table,
        ledger_schema=settings.ledger_schema,
        lock_timeout_ms=settings.lock_timeout_ms,
        statement_timeout_ms=settings.statement_timeout_ms,
        connect_timeout=settings.connect_timeout,
        random_runs=random_runs or 0,
        rate=rate,
        seed=seed,
        from_version=from_version,
        to_version=to_version,
        on_progress=lambda line: click.echo(line, err=True),
    )
    try:
        with _quiet_retry_log():
            # This process exits right after an interrupt: signals stay ignored until then.
            report = drill.run(linger_on_interrupt=True)
    except (ConfigError, BadInputError):
        raise
    except Exception as exc:
        raise _could_not_run(exc) from exc
    except DrillInterrupted:
        left = drill.left_behind
        if left:
            click.echo(
                f"Drill interrupted; {len(left)} scratch database(s) could not be dropped:"
                f" {', '.join(left)}. Drop them with `flask safe-migrate drill --cleanup`.",
                err=True,
            )
        else:
            click.echo("Drill interrupted; its scratch databases were dropped.", err=True)
        sys.exit(1)
    if as_json:
        emit_json(report.document())
    else:
        click.echo("")
        for line in render_table(report):
            click.echo(line)
        counted = "random run(s)" if report.mode == "random" else "fault point(s)"
        click.echo(
            f"{report.runs} {counted}, {report.applies} applies in"
            f" {report.duration_s:.1f}s: {_verdict(report)}"
        )
    if report.exit_code:
        sys.exit(report.exit_code)


def _verdict(report: DrillReport) -> str:
    if report.ok:
        return "every migration is retry-safe."
    states = [m.state for m in report.migrations]
    parts = []
    if "unsafe" in states:
        parts.append(f"{states.count('unsafe')} migration(s) NOT retry-safe")
    if "failed" in states:
        parts.append(f"{states.count('failed')} could not be drilled (failed even cleanly)")
    if "not_reached" in states:
        parts.append(f"{states.count('not_reached')} not reached")
    return ", ".join(parts) + " (see docs/drill.md)."


def _could_not_run(exc: Exception) -> DrillCouldNotRun:
    """An error that stopped the drill before its verdict, as exit 1 with a message.

    A database error (the scratch server unreachable, a refused login) is an expected failure:
    a message. Anything else is a bug: its traceback (scrubbed of passwords) goes to stderr.
    """
    from .drill import DrillCouldNotRun

    if isinstance(exc, SafeMigrateError) or is_database_error(exc):
        what = (
            str(exc) if isinstance(exc, SafeMigrateError) else f"database error: {first_line(exc)}"
        )
    else:
        click.echo(redact("".join(traceback.format_exception(exc))), err=True)
        what = f"unexpected error: {exc!r}"
    return DrillCouldNotRun(f"the drill could not run: {what}")


def _cleanup(url: t.Any, connect_timeout: float, as_json: bool) -> None:
    from .drill_scratch import cleanup
    from .urls import normalize_url

    done = cleanup(normalize_url(url, key="--scratch-url"), connect_timeout=connect_timeout)
    if as_json:
        emit_json(done.document())
    else:
        for name in done.dropped:
            click.echo(f"dropped {name}")
        for name in done.kept:
            click.echo(f"kept {name} (its drill is still running)")
        for name in done.failed:
            click.echo(f"could not drop {name}", err=True)
        click.echo(
            f"{len(done.dropped)} leftover scratch database(s) dropped"
            + (f", {len(done.kept)} kept" if done.kept else "")
            + (f", {len(done.failed)} could not be dropped." if done.failed else ".")
        )
    if done.failed:
        sys.exit(1)
