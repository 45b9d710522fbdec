"""``SAFE_MIGRATE_AUTO_MIGRATE``: apply pending migrations while the app starts.

Runs from ``init_app``. It costs one query when nothing is pending, uses its
own NullPool engine (disposed before returning, so nothing leaks into
workers forked after ``gunicorn --preload``), and is safe when a dozen
workers or replicas boot at once: one takes the lease and migrates, the
others wait for it and then find nothing left to do.

It does not run when Flask loads the app only to run a ``flask
safe-migrate`` command (Flask loads the app before it knows the
subcommand), nor in the reloader's watching parent process.
"""

from __future__ import annotations

import os
import sys
import typing as t

from .errors import SafeMigrateError
from .log import logger

if t.TYPE_CHECKING:
    from flask import Flask

    from .extension import SafeMigrate


def skip_reason(
    command_name: str, argv: t.Sequence[str], environ: t.Mapping[str, str]
) -> str | None:
    """Why auto-migrate must not run in this process, or ``None`` if it should.

    The reloader's parent only watches files; its child serves, so the child
    migrates. Werkzeug's own signal comes first: it starts that child with
    ``WERKZEUG_RUN_MAIN=true`` (what ``werkzeug.serving.is_running_from_reloader``
    reads), so a process that has it is the serving child, whatever its argv.
    The parent has no such signal while the app loads (it learns it will
    spawn a child only later), so for ``flask run`` it is recognised from argv
    and ``FLASK_DEBUG``. A script calling ``app.run(debug=True)`` cannot be
    told apart before ``app.run``: its parent migrates too, which is safe (the
    child then finds nothing pending, at the cost of one query).
    """
    args = list(argv[1:])
    if command_name and command_name in args:
        return f"the process is running `flask {command_name}`"
    if environ.get("SAFE_MIGRATE_SKIP_AUTO_MIGRATE") == "1":
        return "SAFE_MIGRATE_SKIP_AUTO_MIGRATE=1"
    if environ.get("WERKZEUG_RUN_MAIN") == "true":
        return None  # the reloader's serving child
    if "run" in args:
        reload_on = "--reload" in args or (
            ("--debug" in args or environ.get("FLASK_DEBUG", "").lower() in ("1", "true"))
            and "--no-reload" not in args
        )
        if reload_on:
            return "this is the reloader's watching process (the child process migrates)"
    return None


def migrate_at_boot(extension: SafeMigrate, app: Flask) -> None:
    """Apply pending migrations now, or raise (or log, if so configured)."""
    reason = skip_reason(extension.command_name, sys.argv, os.environ)
    if reason is not None:
        logger.debug("auto-migrate skipped: %s", reason)
        return
    settings = extension.settings(app)
    try:
        outcomes = extension.upgrade(app)
    except SafeMigrateError as exc:
        # Every expected failure is one: a migration's (MigrationError), the
        # retries' (RetriesExhausted), and a database refusing the run itself
        # (DatabaseRefused: no such database, bad password, no permission).
        if settings.auto_migrate_on_error == "log":
            logger.error("auto-migrate failed; the app starts anyway: %s", exc)
            return
        # The app must not serve on a half-migrated schema.
        raise
    applied = [o for o in outcomes if o.state == "applied"]
    if applied:
        logger.info(
            "auto-migrate applied %d migration(s): %s",
            len(applied),
            ", ".join(f"{o.version}_{o.name}" for o in applied),
        )
