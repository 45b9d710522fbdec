"""Keep passwords out of every message, log line and traceback we print.

Two layers, because a password can reach output in two shapes:

* inside a URL (``postgresql://user:secret@host/db``) or a libpq keyword
  string (``password=secret``): masked by pattern, whatever the password is;
* bare, after a driver quoted it somewhere: masked because every URL this
  package builds an engine from registers its password here first.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_secrets: set[str] = set()
_lock = threading.Lock()

# scheme://user:password@  -> scheme://user:***@
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)"
)
# password=secret / password='se cret' in libpq keyword strings and query strings
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&;]+)", re.IGNORECASE
)


def register_secret(secret: str | None) -> None:
    """Remember a password so that :func:`redact` masks it wherever it appears."""
    # Very short strings would mask ordinary words ("a", "pg"); a real
    # password that short is masked by the URL and keyword patterns anyway.
    if secret and len(secret) >= 4:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """Return ``text`` with every password we know of, or can recognise, masked."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


class RedactingFilter(logging.Filter):
    """A logging filter that masks passwords everywhere in a record.

    Installed on the ``flask_safe_migrate`` logger, so every record the
    package emits is clean whichever handler the application configured:
    the formatted message, the traceback of ``exc_info`` (a driver error
    may quote a URL), ``stack_info``, and string ``extra`` fields, which
    JSON log formatters print as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            # Format the traceback once, scrubbed; handlers print exc_text
            # instead of formatting exc_info again.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            if record.exc_text != formatted:
                # A formatter that renders exc_info itself would undo the
                # scrubbing: leave it only the clean text.
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value))
        return True
