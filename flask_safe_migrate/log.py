"""The package's one logger, ``flask_safe_migrate``, with passwords masked.

The library never installs handlers; the application decides where logs go.
The redacting filter sits on the logger itself, so whatever handler the
application attaches only ever sees clean records.
"""

from __future__ import annotations

import logging

from .redact import RedactingFilter

logger = logging.getLogger("flask_safe_migrate")
if not any(isinstance(f, RedactingFilter) for f in logger.filters):
    logger.addFilter(RedactingFilter())
