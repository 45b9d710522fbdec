"""The ``flask safe-migrate`` commands: each a few lines over the extension's methods."""

from __future__ import annotations

import os
import sys
import time
import typing as t

import click

from .cli import cli
from .cli import emit_json
from .cli import extension
from .cli import handle_errors
from .urls import display_url

if t.TYPE_CHECKING:
    from .runner import Event
    from .runner import MigrationState
    from .runner import Outcome
    from .runner import Runner
    from .runner import Status

_MARKS = {"applied": "✅", "pending": "⏳", "drift": "❌", "missing": "❓"}


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _when(value: t.Any) -> str | None:
    """A ledger timestamp as ISO 8601 (seconds), whatever the backend returned."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return str(value.replace(microsecond=0).isoformat(sep=" "))
    return str(value).split(".")[0]


def outcome_document(outcome: Outcome) -> dict[str, t.Any]:
    return {
        "version": outcome.version,
        "name": outcome.name,
        "checksum": outcome.checksum,
        "state": "applied",
        "result": outcome.state,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "retries": list(outcome.retries),
    }


def state_document(item: MigrationState) -> dict[str, t.Any]:
    row = item.applied
    return {
        "version": item.version,
        "name": item.name,
        "checksum": item.checksum,
        "state": item.state,
        "attempts": row.attempts if row else None,
        "duration_ms": row.duration_ms if row else None,
        "applied_at": _when(row.applied_at) if row else None,
        "applied_by": row.applied_by if row else None,
        "ledger_checksum": row.checksum if row else None,
        "path": _relative(str(item.migration.path)) if item.migration else None,
    }


@cli.command("run")
@click.option("--to", "to", metavar="VERSION", help="Stop after this version (inclusive).")
@click.option(
    "--bind", metavar="NAME", help="Migrate a Flask-SQLAlchemy bind, from <directory>/<NAME>."
)
@click.option(
    "--out-of-order",
    is_flag=True,
    help="Also apply pending versions below the highest applied one.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would be applied, statement by statement (like `plan`); change nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@handle_errors
def run_command(
    to: str | None, bind: str | None, out_of_order: bool, dry_run: bool, as_json: bool
) -> None:
    """Apply pending migrations, each exactly once.

    Every migration runs in its own transaction; a dropped connection, pooler
    restart or lock timeout retries it from the start on a new connection, and
    a migration another instance applied meanwhile is not run twice.
    """
    from flask import current_app

    execute_run(
        extension().runner(bind=bind),
        to=to,
        out_of_order=out_of_order,
        dry_run=dry_run,
        as_json=as_json,
        signal_sender=current_app._get_current_object(),  # type: ignore[attr-defined]
        bind=bind,
    )


def execute_run(
    runner: Runner,
    *,
    to: str | None,
    out_of_order: bool,
    dry_run: bool,
    as_json: bool,
    signal_sender: t.Any = None,
    bind: str | None = None,
) -> None:
    """The body of ``run``, shared with ``python -m flask_safe_migrate run`` (no app there)."""
    if dry_run:
        from .workflow_commands import print_plan

        try:
            print_plan(runner, to=to, out_of_order=out_of_order, as_json=as_json)
        finally:
            runner.db.dispose()
        return
    started = time.monotonic()
    if not as_json:
        click.echo(f"Migrating {display_url(runner.db.url)} from {_relative(runner.directory)}")

    progress: dict[str, t.Any] = {"current": None, "done": []}

    def show(event: Event) -> None:
        if event.kind == "applying":
            progress["current"] = event
        elif event.kind in ("applied", "already_applied"):
            progress["current"] = None
            progress["done"].append(f"{event.version}_{event.name}")
        if as_json:
            return
        label = f"{event.version}_{event.name}" if event.version else ""
        if event.kind == "waiting":
            click.echo(f"  waiting: {event.detail} is applying migrations")
        elif event.kind == "retry":
            click.echo(f"  {label}: {event.detail}")
        elif event.kind == "warning":
            click.echo(f"  warning: {event.detail}", err=True)
        elif event.kind == "progress":
            click.echo(f"  {label}: {event.detail}")
        elif event.kind in ("applied", "already_applied") and event.outcome is not None:
            outcome = event.outcome
            tries = f"{outcome.attempts} attempt{'' if outcome.attempts == 1 else 's'}"
            verb = "applied" if event.kind == "applied" else "already applied by another instance"
            click.echo(f"  ✅ {label} {verb} in {outcome.duration_ms} ms, {tries}")

    import contextlib

    from .cancel import cancel_on_signals
    from .interrupt import Interrupted
    from .interrupt import stop_on_signals
    from .signals import signalling

    # Flask signals need an app as sender: `python -m flask_safe_migrate run` has none.
    relaying: t.ContextManager[t.Callable[[Event], None]] = (
        signalling(signal_sender, show, bind=bind)
        if signal_sender is not None
        else contextlib.nullcontext(show)
    )
    try:
        # The signal handlers first, then the cancel (it relies on them to wake it).
        with stop_on_signals(), cancel_on_signals(), relaying as relay:
            outcomes = runner.run(to=to, out_of_order=out_of_order, on_event=relay)
    except Interrupted as stop:
        raise _interrupted(runner, stop, progress["current"], progress["done"]) from None
    finally:
        runner.db.dispose()
    applied = sum(1 for o in outcomes if o.state == "applied")
    elapsed = time.monotonic() - started
    if as_json:
        emit_json(
            {
                "ok": True,
                "applied": applied,
                "already_applied": len(outcomes) - applied,
                "duration_ms": int(elapsed * 1000),
                "migrations": [outcome_document(o) for o in outcomes],
            }
        )
    elif not outcomes:
        click.echo("Nothing to apply: the database is up to date.")
    else:
        click.echo(
            f"Done: {applied} applied, {len(outcomes) - applied} already applied, in {elapsed:.1f}s."
        )


@cli.command("status")
@click.option("--bind", metavar="NAME", help="Report on a Flask-SQLAlchemy bind's migrations.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 if anything is pending, drifted or missing (a deploy gate).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@handle_errors
def status_command(bind: str | None, check: bool, as_json: bool) -> None:
    """Show applied, pending, drifted and missing migrations."""
    report_status(extension().status(bind=bind), check=check, as_json=as_json)


def report_status(status: Status, *, check: bool, as_json: bool) -> None:
    """The body of ``status``, shared with ``python -m flask_safe_migrate status``."""
    counts = {state: len(status.of(state)) for state in ("applied", "pending", "drift", "missing")}
    if as_json:
        emit_json(
            {
                "ok": status.clean,
                "counts": counts,
                "migrations": [state_document(i) for i in status.items],
            }
        )
    else:
        if not status.items:
            click.echo("No migrations yet.")
        for item in status.items:
            row = item.applied
            if item.state == "applied" and row is not None:
                tries = "attempt" if row.attempts == 1 else "attempts"
                detail = f"applied {_when(row.applied_at)} ({row.duration_ms} ms, {row.attempts} {tries})"
            elif item.state == "drift":
                detail = "drift: edited after it was applied (restore it, or `repair`)"
            elif item.state == "missing":
                detail = "missing: applied, but its file is gone"
            else:
                detail = "pending"
            click.echo(f"{_MARKS[item.state]} {item.version} {item.name:<40} {detail}")
        click.echo(", ".join(f"{n} {state}" for state, n in counts.items()))
    if check and not status.clean:
        sys.exit(1)


def in_flight_state(runner: Runner, current: Event) -> tuple[bool | None, bool]:
    """After a stop: is the migration that was in flight recorded in the ledger (``None``:
    the ledger could not be read), and does it run in a transaction?"""
    try:
        applied = {int(v) for v in runner.read_applied()}
        recorded: bool | None = int(current.version or "-1") in applied
    except Exception:
        recorded = None
    finally:
        runner.db.dispose()
    transactional = next(
        (m.transactional for m in runner.migrations() if m.version == current.version), True
    )
    return recorded, transactional


def _interrupted(runner: Runner, stop: t.Any, current: Event | None, done: list[str]) -> Exception:
    """The message after SIGTERM/SIGINT: what was applied, what happened to the one in flight."""
    from .interrupt import RunInterrupted

    before = f"{len(done)} applied by this run ({', '.join(done)})" if done else "none applied"
    parts = [f"stopped by {stop.signal_name}: {before}"]
    if current is not None:
        label = f"{current.version}_{current.name}"
        recorded, transactional = in_flight_state(runner, current)
        if recorded:
            parts.append(f"{label} committed just before the signal and is applied")
        elif transactional:
            parts.append(f"{label} was rolled back and is not applied")
        else:
            parts.append(
                f"{label} runs outside a transaction and stopped between statements: the "
                "statements before stay done, it is not recorded as applied, and the next run "
                "runs it again from the start (its statements are idempotent)"
            )
        if recorded is None:
            parts.append("(the ledger could not be read to confirm)")
    parts.append(
        "the migration lease was released; run again to apply the rest"
        " (`status` shows where the database is)"
    )
    return RunInterrupted("; ".join(parts) + ".")
