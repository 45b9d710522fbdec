"""``python -m flask_safe_migrate run|status --url URL --directory DIR``: no app import.

A release job (Kubernetes Job, Heroku release phase, a CI deploy step) often
should not import the application: importing it may connect to services,
read secrets or take seconds. These commands need only a URL and a
directory. Settings come from ``SAFE_MIGRATE_*`` environment variables,
validated exactly like the app config keys of the same names, so the job
retries and times out the same way the app would.

The URL is trusted to be a direct (or session-mode) connection, where a
no-transaction migration may set session timeouts, only when it says so:
it came from ``SAFE_MIGRATE_DATABASE_URI`` (the key meant for that), or
``--direct`` was given. A generic ``$DATABASE_URL`` (or a bare ``--url``) is
often a transaction pooler's (Heroku, Supabase), so there the runner checks
each connection itself, as the app does.
"""

from __future__ import annotations

import os
import typing as t

import click

from .cli import handle_errors

if t.TYPE_CHECKING:
    from .runner import Runner

_url_option = click.option(
    "--url",
    envvar=["SAFE_MIGRATE_DATABASE_URI", "DATABASE_URL"],
    required=True,
    metavar="URL",
    help="Database URL (default: $SAFE_MIGRATE_DATABASE_URI, then $DATABASE_URL).",
)
_directory_option = click.option(
    "--directory",
    envvar="SAFE_MIGRATE_DIRECTORY",
    default="migrations",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The migrations directory (default: $SAFE_MIGRATE_DIRECTORY).",
)


def url_source() -> str:
    """Where ``--url`` came from: ``--url``, ``SAFE_MIGRATE_DATABASE_URI`` or ``DATABASE_URL``."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.get_parameter_source("url") is not ParameterSource.ENVIRONMENT:
        return "--url"
    return (
        "SAFE_MIGRATE_DATABASE_URI"
        if os.environ.get("SAFE_MIGRATE_DATABASE_URI")
        else "DATABASE_URL"
    )


def make_runner(url: str, directory: str, *, source: str = "--url", direct: bool = False) -> Runner:
    """A :class:`.Runner` from a URL, a directory and ``SAFE_MIGRATE_*`` environment variables.

    :param source: where ``url`` came from, named in errors; from
        ``SAFE_MIGRATE_DATABASE_URI`` it counts as a direct connection.
    :param direct: the caller vouches that ``url`` bypasses any transaction pooler.
    :raises ConfigError: ``url`` is not a usable database URL (exit 2), naming ``source``.
    """
    from .config import DEFAULTS
    from .config import PREFIX
    from .config import load_settings
    from .database import MigrationDatabase
    from .runner import Runner

    # The URL is not a setting here: MigrationDatabase checks it like the app's
    # URLs (scheme, driver, backend), naming ``source`` in its errors.
    config = {
        PREFIX + key: os.environ[PREFIX + key]
        for key in DEFAULTS
        if key != "DATABASE_URI" and PREFIX + key in os.environ
    }
    config[PREFIX + "DIRECTORY"] = directory
    settings = load_settings(config)
    db = MigrationDatabase(
        url,
        ledger_table=settings.ledger_table,
        ledger_schema=settings.ledger_schema,
        connect_timeout=settings.connect_timeout,
        key=source,
    )
    return Runner(
        db,
        os.path.abspath(directory),
        policy=settings.retry_policy(),
        lock_timeout_ms=settings.lock_timeout_ms,
        statement_timeout_ms=settings.statement_timeout_ms,
        # Session settings are safe only where the URL is known to bypass a
        # transaction pooler; otherwise the runner checks each connection.
        dedicated_url=direct or source == "SAFE_MIGRATE_DATABASE_URI",
        lease_ttl=settings.lease_ttl,
    )


@click.command("run")
@_url_option
@_directory_option
@click.option("--to", "to", metavar="VERSION", help="Stop after this version (inclusive).")
@click.option("--out-of-order", is_flag=True, help="Also apply versions below applied ones.")
@click.option("--dry-run", is_flag=True, help="Show what would be applied; change nothing.")
@click.option(
    "--direct",
    is_flag=True,
    help="The URL bypasses any transaction pooler (direct or session mode), so no-transaction "
    "migrations may set session timeouts. Implied when the URL comes from "
    "$SAFE_MIGRATE_DATABASE_URI; otherwise each connection is checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@handle_errors
def run_command(
    url: str,
    directory: str,
    to: str | None,
    out_of_order: bool,
    dry_run: bool,
    direct: bool,
    as_json: bool,
) -> None:
    """Apply pending migrations, each exactly once (same as `flask safe-migrate run`)."""
    from .commands import execute_run

    execute_run(
        make_runner(url, directory, source=url_source(), direct=direct),
        to=to,
        out_of_order=out_of_order,
        dry_run=dry_run,
        as_json=as_json,
    )


@click.command("status")
@_url_option
@_directory_option
@click.option("--check", is_flag=True, help="Exit 1 if anything is pending, drifted or missing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@handle_errors
def status_command(url: str, directory: str, check: bool, as_json: bool) -> None:
    """Show applied, pending, drifted and missing migrations (same as `flask safe-migrate status`)."""
    from .commands import report_status

    runner = make_runner(url, directory, source=url_source())
    try:
        status = runner.status()
    finally:
        runner.db.dispose()
    report_status(status, check=check, as_json=as_json)


def register(group: click.Group) -> None:
    """Add ``run`` and ``status`` to the ``python -m flask_safe_migrate`` group."""
    group.add_command(run_command)
    group.add_command(status_command)
