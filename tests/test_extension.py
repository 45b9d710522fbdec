"""Binding the extension: both Flask patterns, config defaults and validation, the CLI group."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import flask_safe_migrate
from flask_safe_migrate import ConfigError
from flask_safe_migrate import SafeMigrate
from flask_safe_migrate.config import DEFAULTS
from tests.example_cli import example_app_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    app.config.update(config)
    return app


def test_direct_pattern_stores_itself_and_defaults_every_key(tmp_path) -> None:
    app = make_app()
    db = SQLAlchemy(app)
    ext = SafeMigrate(app, db)
    assert app.extensions["safe_migrate"] is ext
    for key, value in DEFAULTS.items():
        assert app.config[f"SAFE_MIGRATE_{key}"] == value
    settings = ext.settings(app)
    assert settings.max_attempts == 10 and settings.ledger_table == "safe_migrate_ledger"
    assert settings.lock_timeout_ms == 2000
    assert ext.migrations_directory(app) == f"{app.root_path}/migrations"


def test_factory_pattern_keeps_state_per_app(tmp_path) -> None:
    db = SQLAlchemy()
    ext = SafeMigrate(directory="shared_dir")
    first, second = make_app(SAFE_MIGRATE_MAX_ATTEMPTS=3), make_app(SAFE_MIGRATE_MAX_ATTEMPTS=7)
    for app in (first, second):
        db.init_app(app)
        ext.init_app(app)
    assert ext.settings(first).max_attempts == 3
    assert ext.settings(second).max_attempts == 7
    with second.app_context():
        assert ext.settings().max_attempts == 7
        assert ext.migrations_directory().endswith("shared_dir")
    assert str(ext.migration_url(first)) == "sqlite://"


def test_init_app_directory_argument_wins_over_config(tmp_path) -> None:
    app = make_app(SAFE_MIGRATE_DIRECTORY="from_config")
    SQLAlchemy(app)
    ext = SafeMigrate()
    ext.init_app(app, directory=tmp_path / "from_arg")
    assert ext.migrations_directory(app) == str(tmp_path / "from_arg")


def test_db_is_found_in_app_extensions() -> None:
    app = make_app()
    SQLAlchemy(app)
    ext = SafeMigrate(app)
    assert ext.migration_url(app).get_backend_name() == "sqlite"


def test_registering_twice_is_a_clear_error() -> None:
    app = make_app()
    SafeMigrate(app)
    with pytest.raises(ConfigError, match="already registered on this Flask app"):
        SafeMigrate(app)
    with pytest.raises(RuntimeError):  # ConfigError is a RuntimeError, as in Flask-SQLAlchemy
        SafeMigrate().init_app(app)


def test_unregistered_app_is_a_clear_error() -> None:
    ext = SafeMigrate()
    with pytest.raises(ConfigError, match="forget to call 'init_app'"):
        ext.settings(make_app())


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("MAX_ATTEMPTS", 0, "SAFE_MIGRATE_MAX_ATTEMPTS = 0 is invalid: use a whole number >= 1"),
        ("MAX_ATTEMPTS", "ten", "SAFE_MIGRATE_MAX_ATTEMPTS = 'ten' is invalid"),
        (
            "BACKOFF_BASE",
            "fast",
            "SAFE_MIGRATE_BACKOFF_BASE = 'fast' is invalid: use a number of seconds",
        ),
        ("BACKOFF_CAP", 0.1, "must be >= SAFE_MIGRATE_BACKOFF_BASE"),
        ("DEADLINE", -5, "SAFE_MIGRATE_DEADLINE = -5 is invalid"),
        (
            "LOCK_TIMEOUT",
            "5 parsecs",
            "SAFE_MIGRATE_LOCK_TIMEOUT = '5 parsecs' is invalid: use an integer number of milliseconds or a Postgres interval",
        ),
        ("STATEMENT_TIMEOUT", "soon", "SAFE_MIGRATE_STATEMENT_TIMEOUT"),
        ("LEDGER_TABLE", "Robert'); DROP TABLE students;--", "use a lower-case SQL identifier"),
        (
            "AUTO_MIGRATE",
            "perhaps",
            "SAFE_MIGRATE_AUTO_MIGRATE = 'perhaps' is invalid: use True or False",
        ),
        ("AUTO_MIGRATE_ON_ERROR", "ignore", "use 'raise'"),
        (
            "DATABASE_URI",
            "not a url",
            "SAFE_MIGRATE_DATABASE_URI: 'not a url' is not a database URL",
        ),
        ("DATABASE_URI", "postgresql+asyncpg://u@h/db", "driver 'asyncpg' is not supported"),
        (
            "DATABASE_URI",
            "bogus://x",
            "SAFE_MIGRATE_DATABASE_URI = 'bogus://x' is invalid: the 'bogus' backend is not"
            " supported; use a postgresql:// (or postgres://) or sqlite:// URL",
        ),
        ("DATABASE_URI", "mysql://app:pw12345@h/d", "the 'mysql' backend is not supported"),
        ("DIRECTORY", 42, "SAFE_MIGRATE_DIRECTORY = 42 is invalid"),
        ("RETRIES", 3, "unknown config key SAFE_MIGRATE_RETRIES"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(
    key: str, value: object, expected: str
) -> None:
    app = make_app(**{f"SAFE_MIGRATE_{key}": value})
    with pytest.raises(ConfigError) as info:
        SafeMigrate(app)
    assert expected in str(info.value)
    assert info.value.exit_code == 2
    assert "safe_migrate" not in app.extensions  # nothing half-registered


def test_timeouts_accept_intervals_and_milliseconds() -> None:
    app = make_app(SAFE_MIGRATE_LOCK_TIMEOUT=750, SAFE_MIGRATE_STATEMENT_TIMEOUT="2min")
    settings = SafeMigrate(app).settings(app)
    assert settings.lock_timeout_ms == 750
    assert settings.statement_timeout_ms == 120_000


def test_a_bad_url_never_shows_its_password() -> None:
    app = make_app(SAFE_MIGRATE_DATABASE_URI="postgresql+nodriver://app:tops3cret@h/db")
    with pytest.raises(ConfigError) as info:
        SafeMigrate(app)
    assert "tops3cret" not in str(info.value)


def test_postgres_scheme_is_accepted_for_our_engines() -> None:
    app = make_app(SAFE_MIGRATE_DATABASE_URI="postgres://app:pw12345@db.example:6543/prod")
    ext = SafeMigrate(app)
    url = ext.migration_url(app)
    assert url.drivername in ("postgresql+psycopg2", "postgresql+psycopg")
    assert url.port == 6543 and url.database == "prod"


def test_a_callable_database_uri_is_resolved_only_when_a_url_is_needed(tmp_path) -> None:
    calls: list[int] = []

    def lazy_url() -> str:
        calls.append(1)
        return f"sqlite:///{tmp_path}/lazy.db"

    app = make_app(SAFE_MIGRATE_DATABASE_URI=lazy_url)
    ext = SafeMigrate(app, SQLAlchemy(app))
    assert calls == []  # init_app validated without calling it
    assert ext.migration_backend(app) == "sqlite"  # from the app's engine: still not called
    assert calls == []
    assert ext.migration_url(app).database.endswith("lazy.db")
    assert calls == [1]

    bad = make_app(SAFE_MIGRATE_DATABASE_URI=lambda: 42)
    with pytest.raises(ConfigError, match="the callable returned int, not a database URL"):
        SafeMigrate(bad).migration_url(bad)
    wrong_backend = make_app(SAFE_MIGRATE_DATABASE_URI=lambda: "mysql://u:pw12345@h/d")
    with pytest.raises(ConfigError, match="'mysql' backend is not supported"):
        SafeMigrate(wrong_backend).migration_url(wrong_backend)


def test_binds_resolve_and_unknown_bind_is_clear(tmp_path) -> None:
    app = make_app(SQLALCHEMY_BINDS={"audit": f"sqlite:///{tmp_path}/audit.db"})
    db = SQLAlchemy(app)
    ext = SafeMigrate(app, db)
    assert ext.migration_url(app, bind="audit").database.endswith("audit.db")
    with pytest.raises(ConfigError, match="unknown bind 'nope'; SQLALCHEMY_BINDS defines: audit"):
        ext.migration_url(app, bind="nope")


def test_every_migration_url_must_be_a_supported_backend() -> None:
    # The same check guards the app's own URL and `python -m ... --url`.
    from flask_safe_migrate.database import MigrationDatabase

    with pytest.raises(ConfigError) as info:
        MigrationDatabase("mysql://app:pw12345@h/d", key="SQLALCHEMY_DATABASE_URI")
    assert str(info.value) == (
        "SQLALCHEMY_DATABASE_URI = 'mysql://app:***@h/d' is invalid: the 'mysql' backend is not"
        " supported; use a postgresql:// (or postgres://) or sqlite:// URL."
    )
    assert info.value.key == "SQLALCHEMY_DATABASE_URI"


def _flask(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The example app's real ``flask`` command on SQLite (never the embedded server)."""
    return example_app_cli(*args, DATABASE_URL=f"sqlite:///{tmp_path}/app.db", **env)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "MAX_ATTEMPTS",
            "0",
            "Error: SAFE_MIGRATE_MAX_ATTEMPTS = 0 is invalid: use a whole number",
        ),
        ("DATABASE_URI", "bogus://x", "Error: SAFE_MIGRATE_DATABASE_URI = 'bogus://x' is invalid"),
        (
            "DATABASE_URI",
            "mysql://app:pw-never-shown@h/d",
            "Error: SAFE_MIGRATE_DATABASE_URI = 'mysql://app:***@h/d' is invalid: the 'mysql'"
            " backend is not supported; use a postgresql:// (or postgres://) or sqlite:// URL.",
        ),
    ],
)
def test_bad_config_under_the_real_flask_cli_is_an_error_with_exit_2(
    tmp_path, key: str, value: str, expected: str
) -> None:
    # init_app raises while `flask` loads the app, before it knows the command:
    # the error is held and reported by the command, not as a traceback.
    result = _flask(tmp_path, "safe-migrate", "status", **{f"CRM_SAFE_MIGRATE_{key}": value})
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "pw-never-shown" not in result.stderr

    as_json = _flask(
        tmp_path, "safe-migrate", "status", "--json", **{f"CRM_SAFE_MIGRATE_{key}": value}
    )
    assert as_json.returncode == 2, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["schema_version"] == 1 and document["ok"] is False
    assert document["error"]["type"] == "ConfigError"
    assert document["error"]["exit_code"] == 2
    assert document["error"]["key"] == f"SAFE_MIGRATE_{key}"
    assert "pw-never-shown" not in as_json.stdout + as_json.stderr


def test_bad_config_outside_safe_migrate_commands_still_raises(tmp_path) -> None:
    # Any other way of starting the app must not start on a bad config.
    result = _flask(tmp_path, "routes", CRM_SAFE_MIGRATE_MAX_ATTEMPTS="0")
    assert result.returncode != 0
    assert "ConfigError: SAFE_MIGRATE_MAX_ATTEMPTS = 0 is invalid" in result.stderr


def test_cli_group_is_registered_and_help_reads_well() -> None:
    app = make_app()
    SafeMigrate(app)
    result = app.test_cli_runner().invoke(args=["safe-migrate", "--help"])
    assert result.exit_code == 0
    assert "Apply database migrations safely" in result.output
    assert "Exit codes: 0 success; 1" in result.output


def test_command_name_can_be_changed_or_disabled() -> None:
    app = make_app()
    SafeMigrate(app, command_name="migrations")
    assert "migrations" in app.cli.commands
    other = make_app()
    SafeMigrate(other, command_name="")
    assert "safe-migrate" not in other.cli.commands


def test_public_api_is_exported_and_sorted() -> None:
    public = sorted(
        (
            name
            for name, value in vars(flask_safe_migrate).items()
            if not name.startswith("_")
            and getattr(value, "__module__", "").startswith("flask_safe_migrate")
        ),
        key=str.casefold,
    )
    assert flask_safe_migrate.__all__ == sorted(flask_safe_migrate.__all__)
    assert set(public) <= set(flask_safe_migrate.__all__)


def test_booting_an_app_imports_neither_the_sql_parser_nor_alembic(tmp_path) -> None:
    # The boot path: import, init_app with the CLI registered, and an
    # auto-migrate boot that finds nothing pending (one query).
    (tmp_path / "migrations").mkdir()
    code = f"""
import sys
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
import flask_safe_migrate
after_import = {{m for m in ("pgparse", "alembic") if m in sys.modules}}
app = Flask("boot")
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///{tmp_path}/boot.db"
app.config["SAFE_MIGRATE_DIRECTORY"] = "{tmp_path}/migrations"
app.config["SAFE_MIGRATE_AUTO_MIGRATE"] = True
db = SQLAlchemy(app)
ext = flask_safe_migrate.SafeMigrate(app, db)
assert "safe-migrate" in app.cli.commands
assert ext.pending(app) == []
print(sorted(after_import), sorted(m for m in ("pgparse", "alembic") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.split() == ["[]", "[]"], out


def test_a_ledger_table_name_too_long_for_its_lease_table_is_refused() -> None:
    longest = "l" * 57  # "<name>_lease" is exactly 63 bytes
    app = make_app(SAFE_MIGRATE_LEDGER_TABLE=longest)
    assert SafeMigrate(app).settings(app).ledger_table == longest
    with pytest.raises(ConfigError) as info:
        SafeMigrate(make_app(SAFE_MIGRATE_LEDGER_TABLE="l" * 58))
    assert "SAFE_MIGRATE_LEDGER_TABLE" in str(info.value)
    assert "use at most 57 characters: the lease table is named '<name>_lease'" in str(info.value)
