"""``flask safe-migrate verify`` and the app-free ``python -m flask_safe_migrate verify``.

Both run :func:`flask_safe_migrate.verify.verify_paths` and print the
report. The verify package (and with it the SQL parser) is imported inside
the command, so loading the CLI costs nothing until verify runs.

Exit codes: 0 verified (warnings allowed); 1 an unsuppressed error finding;
2 usage: an unreadable path, a Python file that does not parse, an app whose
migrations database is not PostgreSQL. With ``--format json`` a usage error
is printed as a JSON document too (``{"ok": false, "error": {...}}``), so
that a tool reading the output always gets JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
import typing as t

import click

from .cli import cli
from .cli import emit_json
from .cli import error_document
from .cli import extension
from .cli import handle_errors
from .errors import ConfigError
from .errors import SafeMigrateError

if t.TYPE_CHECKING:
    from .extension import SafeMigrate

FORMATS = ("text", "json", "sarif")


@contextlib.contextmanager
def errors_as_json(output_format: str) -> t.Iterator[None]:
    """With ``--format json``, print an expected error as the JSON error document."""
    try:
        yield
    except SafeMigrateError as exc:
        if output_format != "json":
            raise
        emit_json({"ok": False, "error": error_document(exc)})
        sys.exit(exc.exit_code)


def run_verify(
    paths: t.Sequence[str],
    *,
    output_format: str,
    seed_max_rows: int,
    retry_functions: t.Sequence[str],
) -> None:
    """Verify ``paths``, print the report in ``output_format``, exit 1 when it fails."""
    from . import __version__
    from .verify import RULES
    from .verify import verify_paths
    from .verify.report import document
    from .verify.report import render_text
    from .verify.report import sarif

    report = verify_paths(paths, seed_max_rows=seed_max_rows, retry_functions=retry_functions)
    if output_format == "json":
        emit_json(document(report))
    elif output_format == "sarif":
        click.echo(json.dumps(sarif(report, RULES, version=__version__), indent=2))
    else:
        colour = sys.stdout.isatty()
        click.echo(render_text(report, colour=colour), color=colour)
    if not report.ok:
        sys.exit(report.exit_code)


format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people (colour only on a terminal), json for tools, sarif for code scanning.",
)
paths_argument = click.argument(
    "paths", nargs=-1, type=click.Path(exists=False, dir_okay=True, file_okay=True)
)

VERIFY_HELP = """Verify migrations statically: the three critical points, DML categories, lock safety.

PATHS are .sql files, .py files (migrations or application modules such as a
db_migrate.py) or directories. Exit 0 when verified (warnings allowed), 1 on
any unsuppressed error finding, 2 for an unreadable path or a Python file
that does not parse.
"""


def _migrations_backend(state: SafeMigrate) -> tuple[str, str] | None:
    """``(backend, config key)`` of the app's migrations database, when it can be told.

    Only the scheme of the URL is read: nothing connects, and the URL (which
    may hold a password) is never printed.
    """
    key = (
        "SAFE_MIGRATE_DATABASE_URI" if state.settings().database_uri else "SQLALCHEMY_DATABASE_URI"
    )
    try:
        return state.migration_backend(), key
    except ConfigError:
        pass  # no Flask-SQLAlchemy object: read the configured URL's scheme
    from flask import current_app

    for key in ("SAFE_MIGRATE_DATABASE_URI", "SQLALCHEMY_DATABASE_URI"):
        value = current_app.config.get(key)
        if isinstance(value, str) and value:  # a callable URL is not called here
            return value.split(":", 1)[0].split("+", 1)[0].lower(), key
    return None


def _require_postgres(state: SafeMigrate) -> None:
    """Refuse an app whose migrations run on SQLite: verify checks PostgreSQL SQL."""
    found = _migrations_backend(state)
    if found is None or found[0] in ("postgresql", "postgres"):
        return
    backend, key = found
    raise ConfigError(
        f"verify checks PostgreSQL migrations only, and this app's migrations database "
        f"({key}) is {backend}: its SQL, locks and transactions are not PostgreSQL's, so "
        "nothing verify proves would hold for it. To check migration files written for "
        "PostgreSQL anyway, run 'python -m flask_safe_migrate verify PATHS' (no app)",
        key=key,
    )


@cli.command("verify", help=VERIFY_HELP + "\nDefault PATHS: the configured migrations directory.")
@paths_argument
@format_option
@handle_errors
def verify_command(paths: tuple[str, ...], output_format: str) -> None:
    """``flask safe-migrate verify``: settings come from the app's config."""
    with errors_as_json(output_format):
        state = extension()
        settings = state.settings()
        _require_postgres(state)
        run_verify(
            paths or (state.migrations_directory(),),
            output_format=output_format,
            seed_max_rows=settings.seed_max_rows,
            # verify_paths adds these to execute_with_retry, which always counts
            retry_functions=settings.verify_retry_functions,
        )
