"""Passwords never reach output: URL, keyword and registered-secret forms."""

from __future__ import annotations

import logging

from flask_safe_migrate.redact import RedactingFilter
from flask_safe_migrate.redact import redact
from flask_safe_migrate.redact import register_secret


def test_url_passwords_are_masked() -> None:
    assert (
        redact("postgresql://app:s3cr3t@db:5432/x failed")
        == "postgresql://app:***@db:5432/x failed"
    )
    assert redact("postgres://u:p%40ss@h/d") == "postgres://u:***@h/d"


def test_keyword_passwords_are_masked() -> None:
    assert redact("host=db password=s3cr3t user=app") == "host=db password=*** user=app"
    assert redact("password='a b c' port=1") == "password=*** port=1"


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("correct-horse-battery")
    assert redact('auth for "correct-horse-battery" failed') == 'auth for "***" failed'


def test_urls_without_password_are_unchanged() -> None:
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"


def test_logging_filter_cleans_records() -> None:
    record = logging.LogRecord(
        "flask_safe_migrate",
        logging.WARNING,
        __file__,
        1,
        "url %s",
        ("postgresql://a:hush1234@h/d",),
        None,
    )
    RedactingFilter().filter(record)
    assert "hush1234" not in record.getMessage()


def test_the_package_logger_masks_passwords(caplog) -> None:
    from flask_safe_migrate.log import logger

    with caplog.at_level(logging.WARNING, logger="flask_safe_migrate"):
        logger.warning("connecting to %s", "postgresql://app:n0t-for-logs@db/x")
    assert "n0t-for-logs" not in caplog.text
    assert "postgresql://app:***@db/x" in caplog.text
