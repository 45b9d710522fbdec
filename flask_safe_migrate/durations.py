"""Parse timeout values the way Postgres users write them.

Config keys and migration headers accept Postgres interval strings
(``"5s"``, ``"500ms"``, ``"2min"``) or integers meaning milliseconds, which
is what ``lock_timeout`` itself takes; ``0`` means "no timeout", as in Postgres.
"""

from __future__ import annotations

import re

_UNITS_MS = {
    "us": 0.001,
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}
_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>us|ms|s|sec|min|h|d)?\s*$")

ALLOWED = (
    "an integer number of milliseconds or a Postgres interval such as '500ms', '5s', '2min', '0'"
)


def parse_duration_ms(value: object) -> int:
    """Return ``value`` as whole milliseconds.

    :raises ValueError: with a message listing the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use {ALLOWED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative; use {ALLOWED}")
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            number = float(match["value"])
            unit = match["unit"] or "ms"
            return int(round(number * _UNITS_MS[unit]))
    raise ValueError(f"{value!r} is not a duration; use {ALLOWED}")


def format_ms(milliseconds: int) -> str:
    """Render milliseconds as a Postgres setting value (``'2000ms'``)."""
    return f"{int(milliseconds)}ms"
