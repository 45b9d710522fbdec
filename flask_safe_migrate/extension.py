"""The Flask extension object: binds settings to an app and registers the CLI."""

from __future__ import annotations

import dataclasses
import os
import sys
import typing as t
import weakref

from flask import Flask
from flask import current_app

from .config import PREFIX
from .config import Settings
from .config import load_settings
from .config import require_supported_backend
from .config import set_defaults
from .errors import ConfigError

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Engine

    from .database import MigrationDatabase
    from .loader import Migration
    from .runner import Event
    from .runner import Outcome
    from .runner import Runner
    from .runner import Status

EXTENSION_KEY = "safe_migrate"


@dataclasses.dataclass
class _AppState:
    settings: Settings
    db: SQLAlchemy | None
    directory: str


class SafeMigrate:
    """Safe, exactly-once migrations for a Flask app.

    Both Flask patterns work::

        safe_migrate = SafeMigrate(app, db)

        safe_migrate = SafeMigrate()
        def create_app():
            app = Flask(__name__)
            db.init_app(app)
            safe_migrate.init_app(app, db)

    :param app: bind now (or later with :meth:`init_app`).
    :param db: the Flask-SQLAlchemy object; its engine URL is the default
        migration URL. Found in ``app.extensions["sqlalchemy"]`` when omitted.
    :param directory: the migrations directory; overrides
        ``SAFE_MIGRATE_DIRECTORY``. Relative paths are relative to ``app.root_path``.
    :param command_name: name of the ``flask`` command group; ``""`` registers no CLI.
    """

    def __init__(
        self,
        app: Flask | None = None,
        db: SQLAlchemy | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        command_name: str = "safe-migrate",
    ) -> None:
        self.db = db
        self.directory = directory
        self.command_name = command_name
        self._states: weakref.WeakKeyDictionary[Flask, _AppState] = weakref.WeakKeyDictionary()
        self._held_errors: weakref.WeakKeyDictionary[Flask, ConfigError] = (
            weakref.WeakKeyDictionary()
        )
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        db: SQLAlchemy | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        """Validate the ``SAFE_MIGRATE_*`` config and register ``flask safe-migrate``.

        Call it after ``db.init_app(app)``. Config changes after this call are
        not seen. With ``SAFE_MIGRATE_AUTO_MIGRATE = True`` pending migrations
        are applied here, before the app serves.

        :raises ConfigError: a bad config value, or a second registration on ``app``.
            Under ``flask safe-migrate ...`` a bad value is held instead and
            reported by the command (``Error: ...``, exit code 2).
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigError(
                "A 'SafeMigrate' instance is already registered on this Flask app."
                " Import and use that instance instead of calling init_app twice."
            )
        set_defaults(app.config)
        try:
            settings = load_settings(app.config)
        except ConfigError as exc:
            if not self._running_own_command():
                raise
            # `flask` loads the app before it knows the subcommand, and shows
            # an error raised here as a traceback with exit code 1. Hold it
            # instead and register the group, so `flask safe-migrate <command>`
            # reports it like every other error: "Error: ..." (or the JSON
            # error document) and exit code 2.
            self._held_errors[app] = exc
            app.extensions[EXTENSION_KEY] = self
            from .cli import cli

            app.cli.add_command(cli, self.command_name)
            return
        db = db if db is not None else self.db
        if db is None:
            db = app.extensions.get("sqlalchemy")
        chosen = directory if directory is not None else self.directory
        path = os.fspath(chosen) if chosen is not None else settings.directory
        if not os.path.isabs(path):
            path = os.path.join(app.root_path, path)
        self._states[app] = _AppState(settings, db, os.path.normpath(path))
        app.extensions[EXTENSION_KEY] = self
        if self.command_name:
            from .cli import cli

            app.cli.add_command(cli, self.command_name)
        if settings.auto_migrate:
            from .boot import migrate_at_boot

            migrate_at_boot(self, app)

    def _running_own_command(self) -> bool:
        """Whether this process is running ``flask <command_name> ...``."""
        return bool(self.command_name) and self.command_name in sys.argv[1:]

    def held_config_error(self, app: Flask | None = None) -> ConfigError | None:
        """The config error ``init_app`` held back for the CLI to report, if any."""
        if app is None:
            app = t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
        return self._held_errors.get(app)

    # -- per-app state -------------------------------------------------------

    def _state(self, app: Flask | None = None) -> _AppState:
        if app is None:
            app = t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
        held = self._held_errors.get(app)
        if held is not None:
            raise held
        try:
            return self._states[app]
        except KeyError:
            raise ConfigError(
                "The current Flask app is not registered with this 'SafeMigrate' instance."
                " Did you forget to call 'init_app', or create several 'SafeMigrate' instances?"
            ) from None

    def settings(self, app: Flask | None = None) -> Settings:
        """The validated settings of ``app`` (default: the current app)."""
        return self._state(app).settings

    def migrations_directory(self, app: Flask | None = None) -> str:
        """Absolute path of the migrations directory."""
        return self._state(app).directory

    def migration_url(self, app: Flask | None = None, *, bind: str | None = None) -> URL:
        """The URL migrations connect to: ``SAFE_MIGRATE_DATABASE_URI``, else the db's.

        A separate URL lets migrations bypass a transaction pooler (e.g. a
        direct or session-mode port) while the app keeps using the pooler.
        When ``SAFE_MIGRATE_DATABASE_URI`` is a callable it is called here,
        each time: only commands that connect pay for it.
        """
        from .urls import normalize_url

        state = self._state(app)
        if bind is None and state.settings.database_uri:
            key = PREFIX + "DATABASE_URI"
            raw = state.settings.database_uri
            if callable(raw):
                raw = raw()  # a lazy URL: resolved only now that migrations need it
                if not isinstance(raw, str) or not raw.strip():
                    raise ConfigError(
                        f"{key}: the callable returned {type(raw).__name__}, not a database URL",
                        key=key,
                    )
            configured = normalize_url(raw, key=key)
            require_supported_backend(configured, key)
            return configured
        if state.db is None:
            raise ConfigError(
                "No database URL for migrations: pass the Flask-SQLAlchemy object"
                " (SafeMigrate(app, db)) or set SAFE_MIGRATE_DATABASE_URI."
            )
        the_app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        with the_app.app_context():
            engines = state.db.engines
            if bind not in engines:
                known = ", ".join(sorted(k for k in engines if k)) or "none"
                raise ConfigError(f"unknown bind {bind!r}; SQLALCHEMY_BINDS defines: {known}")
            url = engines[bind].url
        key = "SQLALCHEMY_DATABASE_URI" if bind is None else f"SQLALCHEMY_BINDS[{bind!r}]"
        normalized = normalize_url(url, key=key)
        require_supported_backend(normalized, key)
        return normalized

    def migration_backend(self, app: Flask | None = None, *, bind: str | None = None) -> str:
        """``postgresql`` or ``sqlite``: what migrations run on, without connecting.

        Unlike :meth:`migration_url` it does not call a lazy (callable)
        ``SAFE_MIGRATE_DATABASE_URI`` when the app's engine can tell: a
        separate migration URL reaches the same database by another route,
        so static commands (``verify``) never start a development server.
        """
        from .urls import normalize_url

        state = self._state(app)
        raw = state.settings.database_uri
        if bind is None and isinstance(raw, str) and raw:
            return normalize_url(raw, key=PREFIX + "DATABASE_URI").get_backend_name()
        if state.db is not None:
            the_app = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
            with the_app.app_context():
                engines = state.db.engines
                if bind in engines:
                    return engines[bind].url.get_backend_name()
        return self.migration_url(app, bind=bind).get_backend_name()

    def create_engine(self, app: Flask | None = None, *, bind: str | None = None) -> Engine:
        """A new NullPool engine for migrations; dispose it when done."""
        from .engines import create_migration_engine

        settings = self.settings(app)
        return create_migration_engine(
            self.migration_url(app, bind=bind), connect_timeout=settings.connect_timeout
        )

    def _directory_of(self, app: Flask | None, bind: str | None) -> str:
        directory = self.migrations_directory(app)
        return directory if bind is None else os.path.join(directory, bind)

    def _database(self, app: Flask | None, bind: str | None) -> MigrationDatabase:
        from .database import MigrationDatabase

        settings = self.settings(app)
        return MigrationDatabase(
            self.migration_url(app, bind=bind),
            ledger_table=settings.ledger_table,
            ledger_schema=settings.ledger_schema,
            connect_timeout=settings.connect_timeout,
        )

    def runner(self, app: Flask | None = None, *, bind: str | None = None) -> Runner:
        """A :class:`~.runner.Runner` for the app's migrations (or a bind's, from ``<directory>/<bind>``)."""
        from .runner import Runner

        settings = self.settings(app)
        directory = self._directory_of(app, bind)
        db = self._database(app, bind)
        return Runner(
            db,
            directory,
            policy=settings.retry_policy(),
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
            dedicated_url=bind is None and settings.database_uri is not None,
            lease_ttl=settings.lease_ttl,
        )

    def upgrade(
        self,
        app: Flask | None = None,
        *,
        to: str | None = None,
        bind: str | None = None,
        out_of_order: bool = False,
        on_event: t.Callable[[Event], None] | None = None,
    ) -> list[Outcome]:
        """Apply pending migrations, each exactly once; see :meth:`.Runner.run`.

        Sends the :mod:`.signals` (``migration_started``, ``migration_applied``,
        ``migration_failed``, ``run_finished``) with the app as sender.
        """
        from .signals import signalling

        sender = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        runner = self.runner(app, bind=bind)
        try:
            with signalling(sender, on_event, bind=bind) as relay:
                return runner.run(to=to, out_of_order=out_of_order, on_event=relay)
        finally:
            runner.db.dispose()

    def status(self, app: Flask | None = None, *, bind: str | None = None) -> Status:
        """Applied, pending, drifted and missing migrations (one query)."""
        runner = self.runner(app, bind=bind)
        try:
            return runner.status()
        finally:
            runner.db.dispose()

    def pending(self, app: Flask | None = None, *, bind: str | None = None) -> list[Migration]:
        """Migrations not yet applied (one query; applied files are not even read).

        Checksum drift of applied files does not show here: see :meth:`status`.
        """
        from .pending import pending_migrations

        return pending_migrations(
            self._database(app, bind),
            self._directory_of(app, bind),
            self.settings(app).retry_policy(),
        )
