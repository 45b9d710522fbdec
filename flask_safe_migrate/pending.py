"""``pending()``: what is not applied yet, from one query and the names of the files.

An app may ask on every boot (or in a readiness probe), so this does only
what answering needs: the file names (the same name rules as every command),
one query for the applied versions, and reading the files that are not
applied, to return them. Applied files are not read or hashed: whether one
was edited since (checksum drift) is for ``status`` and ``run`` to say, and
does not make anything pending. The runner and SQL parsing are not imported.
"""

from __future__ import annotations

import os
import typing as t

from .executor import RetryPolicy
from .ledger import read_raw
from .ledger import read_versions_raw
from .loader import Migration
from .loader import find_files
from .loader import read_found

if t.TYPE_CHECKING:
    from .database import MigrationDatabase


def pending_migrations(
    db: MigrationDatabase, directory: str | os.PathLike[str], policy: RetryPolicy
) -> list[Migration]:
    """The migrations of ``directory`` not applied to ``db``, in order (one query).

    The same answer as ``Runner.status().pending``. A squash file that is
    not applied under its own version may count as applied through the
    versions it replaced: then the full status decides (a second query).

    :raises MigrationSourceError: a bad file name, a duplicate version, an
        unreadable unapplied file.
    :raises DatabaseRefused: the database refused the query (no such
        database, a bad password, no permission).
    """
    found = find_files(directory)
    versions = _applied_versions(db, policy)
    applied = {int(version) for version in versions or ()}
    todo = [read_found(directory, f) for f in found if f.number not in applied]
    if any(migration.squashes for migration in todo):
        from .runner import Runner

        return Runner(db, directory, policy=policy).status().pending
    return todo


def _applied_versions(db: MigrationDatabase, policy: RetryPolicy) -> set[str] | None:
    try:
        return read_raw(db, policy, read_versions_raw)
    except Exception as exc:
        from .runner import raise_refused

        raise_refused(db, exc, "reading the migration ledger")
