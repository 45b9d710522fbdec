"""What the extractors hand to the rules: SQL statements grouped in units.

A *unit* is what runs as one piece: a migration file, or one function of an
application module. Rules that look ahead ("a unique index later in the same
migration, or in the next migration on that table") walk units in order.
"""

from __future__ import annotations

import dataclasses
import typing as t

if t.TYPE_CHECKING:
    from ..sqlsplit import Statement

Node = dict[str, t.Any]

#: How a statement reaches the database. ``migration``: the runner runs it
#: (a ``.sql`` migration, or ``m.execute`` in a ``.py`` migration). ``retry``:
#: a call to a retry executor in application code (hand-written, or this
#: package's ``execute_with_retry``, neither of which is the runner), or an
#: ``execute(...)`` inside a hand-written retry loop or a retry function's body.
#: ``execute``: any other ``execute(...)`` call.
Via = t.Literal["migration", "retry", "execute"]
UnitKind = t.Literal["sql", "py-migration", "python"]


@dataclasses.dataclass(frozen=True, slots=True)
class SqlStatement:
    """One parsed SQL statement, where it is, and what is written around it.

    ``sql`` is the statement as written (placeholders as in the source).
    ``comment`` is the documentation on or right above it: ``--`` lines for
    SQL files, ``#`` lines above the call for Python. ``param_rows`` is how
    many parameter sets a Python call passes (a list literal of dicts runs
    the statement once per dict), ``None`` when that cannot be known.
    """

    path: str
    line: int
    sql: str
    node_type: str
    node: Node = dataclasses.field(repr=False, compare=False)
    via: Via
    comment: str = ""
    param_rows: int | None = 1
    raw: Statement | None = dataclasses.field(default=None, repr=False, compare=False)

    def short(self, width: int = 100) -> str:
        """The statement on one line, cut to ``width`` characters."""
        flat = " ".join(self.sql.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class Unit:
    """Statements that run as one piece, in order.

    ``transactional`` is ``None`` when it cannot be known statically (an
    application function: each call through a retry executor is its own
    transaction, anything else depends on the caller). ``group`` ties units
    whose order means something: the files of one directory, the
    functions of one module.
    """

    path: str
    label: str
    kind: UnitKind
    group: str
    transactional: bool | None
    statements: tuple[SqlStatement, ...]
    down: tuple[SqlStatement, ...] = ()
