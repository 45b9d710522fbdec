"""Split a ``.sql`` migration into statements, and judge their idempotency.

Why not ``text.split(";")``: semicolons occur inside string literals, quoted
identifiers, comments, ``$$`` function bodies and ``DO`` blocks. A home-made
tokenizer gets some corner of that wrong sooner or later, so for PostgreSQL we
let PostgreSQL's own grammar (``pgparse``, i.e. libpg_query) find the
statement boundaries, and we get the parse tree for free, which the
no-transaction check below inspects instead of guessing with regexes. For
SQLite the standard library's :func:`sqlite3.complete_statement` is SQLite's
own answer to "does this text end a statement?".

Statements are sent to the database one by one, which is what makes a
no-transaction migration possible at all: several statements in one simple
query run as one implicit transaction, where ``CREATE INDEX CONCURRENTLY``
is refused.

``pgparse`` is imported inside :func:`split_sql` only: discovering
migrations and computing the pending ones must stay cheap, and importing an
11 MB extension module is not.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import typing as t

from .errors import MigrationSourceError

#: The dialects :func:`split_sql` knows.
DIALECTS: tuple[str, ...] = ("postgresql", "sqlite")

#: How a statement is marked as deliberately non-idempotent in a no-transaction
#: migration; the text after the second ``--`` is the (required) reason.
ALLOW_NON_IDEMPOTENT = "-- safe-migrate: allow non-idempotent -- <reason>"

_ALLOW = re.compile(r"--\s*safe-migrate\s*:\s*allow\s+non-idempotent\b(?P<rest>.*)$")
_REASON = re.compile(r"^\s*--\s*(?P<reason>\S.*?)\s*$")

Node = dict[str, t.Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement of a migration file.

    ``sql`` is the text exactly as written, from the statement's first token to
    its end, without the terminating ``;`` and without the comments in front
    of it (those belong to the file, not to the statement). ``line`` is the
    1-based line of that first token in the *file*, so an error message points
    at the statement and not at the comment block above it. ``index`` is the
    0-based position among the statements of its section (up or down).

    ``node_type`` and ``node`` are PostgreSQL's parse tree (``"IndexStmt"``
    and its fields); both are ``None`` for SQLite. ``node`` is left out of
    ``repr`` and equality because it is large and fully determined by ``sql``.

    ``allow_non_idempotent`` is the reason given in a
    ``-- safe-migrate: allow non-idempotent -- <reason>`` comment attached to
    the statement, or ``None``.
    """

    sql: str
    line: int
    index: int
    node_type: str | None = None
    node: Node | None = dataclasses.field(default=None, repr=False, compare=False)
    allow_non_idempotent: str | None = None

    def short(self, width: int = 80) -> str:
        """The statement on one line, cut to ``width`` characters, for messages."""
        flat = " ".join(self.sql.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"


def split_sql(
    text: str,
    *,
    dialect: str = "postgresql",
    path: str | None = None,
    line_offset: int = 0,
) -> list[Statement]:
    """Split ``text`` into :class:`Statement` objects.

    ``path`` only serves error messages. ``line_offset`` is added to every line
    number: the loader passes the line where a ``down`` section starts, so the
    lines of down statements are still lines of the file.

    ``-- safe-migrate: allow non-idempotent -- <reason>`` comments are attached
    to the statement whose first line carries them, or to the statement right
    below the run of ``--`` comment lines that contains them. A marker without
    a reason, or one that is attached to no statement, is an error: a marker
    that silently does nothing would hide exactly the mistake it is meant to
    document.

    :raises MigrationSourceError: the SQL does not parse (with file and line),
        or an allow marker is malformed or stray.
    :raises ValueError: ``dialect`` is not one of :data:`DIALECTS`.
    """
    if dialect == "postgresql":
        statements = _split_postgres(text, path=path, line_offset=line_offset)
    elif dialect == "sqlite":
        statements = _split_sqlite(text, path=path, line_offset=line_offset)
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}; use one of {', '.join(DIALECTS)}")
    if "safe-migrate" in text:
        statements = _attach_allow_markers(text, statements, path=path, line_offset=line_offset)
    return statements


def _where(path: str | None, line: int | None) -> str:
    name = path if path is not None else "<sql>"
    return f"{name}:{line}" if line is not None else name


def _split_postgres(text: str, *, path: str | None, line_offset: int) -> list[Statement]:
    import pgparse  # lazily: see the module docstring

    try:
        parsed: list[dict[str, t.Any]] = pgparse.parse(text)
    except pgparse.PGQueryError as exc:
        # ``position`` is PostgreSQL's error cursor: 1-based, in characters
        # (not bytes), 0 when unknown.
        position = int(getattr(exc, "position", 0) or 0)
        message = str(getattr(exc, "message", exc))
        line: int | None = None
        detail = ""
        if 0 < position <= len(text) + 1:
            line = text.count("\n", 0, position - 1) + 1 + line_offset
            start = text.rfind("\n", 0, position - 1) + 1
            end = text.find("\n", position - 1)
            source_line = text[start : end if end != -1 else len(text)].strip()
            detail = f" (in: {source_line[:80]!r})" if source_line else ""
        raise MigrationSourceError(
            f"{_where(path, line)}: SQL syntax error: {message}{detail}; "
            "fix the statement so that PostgreSQL can parse it "
            "(try it in psql, e.g. inside BEGIN; ... ROLLBACK;)",
            path=path,
        ) from exc

    data = text.encode("utf-8")
    statements: list[Statement] = []
    for raw in parsed:
        # pgparse offsets are UTF-8 *byte* offsets: slicing the str would be
        # wrong as soon as a comment before a statement holds 'é' or Hebrew.
        start = int(raw.get("stmt_location", 0) or 0)
        length = int(raw.get("stmt_len", 0) or 0)
        end = start + length if length else len(data)
        chunk = data[start:end].decode("utf-8")
        skip = _skip_space_and_comments(chunk, nested=True)
        sql = chunk[skip:].rstrip()
        if not sql:
            continue
        line = data.count(b"\n", 0, start) + chunk.count("\n", 0, skip) + 1 + line_offset
        stmt = raw.get("stmt") or {}
        node_type, node = next(iter(stmt.items())) if stmt else (None, None)
        statements.append(
            Statement(sql=sql, line=line, index=len(statements), node_type=node_type, node=node)
        )
    return statements


def _split_sqlite(text: str, *, path: str | None, line_offset: int) -> list[Statement]:
    statements: list[Statement] = []
    pending = ""  # text since the end of the previous statement
    pending_start = 0  # offset of ``pending`` in ``text``

    def emit(chunk: str, chunk_start: int) -> None:
        skip = _skip_space_and_comments(chunk, nested=False)
        sql = chunk[skip:].rstrip()
        if sql:
            line = text.count("\n", 0, chunk_start + skip) + 1 + line_offset
            statements.append(Statement(sql=sql, line=line, index=len(statements)))

    pieces = text.split(";")
    for number, piece in enumerate(pieces):
        pending += piece
        if number == len(pieces) - 1:
            break
        pending += ";"
        # complete_statement() is SQLite's own tokenizer: it says False while
        # the ';' is inside a string, a comment or a CREATE TRIGGER ... END.
        if sqlite3.complete_statement(pending):
            emit(pending[:-1], pending_start)
            pending_start += len(pending)
            pending = ""
    if pending.strip():
        skip = _skip_space_and_comments(pending, nested=False)
        if skip < len(pending.rstrip()):
            if not sqlite3.complete_statement(pending + ";"):
                line = text.count("\n", 0, pending_start + skip) + 1 + line_offset
                raise MigrationSourceError(
                    f"{_where(path, line)}: the SQL statement starting here never ends "
                    "(an unterminated string, quoted name or /* comment, or a CREATE "
                    "TRIGGER without END); close it and end the statement with ';'",
                    path=path,
                )
            emit(pending, pending_start)
    return statements


def _skip_space_and_comments(sql: str, *, nested: bool) -> int:
    """Return the offset of the first token of ``sql``.

    Only ever called on text that starts at a statement boundary, where the
    parser has already established that nothing but whitespace and comments
    can come before the first token. PostgreSQL block comments nest; SQLite's
    do not (``nested``).
    """
    pos = 0
    size = len(sql)
    while pos < size:
        char = sql[pos]
        if char.isspace():
            pos += 1
        elif sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            pos = size if newline == -1 else newline + 1
        elif sql.startswith("/*", pos):
            depth = 1
            pos += 2
            while pos < size and depth:
                if nested and sql.startswith("/*", pos):
                    depth += 1
                    pos += 2
                elif sql.startswith("*/", pos):
                    depth -= 1
                    pos += 2
                else:
                    pos += 1
        else:
            break
    return pos


def _attach_allow_markers(
    text: str, statements: list[Statement], *, path: str | None, line_offset: int
) -> list[Statement]:
    lines = text.split("\n")
    markers: dict[int, str] = {}  # 1-based line in ``text`` -> reason
    for number, content in enumerate(lines, start=1):
        match = _ALLOW.search(content)
        if match is None:
            continue
        reason = _REASON.match(match["rest"])
        if reason is None:
            raise MigrationSourceError(
                f"{_where(path, number + line_offset)}: the allow non-idempotent marker "
                f"has no reason; write it as {ALLOW_NON_IDEMPOTENT!r} and say why running "
                "the statement twice is safe",
                path=path,
            )
        markers[number] = reason["reason"]
    if not markers:
        return statements

    used: set[int] = set()
    result: list[Statement] = []
    for stmt in statements:
        first = stmt.line - line_offset
        reason_text: str | None = None
        if first in markers:
            reason_text = markers[first]
            used.add(first)
        above = first - 1
        while above >= 1 and lines[above - 1].lstrip().startswith("--"):
            if above in markers:
                reason_text = reason_text or markers[above]
                used.add(above)
            above -= 1
        result.append(dataclasses.replace(stmt, allow_non_idempotent=reason_text))
    stray = sorted(set(markers) - used)
    if stray:
        raise MigrationSourceError(
            f"{_where(path, stray[0] + line_offset)}: this allow non-idempotent marker "
            "belongs to no statement; put it at the end of the statement's first line "
            "or on a comment line directly above the statement (no blank line between)",
            path=path,
        )
    return result


# --- no-transaction allow-list -------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class IdempotentForm:
    """One statement form that may run in a no-transaction migration.

    A no-transaction migration cannot be rolled back: if it fails half-way,
    the statements that already ran stay applied and the retry runs them
    again. So every statement in it has to be harmless when repeated.
    ``sql`` is how the form is written (for the README and error messages),
    ``matches`` decides it on the parse tree (node type and node fields).
    """

    sql: str
    matches: t.Callable[[str, Node], bool] = dataclasses.field(repr=False, compare=False)


def _flag(node: Node, key: str) -> bool:
    return node.get(key) is True


def _reindex_concurrently(node_type: str, node: Node) -> bool:
    if node_type != "ReindexStmt":
        return False
    for param in node.get("params") or []:
        elem = param.get("DefElem", {})
        if elem.get("defname") == "concurrently":
            arg = elem.get("arg")
            if arg is None:  # bare CONCURRENTLY
                return True
            # Protobuf omits default values: (CONCURRENTLY 0) is {"Integer": {}}.
            if "Integer" in arg:
                return bool(arg["Integer"].get("ival", 0))
            value = str(arg.get("String", {}).get("sval", "")).lower()
            return value in ("true", "on", "yes", "t", "y")
    return False


_GUARDED_ALTER_TABLE = frozenset({"AT_AddColumn", "AT_DropColumn", "AT_DropConstraint"})


def _guarded_alter_table(node_type: str, node: Node) -> bool:
    if node_type != "AlterTableStmt" or node.get("objtype") != "OBJECT_TABLE":
        return False
    cmds = node.get("cmds") or []
    return bool(cmds) and all(
        cmd.get("AlterTableCmd", {}).get("subtype") in _GUARDED_ALTER_TABLE
        and _flag(cmd["AlterTableCmd"], "missing_ok")
        for cmd in cmds
    )


def _read_only_select(node_type: str, node: Node) -> bool:
    if node_type != "SelectStmt":
        return False
    # WITH d AS (DELETE ... RETURNING *) SELECT ... writes; only plain CTEs pass.
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if "intoClause" in current:
            return False
        for cte in (current.get("withClause") or {}).get("ctes") or []:
            query = cte.get("CommonTableExpr", {}).get("ctequery") or {}
            if set(query) != {"SelectStmt"}:
                return False
            stack.append(query["SelectStmt"])
        for side in ("larg", "rarg"):  # UNION / INTERSECT / EXCEPT
            if isinstance(current.get(side), dict):
                stack.append(current[side])
    return True


#: What a no-transaction ``.sql`` migration may contain, checked on the parse
#: tree. Anything else needs ``-- safe-migrate: allow non-idempotent -- <reason>``.
#:
#: Caveat for the first form: a failed ``CREATE INDEX CONCURRENTLY`` leaves an
#: INVALID index behind, and ``IF NOT EXISTS`` then skips it on the retry. The
#: statement is idempotent, the result is not guaranteed valid; check
#: ``pg_index.indisvalid`` (or drop the invalid index) after a failure.
NO_TRANSACTION_ALLOWED: tuple[IdempotentForm, ...] = (
    IdempotentForm(
        "CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS name ON ...",
        lambda kind, node: kind == "IndexStmt" and _flag(node, "if_not_exists"),
    ),
    IdempotentForm(
        "DROP INDEX [CONCURRENTLY] IF EXISTS ...",
        lambda kind, node: (
            kind == "DropStmt"
            and node.get("removeType") == "OBJECT_INDEX"
            and _flag(node, "missing_ok")
        ),
    ),
    IdempotentForm("REINDEX {INDEX|TABLE|SCHEMA|...} CONCURRENTLY ...", _reindex_concurrently),
    IdempotentForm(
        "ALTER TYPE ... ADD VALUE IF NOT EXISTS ...",
        lambda kind, node: kind == "AlterEnumStmt" and _flag(node, "skipIfNewValExists"),
    ),
    IdempotentForm("VACUUM ... / ANALYZE ...", lambda kind, node: kind == "VacuumStmt"),
    IdempotentForm(
        "CREATE TABLE IF NOT EXISTS ... (and CREATE TABLE IF NOT EXISTS ... AS ...)",
        lambda kind, node: (
            kind in ("CreateStmt", "CreateTableAsStmt") and _flag(node, "if_not_exists")
        ),
    ),
    IdempotentForm(
        "CREATE ... IF NOT EXISTS ... (any other: SCHEMA, SEQUENCE, EXTENSION, ...)",
        lambda kind, node: _flag(node, "if_not_exists"),
    ),
    IdempotentForm(
        "DROP ... IF EXISTS ... (any object type)",
        lambda kind, node: kind.startswith("Drop") and _flag(node, "missing_ok"),
    ),
    IdempotentForm(
        "ALTER TABLE ... ADD COLUMN IF NOT EXISTS / DROP COLUMN IF EXISTS / "
        "DROP CONSTRAINT IF EXISTS (every subcommand guarded)",
        _guarded_alter_table,
    ),
    IdempotentForm(
        "SELECT ... (read-only: no INTO, no data-modifying WITH)",
        _read_only_select,
    ),
)


def idempotent_form(statement: Statement) -> IdempotentForm | None:
    """Return the :data:`NO_TRANSACTION_ALLOWED` entry ``statement`` matches, if any.

    Needs a PostgreSQL parse tree; a statement without one (SQLite) matches
    nothing.
    """
    if statement.node_type is None or statement.node is None:
        return None
    for form in NO_TRANSACTION_ALLOWED:
        if form.matches(statement.node_type, statement.node):
            return form
    return None
