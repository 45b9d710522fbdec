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


def _package_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "flask_safe_migrate"]


def test_a_secret_in_a_logged_exception_message_is_masked(caplog) -> None:
    from flask_safe_migrate.log import logger

    register_secret("exc-message-s3cret")
    with caplog.at_level(logging.ERROR, logger="flask_safe_migrate"):
        try:
            raise RuntimeError("could not use postgresql://app:exc-message-s3cret@db/x")
        except RuntimeError:
            logger.exception("migration failed")
    (record,) = _package_records(caplog)
    assert "exc-message-s3cret" not in caplog.text
    assert "RuntimeError: could not use postgresql://app:***@db/x" in caplog.text
    assert record.exc_info is None  # no formatter can render the raw exception again
    assert "exc-message-s3cret" not in (record.exc_text or "")


def test_a_secret_deep_in_a_traceback_is_masked(caplog) -> None:
    # The secret is only in the chained cause and in a frame's source line,
    # never in the logged message.
    from flask_safe_migrate.log import logger

    register_secret("traceback-only-pw")

    def connect() -> None:
        raise ValueError("bad dsn: host=db password=traceback-only-pw")

    with caplog.at_level(logging.WARNING, logger="flask_safe_migrate"):
        try:
            try:
                connect()
            except ValueError as cause:
                raise RuntimeError("connecting failed") from cause
        except RuntimeError:
            logger.warning("retrying", exc_info=True)
    assert "traceback-only-pw" not in caplog.text
    assert "The above exception was the direct cause" in caplog.text
    assert "ValueError: bad dsn: host=db password=***" in caplog.text


def test_a_clean_traceback_keeps_its_exc_info(caplog) -> None:
    from flask_safe_migrate.log import logger

    with caplog.at_level(logging.WARNING, logger="flask_safe_migrate"):
        try:
            raise KeyError("nothing secret")
        except KeyError:
            logger.warning("oops", exc_info=True)
    (record,) = _package_records(caplog)
    assert record.exc_info is not None and "KeyError: 'nothing secret'" in caplog.text


def test_string_extra_fields_are_masked() -> None:
    # JSON log formatters print extra fields as they are.
    from flask_safe_migrate.log import logger

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            "attempt failed",
            extra={"error": "FATAL for postgresql://app:extra-s3cret@db/x", "attempt": 2},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (record,) = seen
    assert record.error == "FATAL for postgresql://app:***@db/x"  # type: ignore[attr-defined]
    assert record.attempt == 2  # type: ignore[attr-defined]
