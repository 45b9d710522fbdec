"""A small CRM (users, pipeline statuses, leads, notes) using flask-safe-migrate.

Run it::

    flask --app example_app safe-migrate run   # apply example_app/migrations
    flask --app example_app run

Without ``DATABASE_URL`` it uses the embedded development Postgres (the
``embedded`` extra), kept in the instance folder and started on first use;
set ``DATABASE_URL`` to use your own server.
"""

from __future__ import annotations

import os
import typing as t

from flask import Flask

from flask_safe_migrate import SafeMigrate

from .models import db

safe_migrate = SafeMigrate()


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    """Application factory (``flask --app example_app`` finds it by name).

    :param config: overrides, applied last; tests pass ``SQLALCHEMY_DATABASE_URI``
        and ``SAFE_MIGRATE_*`` keys here.
    """
    # CRM_INSTANCE_PATH moves the instance folder (and the embedded database
    # in it), e.g. for a throwaway copy in tests.
    app = Flask(__name__, instance_path=os.environ.get("CRM_INSTANCE_PATH") or None)
    app.config.from_prefixed_env("CRM")  # e.g. CRM_SAFE_MIGRATE_AUTO_MIGRATE=true
    if config:
        app.config.update(config)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        _configure_database(app)

    # Order matters: safe_migrate.init_app reads the database URL from db's
    # engine, and with SAFE_MIGRATE_AUTO_MIGRATE it migrates right there, so
    # Flask-SQLAlchemy must be set up first.
    db.init_app(app)
    safe_migrate.init_app(app, db)

    from .views import bp

    app.register_blueprint(bp)
    return app


def _configure_database(app: Flask) -> None:
    """``DATABASE_URL`` if set, else the embedded development database, started lazily."""
    url = os.environ.get("DATABASE_URL")
    if url:
        from flask_safe_migrate.urls import normalize_url

        # Hosting providers hand out postgres://, which SQLAlchemy rejects, and
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; normalize_url
        # fixes the scheme and names a driver that is installed.
        app.config["SQLALCHEMY_DATABASE_URI"] = normalize_url(
            url, key="DATABASE_URL"
        ).render_as_string(hide_password=False)
        return
    from flask_safe_migrate.embedded import EmbeddedDatabase

    # Nothing starts here: `flask --help` or `flask safe-migrate verify` never
    # needs the server. The app's engine starts it on its first connection,
    # `flask safe-migrate run` when it asks for the migration URL.
    embedded = EmbeddedDatabase(app.instance_path)
    app.config["SQLALCHEMY_DATABASE_URI"] = embedded.placeholder_url
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    options.setdefault("creator", embedded.connect)
    app.config.setdefault("SAFE_MIGRATE_DATABASE_URI", embedded.url)
