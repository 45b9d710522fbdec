"""SQL text → parse trees, and small helpers to read those trees.

Parsing is PostgreSQL's own grammar (libpg_query through ``pgparse``, BSD-3),
reached through :func:`flask_safe_migrate.sqlsplit.split_sql` so that
statement boundaries and lines are computed exactly as the runner computes
them. ``pgparse`` is imported lazily there, and this module is only
imported by the verify package, which the runner never imports.

SQL embedded in Python carries bind placeholders (SQLAlchemy ``:name``,
psycopg ``%(name)s`` and ``%s``) that the grammar rejects, so
:func:`rewrite_placeholders` turns them into ``$n`` first, padding with
spaces so that offsets (and so lines and snippets) do not move.
"""

from __future__ import annotations

import re
import typing as t

from ._model import Node

# SQLAlchemy's own rule for text() binds: ':name' not preceded by ':', a word
# character or a backslash (so '::int' casts and '\:' escapes stay), and not
# followed by ':'.
_COLON = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_PYFORMAT = re.compile(r"%\((\w+)\)s|%s")


def rewrite_placeholders(sql: str) -> str:
    """Replace bind placeholders outside quotes and comments by ``$1``, ``$2``...

    Each placeholder is padded to its own length where possible, so the
    rewritten text lines up with the original character for character.
    """
    pyformat = "%s" in sql or "%(" in sql
    out: list[str] = []
    numbers: dict[str, int] = {}

    def number(name: str) -> str:
        if name == "%s":
            numbers[f"%s#{len(numbers)}"] = len(numbers) + 1
            return f"${len(numbers)}"
        if name not in numbers:
            numbers[name] = len(numbers) + 1
        return f"${numbers[name]}"

    def replace_code(code: str) -> str:
        def colon(match: re.Match[str]) -> str:
            return number(match[1]).ljust(len(match[0]))

        def percent(match: re.Match[str]) -> str:
            return number(match[1] or "%s").ljust(len(match[0]))

        code = _COLON.sub(colon, code)
        if pyformat:
            code = _PYFORMAT.sub(percent, code).replace("%%", "% ")
        return code

    pos = 0
    start = 0
    size = len(sql)
    while pos < size:
        char = sql[pos]
        end = -1
        if char == "'" or char == '"':
            end = pos + 1
            while end < size:
                if sql[end] == char:
                    if end + 1 < size and sql[end + 1] == char:
                        end += 2
                        continue
                    break
                end += 1
            end = min(end + 1, size)
        elif sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            end = size if newline == -1 else newline
        elif sql.startswith("/*", pos):
            close = sql.find("*/", pos + 2)
            end = size if close == -1 else close + 2
        elif char == "$":
            tag = re.match(r"\$(?:[A-Za-z_]\w*)?\$", sql[pos:])
            if tag:
                close = sql.find(tag[0], pos + len(tag[0]))
                end = size if close == -1 else close + len(tag[0])
        if end == -1:
            pos += 1
            continue
        out.append(replace_code(sql[start:pos]))
        out.append(sql[pos:end])
        pos = start = end
    out.append(replace_code(sql[start:]))
    return "".join(out)


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$")


def statement_ends(sql: str) -> list[int]:
    """Offsets of the ``;`` that end statements (outside quotes, comments, dollar quotes).

    Only used to step over a statement PostgreSQL's grammar rejected, so that
    the statements after it are still checked; a ``;`` inside a ``BEGIN
    ATOMIC ... END`` body is taken as an end, which at worst splits one bad
    statement into two findings.
    """
    ends: list[int] = []
    pos = 0
    size = len(sql)
    while pos < size:
        char = sql[pos]
        if char == ";":
            ends.append(pos)
            pos += 1
        elif char == "'" or char == '"':
            escapes = (
                char == "'"
                and pos > 0
                and sql[pos - 1] in "eE"
                and (pos < 2 or not (sql[pos - 2].isalnum() or sql[pos - 2] in "_$"))
            )
            pos += 1
            while pos < size:
                if escapes and sql[pos] == "\\":
                    pos += 2
                    continue
                if sql[pos] == char:
                    if pos + 1 < size and sql[pos + 1] == char:
                        pos += 2
                        continue
                    break
                pos += 1
            pos += 1
        elif sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            pos = size if newline == -1 else newline + 1
        elif sql.startswith("/*", pos):
            depth = 1
            pos += 2
            while pos < size and depth:
                if sql.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif sql.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        elif char == "$" and not (pos > 0 and (sql[pos - 1].isalnum() or sql[pos - 1] in "_$")):
            tag = _DOLLAR_TAG.match(sql, pos)
            if tag:
                close = sql.find(tag[0], tag.end())
                pos = size if close == -1 else close + len(tag[0])
            else:
                pos += 1
        else:
            pos += 1
    return ends


# -- tree helpers ---------------------------------------------------------------


def walk(node: t.Any) -> t.Iterator[tuple[str, Node]]:
    """Yield ``(node_type, fields)`` for every typed node below ``node``, depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if isinstance(value, dict) and key[:1].isupper():
                    yield key, value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(reversed(current))


def relname(range_var: Node | None) -> str | None:
    """The (lower-case) table name of a ``RangeVar``."""
    if not range_var:
        return None
    name = range_var.get("relname")
    return str(name).lower() if name else None


def strings(items: t.Iterable[t.Any] | None) -> list[str]:
    """The ``sval`` of a list of ``String`` nodes (column lists, qualified names)."""
    result = []
    for item in items or []:
        value = item.get("String", {}).get("sval") if isinstance(item, dict) else None
        if value is not None:
            result.append(str(value).lower())
    return result


def column_ref(node: t.Any) -> tuple[str | None, str] | None:
    """``(qualifier, column)`` of a ``ColumnRef`` node (``a.email`` → ``("a", "email")``)."""
    if not isinstance(node, dict) or "ColumnRef" not in node:
        return None
    fields = strings(node["ColumnRef"].get("fields"))
    if not fields:
        return None
    return (fields[-2] if len(fields) > 1 else None, fields[-1])


def conjuncts(expr: t.Any) -> list[Node]:
    """The top-level ``AND`` terms of a WHERE clause."""
    if not isinstance(expr, dict):
        return []
    boolean = expr.get("BoolExpr")
    if boolean and boolean.get("boolop") == "AND_EXPR":
        terms: list[Node] = []
        for arg in boolean.get("args") or []:
            terms.extend(conjuncts(arg))
        return terms
    return [expr]


def operator(a_expr: Node) -> str:
    """The operator of an ``A_Expr`` (``=``, ``<>``...)."""
    names = strings(a_expr.get("name"))
    return names[-1] if names else ""


def type_name(type_node: Node | None) -> tuple[str, tuple[int, ...]]:
    """``("varchar", (20,))`` for a ``TypeName`` node (schema ``pg_catalog`` dropped)."""
    if not type_node:
        return ("", ())
    names = strings(type_node.get("names"))
    name = names[-1] if names else ""
    mods: list[int] = []
    for mod in type_node.get("typmods") or []:
        const = mod.get("A_Const", {}) if isinstance(mod, dict) else {}
        ival = const.get("ival")
        if isinstance(ival, dict):
            mods.append(int(ival.get("ival", 0)))
    if type_node.get("arrayBounds"):
        name += "[]"
    return (name, tuple(mods))


def constraints_of(column_def: Node) -> list[Node]:
    """The ``Constraint`` nodes of a ``ColumnDef``."""
    return [c["Constraint"] for c in column_def.get("constraints") or [] if "Constraint" in c]


def alter_commands(node: Node) -> list[Node]:
    """The ``AlterTableCmd`` nodes of an ``AlterTableStmt``."""
    return [c["AlterTableCmd"] for c in node.get("cmds") or [] if "AlterTableCmd" in c]


def created_table(node_type: str, node: Node) -> str | None:
    """The table a ``CREATE TABLE [AS]`` statement creates."""
    if node_type == "CreateStmt":
        return relname(node.get("relation"))
    if node_type == "CreateTableAsStmt":
        return relname((node.get("into") or {}).get("rel"))
    return None


def target_table(node_type: str, node: Node) -> str | None:
    """The table a statement changes (DDL or DML), if it has one."""
    if node_type in ("AlterTableStmt", "IndexStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"):
        return relname(node.get("relation"))
    if node_type in ("ClusterStmt", "RenameStmt"):
        return relname(node.get("relation"))
    if node_type == "TruncateStmt":
        tables = truncated_tables(node)
        return tables[0] if tables else None
    return created_table(node_type, node)


def truncated_tables(node: Node) -> list[str]:
    """The tables a ``TRUNCATE`` empties (those named; ``CASCADE`` adds more)."""
    names = (relname(item.get("RangeVar")) for item in node.get("relations") or [])
    return [name for name in names if name]


#: Statements that change rows. ``TRUNCATE`` is here although PostgreSQL
#: files it under DDL: what it does is delete every row of the table (under
#: ACCESS EXCLUSIVE), which is a data change no safe category covers.
DML_TYPES = frozenset(
    {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt", "TruncateStmt"}
)


def is_dml(node_type: str, node: Node) -> bool:
    """Whether a statement changes rows (rather than the schema, or nothing).

    ``COPY ... FROM`` loads rows; ``COPY ... TO`` only reads. A ``SELECT``
    writes when it has ``INTO`` or a data-modifying ``WITH``. ``TRUNCATE``
    deletes every row: DML (see :data:`DML_TYPES`).
    """
    if node_type == "CopyStmt":
        return bool(node.get("is_from"))
    if node_type in DML_TYPES:
        return True
    if node_type == "SelectStmt":
        if node.get("intoClause"):
            return True
        return any(kind in ("InsertStmt", "UpdateStmt", "DeleteStmt") for kind, _ in walk(node))
    return False


def is_query(node_type: str) -> bool:
    """Read-only statements and session settings: neither DDL nor DML."""
    return node_type in ("SelectStmt", "ExplainStmt", "VariableSetStmt", "VariableShowStmt")
