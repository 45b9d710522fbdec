"""``python -m flask_safe_migrate``: the commands that need no Flask app.

``verify`` reads files only, so CI can run it on any checkout without
importing (or configuring) the application; ``run`` and ``status`` take
``--url`` and ``--directory`` (see :mod:`.standalone`) for release jobs that
should not import the app. All three accept ``--url URL --directory DIR``,
so one release-job command line works for each (``verify`` ignores the URL:
it never connects).

Usage errors (an unknown option, a missing ``--url``) are printed as the
group's usual one JSON document when the command line asks for JSON
(``--json``, ``--format json``), so a tool reading stdout always gets JSON.
"""

from __future__ import annotations

import typing as t

import click

from .cli import emit_json
from .cli import handle_errors
from .standalone import register
from .verify_command import VERIFY_HELP
from .verify_command import errors_as_json
from .verify_command import format_option
from .verify_command import paths_argument
from .verify_command import run_verify


def wants_json(args: t.Sequence[str]) -> bool:
    """Whether a command line asks for JSON output (``--json``, ``--format json``)."""
    for index, arg in enumerate(args):
        if arg == "--json" or arg == "--format=json":
            return True
        if arg == "--format" and index + 1 < len(args) and args[index + 1] == "json":
            return True
    return False


class JsonUsageGroup(click.Group):
    """A group whose usage errors are a JSON document when JSON was asked for."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["flask_safe_migrate.args"] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            self._json_usage_error(ctx, exc)
            raise

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            self._json_usage_error(ctx, exc)
            raise

    @staticmethod
    def _json_usage_error(ctx: click.Context, exc: click.UsageError) -> None:
        if not wants_json(ctx.meta.get("flask_safe_migrate.args", ())):
            return
        message = exc.format_message()
        if exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        emit_json(
            {
                "ok": False,
                "error": {"type": type(exc).__name__, "message": message, "exit_code": 2},
            }
        )
        ctx.exit(2)


@click.group(
    "flask_safe_migrate",
    cls=JsonUsageGroup,
    help=(
        "flask-safe-migrate without a Flask app: give the database URL and the migrations "
        "directory.\n\nExit codes: 0 success; 1 the operation failed or a check found "
        "something; 2 usage, configuration or bad input."
    ),
)
def main() -> None:
    """The ``python -m flask_safe_migrate`` group."""


@main.command(
    "verify",
    help=VERIFY_HELP + "\nDefault PATHS: --directory ($SAFE_MIGRATE_DIRECTORY), else ./migrations.",
)
@paths_argument
@format_option
@click.option(
    "--directory",
    envvar="SAFE_MIGRATE_DIRECTORY",
    type=click.Path(file_okay=False),
    help="The migrations directory, verified when no PATHS are given "
    "(default: $SAFE_MIGRATE_DIRECTORY, else migrations).",
)
@click.option(
    "--url",
    metavar="URL",
    help="Ignored: verify reads files and never connects. Accepted so that one "
    "`--url URL --directory DIR` command line works for run, status and verify.",
)
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
    directory: str | None,
    url: str | None,
    seed_max_rows: int,
    retry_functions: tuple[str, ...],
) -> None:
    """Verify migrations and migration code, with no app."""
    del url  # static: see the option's help
    with errors_as_json(output_format):  # --format json: an error is a JSON document too
        run_verify(
            paths or (directory or "migrations",),
            output_format=output_format,
            seed_max_rows=seed_max_rows,
            retry_functions=retry_functions,  # verify_paths adds execute_with_retry
        )


register(main)

if __name__ == "__main__":
    main(prog_name="python -m flask_safe_migrate")
