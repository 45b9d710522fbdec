"""A small CRM (users, pipeline statuses, leads, notes) using flask-safe-migrate.

Run it::

    flask --app example_app safe-migrate run   # apply example_app/migrations
    flask --app example_app run

Without ``DATABASE_URL`` it uses the embedded development Postgres (the
``embedded`` extra), kept in the instance folder; set ``DATABASE_URL`` to use
your own server.
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
    app = Flask(__name__)
    app.config.from_prefixed_env("CRM")  # e.g. CRM_SAFE_MIGRATE_AUTO_MIGRATE=true
    if config:
        app.config.update(config)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = _database_url(app)

    # Order matters: safe_migrate.init_app reads the database URL from db's
    # engine, and with SAFE_MIGRATE_AUTO_MIGRATE it migrates right there, so
    # Flask-SQLAlchemy must be set up first.
    db.init_app(app)
    safe_migrate.init_app(app, db)

    from .views import bp

    app.register_blueprint(bp)
    return app


def _database_url(app: Flask) -> str:
    """``DATABASE_URL`` if set, else the embedded development database."""
    url = os.environ.get("DATABASE_URL")
    if url:
        from flask_safe_migrate.urls import normalize_url

        # Hosting providers hand out postgres://, which SQLAlchemy rejects, and
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; normalize_url
        # fixes the scheme and names a driver that is installed.
        return normalize_url(url, key="DATABASE_URL").render_as_string(hide_password=False)
    from flask_safe_migrate.embedded import embedded_database_url

    return embedded_database_url(app.instance_path)
