"""``squash --to VERSION``: one file for an old prefix of the history, for new databases.

A long-lived project accumulates hundreds of migrations that every new
database (CI, a developer laptop, a preview environment) replays one by one.
``squash`` replaces the files up to VERSION with one SQL file, while
databases that already applied them keep working, untouched:

* the new file takes the last squashed version (``0040_squashed.sql`` for
  ``--to 0040``) and lists the versions it replaces in its header,
  ``-- safe-migrate: squashes=0001,0002,...,0040``; its body is the up parts
  of those files, statement by statement, in order;
* the original files move to ``<directory>/squashed/`` (a directory, which
  the loader never reads), so the history stays in the repository;
* a database whose ledger has every listed version counts the squash file as
  applied (``status`` shows it applied, ``run`` skips it) and its old rows are
  never reported missing; nothing is written to its ledger;
* a new database runs the squash file in one transaction and records one row,
  the squash file's version with its checksum;
* a database that applied only some of the listed versions cannot use the
  file (it would recreate what exists): ``run`` refuses and says which are
  missing, to be applied with the release before the squash.

Only transactional ``.sql`` migrations can be squashed: a Python migration's
SQL is only known when it runs, and a no-transaction file's statements
(``CREATE INDEX CONCURRENTLY``) cannot run in the squash file's transaction.
Squash up to the version before such a file. Down parts are not carried over:
rolling back below a squash is not possible on new databases.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

from .bookkeeping import find_file
from .errors import BadInputError
from .loader import Migration
from .loader import discover

#: Where the replaced files go, inside the migrations directory.
ARCHIVE = "squashed"

_DIRECTIVE = re.compile(r"(--\s*)safe-migrate(\s*:)")


@dataclasses.dataclass(frozen=True, slots=True)
class Squashed:
    """What :func:`squash` did."""

    path: pathlib.Path
    replaced: tuple[Migration, ...]
    archive: pathlib.Path
    statements: int


def render(prefix: list[Migration], dialect: str = "postgresql") -> tuple[str, int]:
    """The squash file's text for ``prefix`` (validated) and its number of statements."""
    versions = ",".join(m.version for m in prefix)
    last = prefix[-1]
    lines = [
        f"-- safe-migrate: squashes={versions}",
        "--",
        f"-- Written by `flask safe-migrate squash --to {last.version}`: the up parts of the"
        f" {len(prefix)} migrations",
        f"-- below, in order (the files themselves are in {ARCHIVE}/). A database that applied",
        "-- all of them counts this file as applied; a new database runs this file instead.",
        "-- Do not edit it once deployed: its checksum is recorded like any migration's.",
        "",
    ]
    count = 0
    for migration in prefix:
        lines.append(f"-- {migration.path.name}")
        for statement in migration.statements(dialect=dialect):
            # Directives of the original (lock-timeout...) must not act here, after SQL.
            sql = _DIRECTIVE.sub(r"\1safe_migrate (from the squashed file)\2", statement.sql)
            end = "\n;" if "--" in sql.rsplit("\n", 1)[-1] else ";"
            lines.append(sql + end)
            count += 1
        lines.append("")
    return "\n".join(lines), count


def squash(directory: str | os.PathLike[str], to: str, *, dialect: str = "postgresql") -> Squashed:
    """Replace the migrations up to ``to`` with one squash file; see the module docstring.

    Nothing is touched when anything is refused: every check runs, and the
    new text is built, before the first file moves.

    :raises BadInputError: fewer than two files to squash, a ``.py`` or
        no-transaction migration among them, or a name already in ``squashed/``.
    """
    root = pathlib.Path(directory)
    migrations = discover(root)
    target = find_file(migrations, to)
    prefix = [m for m in migrations if m.number <= target.number]
    if len(prefix) < 2:
        raise BadInputError(
            f"squash --to {to}: only {len(prefix)} migration up to {to}; nothing to squash"
        )
    for position, migration in enumerate(prefix):
        why = None
        if migration.kind == "py":
            why = "is a Python migration (its SQL is only known when upgrade(m) runs)"
        elif not migration.transactional:
            why = (
                "runs without a transaction (-- safe-migrate: no-transaction); its statements"
                " cannot run inside the squash file's transaction"
            )
        if why is not None:
            before = (
                f"squash up to the version before it (--to {prefix[position - 1].version})"
                if position >= 2
                else "there is nothing before it to squash"
            )
            raise BadInputError(
                f"{migration.path}: {why}, so it cannot be squashed; {before}, or rewrite it"
                " as a transactional .sql migration. Nothing was changed."
            )
    text, count = render(prefix, dialect)
    archive = root / ARCHIVE
    taken = [m.path.name for m in prefix if (archive / m.path.name).exists()]
    if taken:
        raise BadInputError(
            f"{archive}: already holds {', '.join(taken)}; move those away first."
            " Nothing was changed."
        )
    path = root / f"{target.version}_squashed.sql"
    archive.mkdir(exist_ok=True)
    moved: list[Migration] = []
    try:
        for migration in prefix:
            os.replace(migration.path, archive / migration.path.name)
            moved.append(migration)
        with open(path, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except BaseException:
        for migration in moved:  # put everything back as it was
            os.replace(archive / migration.path.name, migration.path)
        raise
    return Squashed(path, tuple(prefix), archive, count)
