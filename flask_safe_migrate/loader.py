"""Find, read and validate migration files.

A migrations directory holds files named ``<digits>_<name>.sql`` or
``<digits>_<name>.py``; see :func:`discover` for the exact rules. Everything
that can be wrong with the files themselves (names, duplicates, headers,
encodings) is reported here as :class:`~flask_safe_migrate.errors.MigrationSourceError`,
*before* the database is touched, so a bad deploy fails without having applied
half of its migrations.

:func:`discover` is on the hot path of every ``flask safe-migrate`` command
(and of the pending-migrations check at start-up), so it does the least that
is needed to list migrations and to detect edits: read each file's bytes once,
hash them, and scan ``.sql`` files for ``-- safe-migrate:`` lines only when
that text occurs at all. SQL parsing (:meth:`Migration.statements`) and
importing Python migrations (:meth:`Migration.load_module`) wait until a
migration is actually planned or applied.

The bytes read at discovery are the bytes that get executed: statements and
Python modules are built from the text kept in the :class:`Migration`, never
by reading the file again, so what runs is exactly what the checksum covers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import os
import pathlib
import re
import sys
import threading
import types
import typing as t

from .durations import ALLOWED as DURATION_FORMS
from .durations import parse_duration_ms
from .errors import MigrationSourceError

if t.TYPE_CHECKING:
    from .sqlsplit import Statement

# .sqlsplit (and sqlite3 under it) is imported only when SQL is parsed: listing
# migrations, the hot path of every command and of the boot check, needs neither.

#: A migration file name: version digits, ``_``, a lower-case name, ``.sql`` or ``.py``.
MIGRATION_NAME = re.compile(r"^(\d+)_([a-z0-9_]+)\.(sql|py)$")

#: Directives allowed in the header of a ``.sql`` file (the leading run of
#: ``--`` comment lines and blank lines).
HEADER_DIRECTIVES: tuple[str, ...] = (
    "-- safe-migrate: no-transaction",
    "-- safe-migrate: lock-timeout=<duration>",
    "-- safe-migrate: statement-timeout=<duration>",
    "-- safe-migrate: squashes=<version>,<version>,... (written by `squash`)",
)


def directives() -> tuple[str, ...]:
    """Every ``-- safe-migrate:`` directive, with where it may appear."""
    from .sqlsplit import ALLOW_NON_IDEMPOTENT

    return (
        *(f"{directive} (in the header)" for directive in HEADER_DIRECTIVES),
        "-- safe-migrate: down (on its own line; starts the down part)",
        f"{ALLOW_NON_IDEMPOTENT} (on a statement's first line or the comment line above it)",
    )


def __getattr__(name: str) -> t.Any:
    """``DIRECTIVES``, built on first use (see :func:`directives`)."""
    if name == "DIRECTIVES":
        return directives()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BOM = b"\xef\xbb\xbf"
_DIRECTIVE = re.compile(r"--\s*safe-migrate\s*:\s*(?P<body>.*?)\s*$")
_DIRECTIVE_BODY = re.compile(r"^(?P<key>[A-Za-z][A-Za-z_-]*)\s*(?:=\s*(?P<value>.*?))?\s*$")
# `allow non-idempotent -- <reason>` is the runner's; `allow <rule> -- <reason>`
# suppresses a `verify` finding. Both are statement comments, not header options.
_ALLOW_BODY = re.compile(r"^allow\s+\S")
_HEADER_KEYS = ("no-transaction", "lock-timeout", "statement-timeout", "squashes")
_ALEMBIC_MARKERS = ("env.py", "alembic.ini", "script.py.mako")
_MODULE_LOCK = threading.Lock()

Kind = t.Literal["sql", "py"]


def checksum_bytes(data: bytes) -> str:
    """Hex SHA-256 of a migration file's bytes, ignoring a UTF-8 BOM and CRLF line ends.

    Editors and ``git`` (``core.autocrlf``) add and remove both without anyone
    touching the SQL; counting them as edits would report checksum drift on a
    Windows checkout of an unchanged file.
    """
    return hashlib.sha256(_normalize(data)).hexdigest()


def _normalize(data: bytes) -> bytes:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    return data.replace(b"\r\n", b"\n") if b"\r" in data else data


@dataclasses.dataclass(frozen=True, slots=True)
class _SqlHeader:
    """What the ``-- safe-migrate:`` lines of a ``.sql`` file say.

    ``up_end``/``down_start`` are character offsets into the source text and
    ``down_line`` the 1-based line of the ``down`` marker, or all ``None``
    when there is no down part.
    """

    transactional: bool = True
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    up_end: int | None = None
    down_start: int | None = None
    down_line: int | None = None
    squashes: tuple[str, ...] = ()


_NO_DIRECTIVES = _SqlHeader()


@dataclasses.dataclass(frozen=True, slots=True)
class _PyOptions:
    transactional: bool
    lock_timeout_ms: int | None
    statement_timeout_ms: int | None
    has_down: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One migration file, as read by :func:`discover` or :func:`load_file`.

    ``version`` is the prefix as written (``"0004"``) and is what gets
    recorded as applied; ``number`` is its integer value, which orders
    migrations and makes them unique. ``checksum`` is :func:`checksum_bytes`
    of the whole file (up and down parts).

    Two migrations are equal when their identity and checksum are; the
    source text is carried along but not compared.
    """

    version: str
    number: int
    name: str
    path: pathlib.Path
    kind: Kind
    checksum: str
    _source: str = dataclasses.field(repr=False, compare=False)
    _header: _SqlHeader | None = dataclasses.field(default=None, repr=False, compare=False)

    # -- text ---------------------------------------------------------------------

    def source(self) -> str:
        """The file's text as read at discovery (UTF-8 BOM removed, CRLF turned into LF)."""
        return self._source

    @property
    def up_sql(self) -> str:
        """The SQL that upgrades: the whole file, or what is above ``-- safe-migrate: down``."""
        header = self._sql_header()
        return self._source if header.up_end is None else self._source[: header.up_end]

    @property
    def down_sql(self) -> str | None:
        """The SQL below ``-- safe-migrate: down``, or ``None`` without that line."""
        header = self._sql_header()
        return None if header.down_start is None else self._source[header.down_start :]

    # -- options ------------------------------------------------------------------

    @property
    def transactional(self) -> bool:
        """Whether the migration runs in one transaction.

        ``.sql``: false with ``-- safe-migrate: no-transaction`` in the header.
        ``.py``: false with ``transaction = False`` in the module, which
        means importing it; that is why this is a property and not a field
        filled in by :func:`discover`.
        """
        if self._header is not None:
            return self._header.transactional
        return self._py_options().transactional

    @property
    def lock_timeout_ms(self) -> int | None:
        """The migration's own ``lock_timeout`` in ms, or ``None`` for the configured default."""
        if self._header is not None:
            return self._header.lock_timeout_ms
        return self._py_options().lock_timeout_ms

    @property
    def statement_timeout_ms(self) -> int | None:
        """The migration's own ``statement_timeout`` in ms (``0``: none), ``None``: default."""
        if self._header is not None:
            return self._header.statement_timeout_ms
        return self._py_options().statement_timeout_ms

    @property
    def squashes(self) -> tuple[str, ...]:
        """Versions this file replaces (``-- safe-migrate: squashes=...``); ``()`` for most files.

        See :mod:`flask_safe_migrate.squash`: a database whose ledger has
        every one of them counts this file as applied.
        """
        return self._header.squashes if self._header is not None else ()

    @property
    def has_down(self) -> bool:
        """Whether the migration can be reverted (a down part, or a ``downgrade`` function).

        For ``.py`` migrations this imports the module.
        """
        if self._header is not None:
            return self._header.down_start is not None
        return self._py_options().has_down

    # -- SQL ------------------------------------------------------------------------

    def statements(self, dialect: str = "postgresql") -> list[Statement]:
        """Parse the up part into statements.

        For a no-transaction migration on PostgreSQL, every statement must be
        idempotent (see :data:`~flask_safe_migrate.sqlsplit.NO_TRANSACTION_ALLOWED`)
        or carry an ``allow non-idempotent`` marker with a reason. SQLite has
        no parse tree to check, and runs its DDL in transactions anyway.

        :raises MigrationSourceError: the SQL does not parse, or a statement is
            refused in a no-transaction migration.
        :raises TypeError: this is a ``.py`` migration.
        """
        from .sqlsplit import split_sql

        header = self._sql_header()
        statements = split_sql(self.up_sql, dialect=dialect, path=str(self.path))
        if not header.transactional and dialect == "postgresql":
            self._check_idempotent(statements)
        return statements

    def down_statements(self, dialect: str = "postgresql") -> list[Statement] | None:
        """Parse the down part, or return ``None`` when there is none.

        Line numbers are lines of the file. The no-transaction check applies
        here too: a down part that fails half-way is retried just the same.
        """
        from .sqlsplit import split_sql

        header = self._sql_header()
        down = self.down_sql
        if down is None:
            return None
        statements = split_sql(
            down, dialect=dialect, path=str(self.path), line_offset=header.down_line or 0
        )
        if not header.transactional and dialect == "postgresql":
            self._check_idempotent(statements)
        return statements

    def _sql_header(self) -> _SqlHeader:
        if self._header is None:
            raise TypeError(
                f"{self.path} is a Python migration; it has no SQL text. "
                "Use load_module() and call its upgrade(m) / downgrade(m)."
            )
        return self._header

    def _check_idempotent(self, statements: list[Statement]) -> None:
        from .sqlsplit import ALLOW_NON_IDEMPOTENT
        from .sqlsplit import NO_TRANSACTION_ALLOWED
        from .sqlsplit import idempotent_form

        for stmt in statements:
            if stmt.allow_non_idempotent is not None or idempotent_form(stmt) is not None:
                continue
            hint = _IDEMPOTENT_HINTS.get(stmt.node_type or "")
            fix = (
                hint
                if hint
                else "use an idempotent form ("
                + "; ".join(form.sql for form in NO_TRANSACTION_ALLOWED)
                + ")"
            )
            raise MigrationSourceError(
                f"{self.path}:{stmt.line}: statement {stmt.index + 1} ({stmt.short()}) is not "
                "idempotent, but this migration runs without a transaction "
                "(-- safe-migrate: no-transaction): if it fails half-way, the statements "
                "that already ran stay applied and the retry runs them again. "
                f"Fix: {fix}; or move it to a separate, transactional migration; or, if "
                f"running it twice is safe, add '{ALLOW_NON_IDEMPOTENT}' at the end of the "
                "statement's first line or on the comment line right above it.",
                path=str(self.path),
            )

    # -- Python -----------------------------------------------------------------------

    def load_module(self) -> types.ModuleType:
        """Import a ``.py`` migration (once per process and checksum) and validate it.

        The module is compiled from the text read at discovery, under a name
        that is unique per directory and file
        (``flask_safe_migrate_migrations_<dir hash>_m<version>_<name>``), so
        two projects' ``0001_init.py`` never clash and nothing shadows a real
        package. It stays in :data:`sys.modules` because dataclasses, pickling
        and ``typing.get_type_hints`` inside the migration look it up there.

        :raises MigrationSourceError: the module fails to import (the exception
            is chained), has no ``upgrade(m)``, or has a bad ``transaction``,
            ``lock_timeout`` or ``statement_timeout``.
        :raises TypeError: this is a ``.sql`` migration.
        """
        if self.kind != "py":
            raise TypeError(f"{self.path} is a SQL migration; use statements() instead")
        name = self._module_name()
        with _MODULE_LOCK:
            cached = sys.modules.get(name)
            if cached is not None and getattr(cached, "__safe_migrate_checksum__", None) == (
                self.checksum
            ):
                return cached
            module = self._exec_module(name)
            module.__dict__["__safe_migrate_options__"] = self._validate_module(module)
            module.__dict__["__safe_migrate_checksum__"] = self.checksum
            return module

    def _module_name(self) -> str:
        directory = os.path.realpath(self.path.parent)
        digest = hashlib.sha256(directory.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        return f"flask_safe_migrate_migrations_{digest}_m{self.version}_{self.name}"

    def _exec_module(self, name: str) -> types.ModuleType:
        where = str(self.path)
        try:
            code = compile(self._source, where, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise MigrationSourceError(
                f"{where}:{exc.lineno}: Python syntax error: {exc.msg}; fix the migration "
                "so that it imports (python -m py_compile shows the same error)",
                path=where,
            ) from exc
        spec = importlib.util.spec_from_loader(name, loader=None, origin=where)
        assert spec is not None  # only None when loader is None and origin is unknown
        module = importlib.util.module_from_spec(spec)
        module.__file__ = where
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise MigrationSourceError(
                f"{where}: importing the migration failed with "
                f"{type(exc).__name__}: {exc}; fix the module so that it imports "
                "(imports at its top run at load time, before upgrade(m) is called)",
                path=where,
            ) from exc
        return module

    def _validate_module(self, module: types.ModuleType) -> _PyOptions:
        where = str(self.path)
        namespace = module.__dict__
        upgrade = namespace.get("upgrade")
        if upgrade is None:
            raise MigrationSourceError(
                f"{where}: defines no upgrade function; add 'def upgrade(m): ...' "
                "(and optionally 'def downgrade(m): ...')",
                path=where,
            )
        for function_name in ("upgrade", "downgrade"):
            function = namespace.get(function_name)
            if function is None:
                continue
            if not callable(function) or not _accepts_one_argument(function):
                raise MigrationSourceError(
                    f"{where}: {function_name} must be a function taking one argument, "
                    f"the migration context: 'def {function_name}(m): ...'",
                    path=where,
                )
        if "transaction" not in namespace and "transactional" in namespace:
            raise MigrationSourceError(
                f"{where}: sets 'transactional'; the module attribute is called "
                "'transaction' (write 'transaction = False' for a no-transaction migration)",
                path=where,
            )
        transaction = namespace.get("transaction", True)
        if not isinstance(transaction, bool):
            raise MigrationSourceError(
                f"{where}: 'transaction' is {transaction!r}; it must be True or False",
                path=where,
            )
        timeouts: dict[str, int | None] = {}
        for key in ("lock_timeout", "statement_timeout"):
            value = namespace.get(key)
            if value is None:
                timeouts[key] = None
                continue
            try:
                timeouts[key] = parse_duration_ms(value)
            except ValueError as exc:
                raise MigrationSourceError(
                    f"{where}: module attribute {key} = {value!r} is not a duration; "
                    f"use {DURATION_FORMS}",
                    path=where,
                ) from exc
        return _PyOptions(
            transactional=transaction,
            lock_timeout_ms=timeouts["lock_timeout"],
            statement_timeout_ms=timeouts["statement_timeout"],
            has_down=namespace.get("downgrade") is not None,
        )

    def _py_options(self) -> _PyOptions:
        options = self.load_module().__dict__["__safe_migrate_options__"]
        assert isinstance(options, _PyOptions)
        return options


_IDEMPOTENT_HINTS: dict[str, str] = {
    "IndexStmt": "write CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON ...",
    "DropStmt": "add IF EXISTS (e.g. DROP INDEX CONCURRENTLY IF EXISTS name)",
    "CreateStmt": "write CREATE TABLE IF NOT EXISTS ...",
    "AlterEnumStmt": "write ALTER TYPE ... ADD VALUE IF NOT EXISTS '...'",
    "ReindexStmt": "write REINDEX ... CONCURRENTLY ...",
    "AlterTableStmt": (
        "guard every subcommand (ADD COLUMN IF NOT EXISTS, DROP COLUMN IF EXISTS, "
        "DROP CONSTRAINT IF EXISTS); other ALTER TABLE forms belong in a transactional migration"
    ),
}


def _accepts_one_argument(function: t.Callable[..., t.Any]) -> bool:
    try:
        inspect.signature(function).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature available (some builtins): give it the benefit
        return True
    return True


# -- discovery ----------------------------------------------------------------------


def discover(directory: str | os.PathLike[str]) -> list[Migration]:
    """Return the migrations in ``directory``, ordered by the integer value of their version.

    Rules, all checked before any database access:

    * a migration is a file named ``^(\\d+)_([a-z0-9_]+)\\.(sql|py)$``;
    * ignored: names starting with ``README`` (any case), dotfiles,
      ``__pycache__``, ``__init__.py``, subdirectories, and any other file whose
      name neither starts with a digit nor ends in ``.sql``/``.py``;
    * a file whose name starts with a digit or ends in ``.sql``/``.py`` (any
      case) but does not match is an error (``4-foo.sql``, ``0004_Foo.SQL``,
      ``0004_foo.txt``, ``0004_foo.sql~``, ``helpers.py``): it was almost
      certainly meant to be a migration, and skipping it silently would
      deploy without it;
    * two files with the same integer version (``0004_a.sql`` and
      ``4_b.py``) are an error;
    * a missing directory, or an Alembic / Flask-Migrate directory
      (``env.py``, ``alembic.ini`` or a ``versions/`` folder), is an error.

    Cheap by design: one read per file, no SQL parsing, no imports.

    :raises MigrationSourceError: for any of the cases above, or a file
        that cannot be read or is not UTF-8.
    """
    root = pathlib.Path(directory)
    return [_read(root / name, match) for _, name, match in find_files(root)]


class FoundFile(t.NamedTuple):
    """A migration file found by :func:`find_files`, not read yet."""

    number: int
    name: str
    match: re.Match[str]


def find_files(directory: str | os.PathLike[str]) -> list[FoundFile]:
    """The migration files of ``directory``, by version, checked by name only (none is read).

    Every rule of :func:`discover` that names alone decide: bad names,
    duplicate versions, a missing or an Alembic directory. For callers that
    read only some of the files (``pending()`` reads only the unapplied ones).

    :raises MigrationSourceError: as :func:`discover`, except for unreadable
        files, which are not opened here.
    """
    root = pathlib.Path(directory)
    try:
        with os.scandir(root) as scan:
            entries = list(scan)
    except FileNotFoundError as exc:
        raise MigrationSourceError(
            f"{root}: the migrations directory does not exist; create it, or point "
            "SAFE_MIGRATE_DIRECTORY at the directory that holds your migrations",
            path=str(root),
        ) from exc
    except NotADirectoryError as exc:
        raise MigrationSourceError(
            f"{root}: is a file, not a migrations directory; point SAFE_MIGRATE_DIRECTORY "
            "at the directory that holds your migrations",
            path=str(root),
        ) from exc
    except OSError as exc:
        raise MigrationSourceError(
            f"{root}: the migrations directory cannot be read ({exc.strerror or exc}); "
            "check its permissions",
            path=str(root),
        ) from exc

    _refuse_alembic(root, entries)

    by_number: dict[int, FoundFile] = {}
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name in ("__pycache__", "__init__.py"):
            continue
        if name[:6].upper() == "README":
            continue
        match = MIGRATION_NAME.match(name)
        if match is None:
            if entry.is_dir():
                continue
            if name[:1].isdigit() or name.lower().endswith((".sql", ".py")):
                raise MigrationSourceError(_bad_name_message(root / name), path=str(root / name))
            continue
        if not entry.is_file():
            path = root / name
            raise MigrationSourceError(
                f"{path}: has a migration's name but is not a readable file (a directory "
                "or a broken symlink); rename or remove it",
                path=str(path),
            )
        found = FoundFile(int(match[1]), name, match)
        other = by_number.get(found.number)
        if other is not None:
            first, second = sorted((other.name, name))
            raise MigrationSourceError(
                f"{root}: {first} and {second} have the same version "
                f"{found.number}; every migration needs its own number, so renumber "
                "one of them (if one of them is already applied, renumber the other)",
                path=str(root / name),
            )
        by_number[found.number] = found
    return [by_number[number] for number in sorted(by_number)]


def read_found(directory: str | os.PathLike[str], found: FoundFile) -> Migration:
    """Read one file listed by :func:`find_files` (checksum, header: as :func:`discover`)."""
    return _read(pathlib.Path(directory) / found.name, found.match)


def load_file(path: str | os.PathLike[str]) -> Migration:
    """Read one migration file, with the same checks :func:`discover` applies to it.

    :raises MigrationSourceError: bad name, unreadable, not UTF-8, or a bad header.
    """
    file_path = pathlib.Path(path)
    match = MIGRATION_NAME.match(file_path.name)
    if match is None:
        raise MigrationSourceError(_bad_name_message(file_path), path=str(file_path))
    return _read(file_path, match)


_CHUNK = 65536


def _read_bytes(where: str) -> bytes:
    """A file's bytes, with the fewest system calls: ``discover`` reads every file, every time.

    (``open().read()`` builds a buffered file object and asks for the size
    first: twice the time of ``os.read`` for the small files migrations are.)
    """
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        data = os.read(fd, _CHUNK)
        more = os.read(fd, _CHUNK) if data else b""
        if not more:  # the common case: the whole file in one read (the next one says EOF)
            return data
        parts = [data, more]
        while more:
            more = os.read(fd, _CHUNK)
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read(path: pathlib.Path, match: re.Match[str]) -> Migration:
    where = str(path)
    try:
        raw = _read_bytes(where)
    except OSError as exc:
        raise MigrationSourceError(
            f"{where}: cannot be read ({exc.strerror or exc}); check its permissions",
            path=where,
        ) from exc
    data = _normalize(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MigrationSourceError(
            f"{where}:{line}: is not valid UTF-8 (byte {data[exc.start]:#04x}); "
            "save the file as UTF-8",
            path=where,
        ) from exc
    kind = t.cast(Kind, match[3])
    return Migration(
        version=match[1],
        number=int(match[1]),
        name=match[2],
        path=path,
        kind=kind,
        checksum=hashlib.sha256(data).hexdigest(),
        _source=text,
        _header=_scan_header(text, where) if kind == "sql" else None,
    )


def _refuse_alembic(root: pathlib.Path, entries: list[os.DirEntry[str]]) -> None:
    found = [
        entry.name + ("/" if entry.is_dir() else "")
        for entry in entries
        if entry.name in _ALEMBIC_MARKERS or (entry.name == "versions" and entry.is_dir())
    ]
    if found:
        raise MigrationSourceError(
            f"{root}: is an Alembic/Flask-Migrate directory (it contains "
            f"{', '.join(sorted(found))}), not a flask-safe-migrate one. Point "
            "SAFE_MIGRATE_DIRECTORY at a new directory (the default 'migrations' is "
            "taken by Flask-Migrate; use e.g. 'safe_migrations'), then take the history "
            f"over with 'flask safe-migrate adopt-alembic --alembic {root}' (or record the "
            "existing schema with 'flask safe-migrate baseline VERSION'); see 'Coming from "
            "Flask-Migrate' in the README",
            path=str(root),
        )


def _bad_name_message(path: pathlib.Path) -> str:
    name = path.name
    loose = re.match(r"^(\d+)[\s._-]*(.*?)\.(sql|py)\W*$", name, re.IGNORECASE)
    suggestion = ""
    if loose:
        slug = re.sub(r"[^a-z0-9]+", "_", loose[2].lower()).strip("_") or "migration"
        suggestion = f" (e.g. {loose[1]}_{slug}.{loose[3].lower()})"
    return (
        f"{path}: {name!r} looks like a migration but its name does not match "
        "<digits>_<name>.sql or <digits>_<name>.py (name: lower-case letters, digits "
        f"and '_'; extension in lower case); rename it{suggestion}, or move it out of "
        "the migrations directory if it is not a migration"
    )


def _scan_header(text: str, where: str) -> _SqlHeader:
    """Read the ``-- safe-migrate:`` directives of a ``.sql`` file.

    Header directives count only in the header, the leading run of ``--``
    and blank lines: a ``no-transaction`` further down would be ambiguous
    (does it cover the statements above it?), so it is an error rather than
    silently ignored or silently honoured. ``down`` may appear anywhere on
    its own line. ``allow non-idempotent`` markers are left to
    :func:`~flask_safe_migrate.sqlsplit.split_sql`, which attaches them to
    statements.
    """
    if "safe-migrate" not in text:  # the common case: no line scan at all
        return _NO_DIRECTIVES
    transactional = True
    timeouts: dict[str, int] = {}
    squashes: tuple[str, ...] = ()
    seen: dict[str, int] = {}
    in_header = True
    up_end: int | None = None
    down_start: int | None = None
    down_line: int | None = None
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        line_start = offset
        offset += len(line) + 1
        stripped = line.strip()
        if in_header and stripped and not stripped.startswith("--"):
            in_header = False
        found = _DIRECTIVE.search(line)
        if found is None:
            continue
        body = found["body"]
        if _ALLOW_BODY.match(body):
            continue
        parsed = _DIRECTIVE_BODY.match(body)
        key = parsed["key"] if parsed else body
        value = parsed["value"] if parsed else None
        if key not in (*_HEADER_KEYS, "down"):
            import difflib

            close = difflib.get_close_matches(key, (*_HEADER_KEYS, "down"), n=1)
            maybe = f" (did you mean {close[0]!r}?)" if close else ""
            raise MigrationSourceError(
                f"{where}:{number}: unknown directive '-- safe-migrate: {body}'{maybe}; "
                f"the allowed directives are: {'; '.join(directives())}",
                path=where,
            )
        if not stripped.startswith("--"):
            raise MigrationSourceError(
                f"{where}:{number}: '-- safe-migrate: {key}' must be on a line of its own, "
                "not after SQL; move it to its own line"
                + (" in the header at the top of the file" if key != "down" else ""),
                path=where,
            )
        if key == "down":
            if value is not None:
                raise MigrationSourceError(
                    f"{where}:{number}: '-- safe-migrate: down' takes no value; "
                    "write the line as just '-- safe-migrate: down'",
                    path=where,
                )
            if down_line is not None:
                raise MigrationSourceError(
                    f"{where}:{number}: a second '-- safe-migrate: down' line (the first is "
                    f"on line {down_line}); a file has one down part, remove one of them",
                    path=where,
                )
            up_end, down_start, down_line = line_start, min(offset, len(text)), number
            in_header = False
            continue
        if not in_header:
            place = "the down part" if down_line is not None else "SQL"
            raise MigrationSourceError(
                f"{where}:{number}: '-- safe-migrate: {key}' comes after {place}; header "
                "directives apply to the whole file and must be in the header, the "
                "'--' comment lines at the very top: move it there",
                path=where,
            )
        if key in seen:
            raise MigrationSourceError(
                f"{where}:{number}: '-- safe-migrate: {key}' is given twice (also on line "
                f"{seen[key]}); keep one",
                path=where,
            )
        seen[key] = number
        if key == "no-transaction":
            if value is not None:
                raise MigrationSourceError(
                    f"{where}:{number}: '-- safe-migrate: no-transaction' takes no value; "
                    "write just '-- safe-migrate: no-transaction' (leave it out for a "
                    "transactional migration)",
                    path=where,
                )
            transactional = False
            continue
        if key == "squashes":
            squashes = tuple(v.strip() for v in (value or "").split(","))
            if not squashes or not all(v.isdigit() for v in squashes):
                raise MigrationSourceError(
                    f"{where}:{number}: bad value for squashes: {value!r}; write "
                    "'-- safe-migrate: squashes=0001,0002,...' (the versions this file replaces)",
                    path=where,
                )
            continue
        try:
            if not value:
                raise ValueError("missing value")
            timeouts[key] = parse_duration_ms(value)
        except ValueError as exc:
            raise MigrationSourceError(
                f"{where}:{number}: bad value for {key}: {value!r}; write "
                f"'-- safe-migrate: {key}=<duration>' with {DURATION_FORMS}",
                path=where,
            ) from exc
    return _SqlHeader(
        transactional=transactional,
        lock_timeout_ms=timeouts.get("lock-timeout"),
        statement_timeout_ms=timeouts.get("statement-timeout"),
        up_end=up_end,
        down_start=down_start,
        down_line=down_line,
        squashes=squashes,
    )
