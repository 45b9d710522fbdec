"""``flask safe-migrate``: a thin click layer over the extension's methods.

Commands print for people by default and one JSON document (with a
``schema_version``) with ``--json``. Errors the package raises on purpose
become ``Error: <message>`` on stderr with the exit code of their class
(see :mod:`.errors`); ``--traceback`` shows the traceback instead, with
passwords masked.

Exit codes, for every command: 0 success; 1 the operation failed, or a
check found something; 2 usage, configuration or bad input.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
import typing as t

import click
from flask import current_app
from flask.cli import AppGroup

from .classify import first_line
from .classify import is_database_error
from .errors import SafeMigrateError
from .redact import redact

if t.TYPE_CHECKING:
    from .extension import SafeMigrate

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: Bumped when a JSON output shape changes incompatibly.
SCHEMA_VERSION = 1


class CommandFailed(click.ClickException):
    """A :class:`SafeMigrateError` on its way out of the CLI."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


def handle_errors(func: F) -> F:
    """Turn expected errors into a message and an exit code; add ``--traceback``."""

    @click.option(
        "--traceback",
        "show_traceback",
        is_flag=True,
        help="Show the Python traceback of a failure (for debugging).",
    )
    @functools.wraps(func)
    def wrapper(*args: t.Any, show_traceback: bool = False, **kwargs: t.Any) -> t.Any:
        try:
            _raise_held_config_error()
            return func(*args, **kwargs)
        except SafeMigrateError as exc:
            if show_traceback:
                click.echo(redact("".join(traceback.format_exception(exc))), err=True)
            if kwargs.get("as_json"):
                emit_json({"ok": False, "error": error_document(exc)})
                sys.exit(exc.exit_code)
            raise CommandFailed(str(exc), exc.exit_code) from None
        except click.exceptions.ClickException:
            raise
        except BrokenPipeError:
            # The reader went away (`plan | head`): stop quietly, like other
            # command-line tools, instead of a traceback. Exit 1: the command
            # may not have finished.
            _stdout_to_devnull()
            sys.exit(1)
        except Exception as exc:
            if not is_database_error(exc):
                # A bug, not an expected failure: show the traceback, but
                # scrubbed, since it may quote a URL or connection string.
                click.echo(redact("".join(traceback.format_exception(exc))), err=True)
                raise CommandFailed(redact(f"unexpected error: {exc!r}"), 1) from None
            # A database refusing us (bad password, unknown database...) is an
            # expected failure: a message, not a traceback.
            if show_traceback:
                click.echo(redact("".join(traceback.format_exception(exc))), err=True)
            message = f"database error: {first_line(exc)}"
            if kwargs.get("as_json"):
                emit_json(
                    {
                        "ok": False,
                        "error": {
                            "type": type(exc).__name__,
                            "message": redact(message),
                            "exit_code": 1,
                        },
                    }
                )
                sys.exit(1)
            raise CommandFailed(redact(message), 1) from None

    return t.cast(F, wrapper)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so the final flush at exit cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


def _raise_held_config_error() -> None:
    """Report a bad ``SAFE_MIGRATE_*`` value that ``init_app`` held back for the CLI."""
    from flask import has_app_context

    if not has_app_context():
        return  # python -m flask_safe_migrate: no app
    ext = current_app.extensions.get("safe_migrate")
    held = getattr(ext, "held_config_error", None)
    error = held() if held is not None else None
    if error is not None:
        raise error


def error_document(exc: SafeMigrateError) -> dict[str, t.Any]:
    """An error as JSON: its class, message, exit code and where it happened."""
    document: dict[str, t.Any] = {
        "type": type(exc).__name__,
        "message": str(exc),
        "exit_code": exc.exit_code,
    }
    for field in ("version", "path", "key"):
        value = getattr(exc, field, None)
        if value is not None:
            document[field] = value
    return document


def emit_json(document: dict[str, t.Any]) -> None:
    """Print one JSON document, stamped with the schema version."""
    click.echo(json.dumps({"schema_version": SCHEMA_VERSION, **document}, indent=2, default=str))


def extension() -> SafeMigrate:
    """The app's :class:`SafeMigrate` (the group only exists on apps that have one)."""
    return t.cast("SafeMigrate", current_app.extensions["safe_migrate"])


@click.group(
    "safe-migrate",
    cls=AppGroup,
    help=(
        "Apply database migrations safely: exactly once, retried on a new connection when "
        "the pooler or network drops, and never left half-applied.\n\n"
        "Exit codes: 0 success; 1 the operation failed or a check found something; "
        "2 usage, configuration or bad input."
    ),
)
def cli() -> None:
    """The ``flask safe-migrate`` group."""
    _ensure_output_encoding()
    _quiet_unconfigured_logging()


def _quiet_unconfigured_logging() -> None:
    # Commands print every retry themselves; without this, Python's
    # last-resort handler would print each warning a second time. An app that
    # configured logging keeps receiving the records.
    import logging

    from .log import logger

    if not logging.getLogger().handlers and not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _ensure_output_encoding() -> None:
    # Status marks are not ASCII; never crash on a C-locale terminal.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (stream.encoding or "").lower() not in ("utf-8", "utf8"):
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _register_commands() -> None:
    from . import commands  # noqa: F401  (attaches run, status, ... to the group)
    from . import drill_command  # noqa: F401
    from . import verify_command  # noqa: F401
    from . import workflow_commands  # noqa: F401


_register_commands()
