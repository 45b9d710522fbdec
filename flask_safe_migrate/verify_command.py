"""``flask safe-migrate verify`` and the app-free ``python -m flask_safe_migrate verify``.

Both run :func:`flask_safe_migrate.verify.verify_paths` and print the
report. The verify package (and with it the SQL parser) is imported inside
the command, so loading the CLI costs nothing until verify runs.

Exit codes: 0 verified (warnings allowed); 1 an unsuppressed error finding;
2 usage: an unreadable path, a Python file that does not parse.
"""

from __future__ import annotations

import json
import sys
import typing as t

import click

from .cli import cli
from .cli import emit_json
from .cli import extension
from .cli import handle_errors

FORMATS = ("text", "json", "sarif")


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


@cli.command("verify", help=VERIFY_HELP + "\nDefault PATHS: the configured migrations directory.")
@paths_argument
@format_option
@handle_errors
def verify_command(paths: tuple[str, ...], output_format: str) -> None:
    """``flask safe-migrate verify``: settings come from the app's config."""
    state = extension()
    settings = state.settings()
    run_verify(
        paths or (state.migrations_directory(),),
        output_format=output_format,
        seed_max_rows=settings.seed_max_rows,
        # configured names add to execute_with_retry, they never replace it
        retry_functions=tuple(
            dict.fromkeys(("execute_with_retry", *settings.verify_retry_functions))
        ),
    )
