"""``python -m flask_safe_migrate``: the commands that need no Flask app.

``verify`` reads files only, so CI can run it on any checkout without
importing (or configuring) the application; ``run`` and ``status`` take
``--url`` and ``--directory`` (see :mod:`.standalone`) for release jobs that
should not import the app.
"""

from __future__ import annotations

import click

from .cli import handle_errors
from .standalone import register
from .verify_command import VERIFY_HELP
from .verify_command import format_option
from .verify_command import paths_argument
from .verify_command import run_verify


@click.group(
    "flask_safe_migrate",
    help=(
        "flask-safe-migrate without a Flask app: give the database URL and the migrations "
        "directory.\n\nExit codes: 0 success; 1 the operation failed or a check found "
        "something; 2 usage, configuration or bad input."
    ),
)
def main() -> None:
    """The ``python -m flask_safe_migrate`` group."""


@main.command("verify", help=VERIFY_HELP + "\nDefault PATHS: ./migrations.")
@paths_argument
@format_option
@click.option(
    "--seed-max-rows",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    envvar="SAFE_MIGRATE_SEED_MAX_ROWS",
    help="Largest INSERT ... VALUES still counted as seed data ($SAFE_MIGRATE_SEED_MAX_ROWS).",
)
@click.option(
    "--retry-function",
    "retry_functions",
    multiple=True,
    metavar="NAME",
    help="Name of a function that retries database work (repeatable; execute_with_retry always counts).",
)
@handle_errors
def verify(
    paths: tuple[str, ...],
    output_format: str,
    seed_max_rows: int,
    retry_functions: tuple[str, ...],
) -> None:
    """Verify migrations and migration code, with no app."""
    run_verify(
        paths or ("migrations",),
        output_format=output_format,
        seed_max_rows=seed_max_rows,
        retry_functions=("execute_with_retry", *retry_functions),
    )


register(main)

if __name__ == "__main__":
    main(prog_name="python -m flask_safe_migrate")
