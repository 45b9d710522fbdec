"""Parse timeout values the way Postgres users write them.

Config keys and migration headers accept Postgres interval strings
(``"5s"``, ``"500ms"``, ``"2min"``) or integers meaning milliseconds, which
is what ``lock_timeout`` itself takes; ``0`` means "no timeout", as in Postgres.

A positive value that rounds to 0 ms (``"1us"``, ``"500us"``) is refused:
Postgres would round it to 0 too and so silently switch the timeout off, the
opposite of what was asked. Fractions of a millisecond otherwise round to the
nearest one, half to even, as Postgres does (``"1500us"`` and ``"2500us"``
are 2 ms).
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
    "an integer number of milliseconds or a Postgres interval such as '500ms', '5s', '2min';"
    " '0' for no timeout, otherwise at least '1ms'"
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
            milliseconds = int(round(number * _UNITS_MS[unit]))
            if milliseconds == 0 and number > 0:
                raise ValueError(
                    f"{value!r} is less than 1 ms, which Postgres rounds to 0 (no timeout);"
                    f" use {ALLOWED}"
                )
            return milliseconds
    raise ValueError(f"{value!r} is not a duration; use {ALLOWED}")


def format_ms(milliseconds: int) -> str:
    """Render milliseconds as a Postgres setting value (``'2000ms'``)."""
    return f"{int(milliseconds)}ms"
