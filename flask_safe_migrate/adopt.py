"""``adopt-alembic``: move a Flask-Migrate / Alembic project over without re-running anything.

An existing database was built by Alembic and says so in its
``alembic_version`` table. Adopting it means two things:

1. migration files that build the same schema on a *new* database, made
   with Alembic's own offline (``--sql``) rendering of the history, so the
   DDL is exactly what Alembic would have run (no hand-written translation);
2. a ledger on the *existing* database that records those files as applied
   without running them (a baseline), so ``run`` has nothing to do there.

Three ways to get the files:

* default: one file, ``0001_alembic_baseline.sql``, with the whole history
  up to the database's revision (which must be Alembic's head);
* ``convert=True``: one file per Alembic revision, in order, named after the
  revision's message; revisions above the database's revision are converted
  too and stay pending, so ``run`` applies them like any new migration;
* ``baseline=VERSION``: you wrote the baseline yourself (e.g. from
  ``pg_dump --schema-only``); it and every file below it are recorded.

Alembic's bookkeeping statements (``alembic_version``, ``BEGIN``/``COMMIT``)
are left out of the files; the existing ``alembic_version`` table is left
alone, so Flask-Migrate keeps working until every environment has moved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import re
import typing as t

from .bookkeeping import baseline as record_baseline
from .errors import BadInputError
from .executor import run_with_retry
from .loader import Migration
from .sqlsplit import split_sql

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .runner import Runner

_RUNNING = re.compile(r"^-- Running upgrade (?P<down>.*?) -> (?P<rev>\S+)\s*$", re.MULTILINE)
_TRANSACTION = re.compile(r"^\s*(BEGIN|COMMIT|START\s+TRANSACTION)\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class Revision:
    """One Alembic revision, rendered as SQL statements (bookkeeping removed)."""

    revision: str
    message: str
    statements: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Adopted:
    """What :func:`adopt` did."""

    alembic_revision: str
    written: tuple[pathlib.Path, ...]
    recorded: tuple[Migration, ...]


def alembic_revisions(runner: Runner, version_table: str = "alembic_version") -> list[str]:
    """The revision(s) in the database's ``alembic_version`` table.

    :raises BadInputError: the table does not exist (nothing to adopt).
    """
    import sqlalchemy as sa

    def work(conn: Connection) -> list[str] | None:
        if not sa.inspect(conn).has_table(version_table):
            return None
        return [
            str(row[0]) for row in conn.exec_driver_sql(f"SELECT version_num FROM {version_table}")
        ]

    found, _ = run_with_retry(
        runner.db.engine, work, policy=runner.policy, label=f"reading {version_table}"
    )
    if found is None:
        raise BadInputError(
            f"the database has no {version_table} table: it was not built by Alembic /"
            " Flask-Migrate, so there is nothing to adopt. Record an existing schema with"
            " `flask safe-migrate baseline VERSION` instead."
        )
    return found


@contextlib.contextmanager
def _logging_kept() -> t.Iterator[None]:
    """Undo what an ``env.py``'s ``fileConfig()`` does to the app's logging.

    Alembic's template calls ``logging.config.fileConfig``, which replaces the
    root handlers and disables every logger it does not name, ours included.
    """
    manager = logging.Logger.manager
    disabled = {
        name: item.disabled
        for name, item in manager.loggerDict.items()
        if isinstance(item, logging.Logger)
    }
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for name, was in disabled.items():
            item = manager.loggerDict.get(name)
            if isinstance(item, logging.Logger):
                item.disabled = was
        root.handlers[:] = handlers
        root.setLevel(level)


def render_history(
    runner: Runner, alembic: str | os.PathLike[str], target: str, *, version_table: str
) -> list[Revision]:
    """Alembic's offline rendering of base -> ``target``, cut into revisions."""
    try:
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory
    except ImportError:
        raise BadInputError(
            "adopt-alembic renders the Alembic history with Alembic itself: pip install alembic"
            " (Flask-Migrate projects have it already)"
        ) from None
    path = pathlib.Path(alembic)
    buffer = io.StringIO()
    if path.is_dir():  # a script directory, e.g. Flask-Migrate's migrations/
        ini = path / "alembic.ini"
        config = Config(str(ini) if ini.is_file() else None, output_buffer=buffer)
        config.set_main_option("script_location", str(path))
    elif path.is_file():
        config = Config(str(path), output_buffer=buffer)
    else:
        raise BadInputError(
            f"{path}: no such Alembic config file or script directory; pass --alembic PATH"
            " (an alembic.ini, or Flask-Migrate's migrations/ directory)"
        )
    # Offline rendering needs only the dialect: no password is handed over.
    url = runner.db.url.set(password=None).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    from alembic.util import CommandError

    try:
        script = ScriptDirectory.from_config(config)
        with _logging_kept():
            command.upgrade(config, target, sql=True)
    except CommandError as exc:
        raise BadInputError(f"Alembic could not render the history: {exc}") from exc
    except Exception as exc:
        # Offline rendering has no connection: a revision that reads the
        # database (op.get_bind().execute(...).scalar(), common in data
        # migrations) fails here. Alembic announces each revision before
        # running it, so the last announcement names the culprit.
        raise _unrenderable(buffer.getvalue(), _script_or_none(config), exc) from exc
    output = buffer.getvalue()
    marks = list(_RUNNING.finditer(output))
    revisions = []
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(output)
        chunk = output[mark.end() : end]
        statements = tuple(
            statement.sql
            for statement in split_sql(chunk, dialect=runner.db.backend)
            if not _TRANSACTION.match(statement.sql)
            and not re.search(rf"\b{re.escape(version_table)}\b", statement.sql)
        )
        found = script.get_revision(mark["rev"])
        message = (found.doc if found is not None else "") or ""
        revisions.append(Revision(mark["rev"], message.strip(), statements))
    return revisions


def _script_or_none(config: t.Any) -> t.Any:
    """The Alembic script directory of ``config``, or ``None`` if it cannot be read."""
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(config)
    except Exception:
        return None


def _unrenderable(output: str, script: t.Any, exc: Exception) -> BadInputError:
    """The error for a revision that Alembic's offline mode cannot render."""
    marks = list(_RUNNING.finditer(output))
    where = "a revision"
    if marks:
        revision = marks[-1]["rev"]
        found = script.get_revision(revision) if script is not None else None
        path = getattr(found, "path", None)
        where = f"revision {revision}" + (f" ({path})" if path else "")
    return BadInputError(
        f"Alembic could not render {where} offline (--sql): {type(exc).__name__}: {exc}. "
        "Offline rendering has no database connection, so a revision that reads the "
        "database (e.g. op.get_bind().execute(...)) cannot be turned into SQL. Write the "
        "baseline yourself from the database's schema instead (pg_dump --schema-only "
        "--no-owner DB > <migrations>/0001_baseline.sql, without the alembic_version "
        "table) and record it with `flask safe-migrate adopt-alembic --baseline 0001`."
    )


def _slug(message: str, revision: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:60].strip("_")
    return slug or f"alembic_{re.sub(r'[^a-z0-9]+', '_', revision.lower())}"


def _body(revisions: list[Revision], header: list[str]) -> str:
    lines = [*header, ""]
    for revision in revisions:
        lines.append(f"-- Alembic revision {revision.revision}: {revision.message}")
        for sql in revision.statements:
            end = "\n;" if "--" in sql.rsplit("\n", 1)[-1] else ";"
            lines.append(sql + end)
        lines.append("")
    return "\n".join(lines)


def adopt(
    runner: Runner,
    *,
    alembic: str | os.PathLike[str] | None = None,
    convert: bool = False,
    baseline: str | None = None,
    version_table: str = "alembic_version",
) -> Adopted:
    """Adopt an Alembic-built database; see the module docstring for the three modes.

    Files are written before the ledger: if recording fails, run it again
    with ``baseline=<last written version>``.

    :raises BadInputError: no ``alembic_version`` table, several Alembic heads,
        a database behind Alembic's head (default mode), migration files
        already in the directory (without ``baseline``), no Alembic config.
    """
    current = alembic_revisions(runner, version_table)
    if len(current) != 1:
        raise BadInputError(
            f"{version_table} holds {len(current)} revisions ({', '.join(current) or 'none'});"
            " merge the Alembic branches (`flask db merge`) and upgrade to one head first"
        )
    revision = current[0]
    if baseline is not None:
        return Adopted(revision, (), tuple(record_baseline(runner, baseline)))
    if alembic is None:
        raise BadInputError("pass --alembic PATH (an alembic.ini, or the Alembic script directory)")
    directory = pathlib.Path(runner.directory)
    existing = runner.migrations() if directory.is_dir() else []
    if existing:
        raise BadInputError(
            f"{directory}: already has migrations ({existing[0].path.name}, ...); adopt-alembic"
            " writes the first ones. Use an empty directory, or record a baseline you wrote"
            " with --baseline VERSION."
        )
    revisions = render_history(runner, alembic, "heads", version_table=version_table)
    if not revisions:
        raise BadInputError("Alembic rendered no revisions: is the script directory right?")
    if not convert and revisions[-1].revision != revision:
        raise BadInputError(
            f"the database is at Alembic revision {revision}, not at the head"
            f" ({revisions[-1].revision}); run `flask db upgrade` first, or use --convert"
            " (revisions above the database's stay pending and `run` applies them)"
        )
    if revision not in {r.revision for r in revisions}:
        raise BadInputError(
            f"the database's Alembic revision {revision} is not in the rendered history;"
            " is --alembic the project's script directory?"
        )
    directory.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    origin = "Alembic's offline (--sql) rendering, by `flask safe-migrate adopt-alembic`"
    if convert:
        for number, item in enumerate(revisions, start=1):
            path = directory / f"{number:04d}_{_slug(item.message, item.revision)}.sql"
            text = _body([item], [f"-- Converted from {origin}."])
            with open(path, "x", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            written.append(path)
        last = next(i for i, r in enumerate(revisions, start=1) if r.revision == revision)
    else:
        path = directory / "0001_alembic_baseline.sql"
        text = _body(
            revisions,
            [f"-- The Alembic history up to {revision}, from {origin}."],
        )
        with open(path, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        written.append(path)
        last = 1
    recorded = record_baseline(runner, f"{last:04d}")
    return Adopted(revision, tuple(written), tuple(recorded))
