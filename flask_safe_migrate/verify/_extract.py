"""Find the files, read them, and pull out every SQL statement with its place.

``.sql`` files are split exactly as the runner splits them
(:func:`~flask_safe_migrate.sqlsplit.split_sql`, header directives read by
the loader). Python files are read with :mod:`ast`, never imported: the SQL
is the string literal passed to ``execute_with_retry`` (or a configured
retry function), ``m.execute`` / ``m.scalar``, ``conn.execute(text(...))``,
``db.session.execute(text(...))``, ``cursor.execute(...)`` and the like,
following names bound to literals in the same function or at module level
(including ``for sql in STATEMENTS``).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import re
import typing as t

from ..errors import BadInputError
from ..errors import MigrationSourceError
from ..loader import MIGRATION_NAME
from ..loader import _scan_header
from ..sqlsplit import Statement
from ..sqlsplit import _skip_space_and_comments
from ..sqlsplit import split_sql
from . import _suppress
from ._finding import Finding
from ._finding import Severity
from ._model import SqlStatement
from ._model import Unit
from ._model import Via
from ._scopes import Binding
from ._scopes import ModuleIndex
from ._scopes import call_name
from ._sql import rewrite_placeholders
from ._sql import statement_ends
from .dml import DYNAMIC_SQL
from .dml import SQL_SYNTAX_ERROR
from .dml import UNVERIFIABLE_SQL
from .inputs import MIGRATION_SOURCE_ERROR

_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "venv", "build", "dist", "instance"}
)
_EXECUTE_ATTRS = frozenset({"execute", "exec_driver_sql", "executemany", "scalar", "scalars"})
_TEXT_FUNCS = frozenset({"text", "dedent", "literal_column"})
_LINE_BREAK = re.compile(r"\r\n?|\n")  # line ends as Python's tokenizer counts them


# -- files ------------------------------------------------------------------------------


def collect(paths: t.Sequence[str | os.PathLike[str]]) -> list[pathlib.Path]:
    """The ``.sql`` and ``.py`` files under ``paths``, in a meaningful order.

    Files of a directory are ordered like migrations (by version number,
    then name); hidden directories, ``__pycache__``, virtualenvs and build
    output are skipped. A file named explicitly must be ``.sql`` or ``.py``.

    :raises BadInputError: a path does not exist or is not a SQL/Python file,
        or a directory under it cannot be listed (its migrations would
        otherwise go unchecked without a word).
    """
    found: list[pathlib.Path] = []
    seen: set[pathlib.Path] = set()
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            for directory, subdirs, files in os.walk(path, onerror=_unreadable_directory):
                subdirs[:] = sorted(
                    d
                    for d in subdirs
                    if not d.startswith(".") and d not in _SKIP_DIRS and not d.endswith(".egg-info")
                )
                chosen = [f for f in files if f.endswith((".sql", ".py")) and not f.startswith(".")]
                for name in sorted(chosen, key=_order):
                    _add(pathlib.Path(directory) / name, found, seen)
        elif path.is_file():
            if path.suffix not in (".sql", ".py"):
                raise BadInputError(
                    f"{path}: not a .sql or .py file; verify reads SQL migrations and Python code"
                )
            _add(path, found, seen)
        elif path.exists():
            raise BadInputError(f"{path}: not a regular file or directory")
        else:
            raise BadInputError(f"{path}: no such file or directory")
    return found


def _unreadable_directory(error: OSError) -> t.NoReturn:
    raise BadInputError(
        f"{error.filename}: cannot be read ({error.strerror or error}); verify would skip "
        "the files in it: make it readable, or leave it out of PATHS"
    ) from error


def _add(path: pathlib.Path, found: list[pathlib.Path], seen: set[pathlib.Path]) -> None:
    key = path.resolve()
    if key not in seen:
        seen.add(key)
        found.append(path)


def _order(name: str) -> tuple[int, int, str]:
    match = MIGRATION_NAME.match(name)
    return (0, int(match[1]), name) if match else (1, 0, name)


def display_path(path: pathlib.Path, cwd: str) -> str:
    """``path`` relative to the working directory, POSIX-style."""
    try:
        relative = os.path.relpath(path, cwd)
    except ValueError:  # another drive on Windows
        relative = str(path)
    return pathlib.PurePath(relative).as_posix()


def read_text(path: pathlib.Path) -> str:
    """The file's text (UTF-8, BOM and CRLF removed as the loader does).

    :raises BadInputError: unreadable, or not UTF-8.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = data.replace(b"\r\n", b"\n")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BadInputError(f"{path}:{line}: is not valid UTF-8; save the file as UTF-8") from exc


# -- shared ------------------------------------------------------------------------------


@dataclasses.dataclass
class Extracted:
    """What one file contributed: units, findings, and its allow comments by line."""

    units: list[Unit] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    allows: dict[int, list[_suppress.Allow]] = dataclasses.field(default_factory=dict)
    all_allows: list[_suppress.Allow] = dataclasses.field(default_factory=list)
    module: PyModule | None = None


def _error_line(exc: MigrationSourceError, display: str, default: int) -> int:
    match = re.match(re.escape(display) + r":(\d+)", str(exc))
    return int(match[1]) if match else default


def _source_error(exc: MigrationSourceError, display: str, line: int) -> Finding:
    text = str(exc)
    prefix = re.match(re.escape(display) + r"(?::\d+)?: ", text)
    message = text[prefix.end() :] if prefix else text
    if "SQL syntax error" in message:
        return Finding(SQL_SYNTAX_ERROR, display, line, message, SQL_SYNTAX_ERROR.fix)
    return Finding(MIGRATION_SOURCE_ERROR, display, line, message, MIGRATION_SOURCE_ERROR.fix)


@dataclasses.dataclass(frozen=True, slots=True)
class _ParseError:
    """SQL the grammar rejects, and the line of the first token of the statement it is in."""

    error: MigrationSourceError
    line: int | None


def _parse(
    sql: str, display: str, line_offset: int = 0
) -> tuple[list[Statement], list[_ParseError]]:
    """Every statement that parses, and an error for each one that does not.

    PostgreSQL's parser stops at the first syntax error; one bad statement
    must not hide the others. On an error, the text before the bad
    statement is parsed on its own, and parsing resumes after the ``;``
    that ends it (found by :func:`~._sql.statement_ends`).
    """
    statements: list[Statement] = []
    errors: list[_ParseError] = []
    offset = 0
    while offset < len(sql):
        piece = sql[offset:]
        piece_offset = line_offset + sql.count("\n", 0, offset)
        try:
            statements.extend(split_sql(piece, path=display, line_offset=piece_offset))
            break
        except MigrationSourceError as exc:
            position = int(getattr(exc.__cause__, "position", 0) or 0)
            if position <= 0:
                errors.append(_ParseError(exc, None))
                break  # not a syntax error at a known place: nothing to step over
            ends = statement_ends(piece)
            start = max((end + 1 for end in ends if end < position - 1), default=0)
            after = next((end + 1 for end in ends if end >= position - 1), None)
            first = start + _skip_space_and_comments(piece[start:], nested=True)
            errors.append(_ParseError(exc, piece_offset + piece.count("\n", 0, first) + 1))
            if start:
                try:
                    statements.extend(
                        split_sql(piece[:start], path=display, line_offset=piece_offset)
                    )
                except MigrationSourceError as again:
                    errors.append(_ParseError(again, None))
                    break
            if after is None:
                break
            offset += after
    return statements, errors


def _expand_do(stmt: SqlStatement, display: str, findings: list[Finding]) -> list[SqlStatement]:
    """The statements inside a ``DO`` block, each placed at the block's line."""
    import pgparse

    try:
        functions = pgparse.parse_pgsql(stmt.sql)
    except pgparse.PGQueryError as exc:
        findings.append(
            Finding(
                UNVERIFIABLE_SQL,
                display,
                stmt.line,
                f"the DO block does not parse as PL/pgSQL ({exc}); its statements cannot be checked",
                UNVERIFIABLE_SQL.fix,
                stmt.short(),
            )
        )
        return []
    inner: list[SqlStatement] = []
    stack: list[t.Any] = [functions]
    queries: list[str] = []
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(reversed(current))
        elif isinstance(current, dict):
            for key, value in current.items():
                if key == "PLpgSQL_stmt_execsql":
                    queries.append(
                        value.get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query", "")
                    )
                elif key == "PLpgSQL_stmt_dynexecute":
                    findings.append(
                        Finding(
                            UNVERIFIABLE_SQL,
                            display,
                            stmt.line,
                            "the DO block runs EXECUTE of a string built at run time: what it "
                            "does cannot be verified, and building SQL from values risks SQL injection",
                            UNVERIFIABLE_SQL.fix,
                            stmt.short(),
                        )
                    )
                else:
                    stack.append(value)
    for query in queries:
        parsed, errors = _parse(rewrite_placeholders(query), display)
        if errors:
            continue  # PL/pgSQL variables in the query; the DO itself parsed
        for raw in parsed:
            if raw.node_type and raw.node is not None:
                inner.append(
                    dataclasses.replace(
                        stmt, sql=raw.sql, node_type=raw.node_type, node=raw.node, raw=raw
                    )
                )
    return inner


def _wrap(
    parsed: list[Statement],
    display: str,
    via: Via,
    findings: list[Finding],
    *,
    line: int | None = None,
    comment: t.Callable[[Statement], str] | str = "",
    original: tuple[str, str] | None = None,
    param_rows: int | None = 1,
) -> list[SqlStatement]:
    result: list[SqlStatement] = []
    cursor = 0
    for raw in parsed:
        if raw.node_type is None or raw.node is None:
            continue
        text = raw.sql
        if original is not None:
            rewritten, source = original
            at = rewritten.find(text, cursor)
            if at != -1 and len(rewritten) == len(source):
                text = source[at : at + len(text)]
                cursor = at + len(text)
        stmt = SqlStatement(
            path=display,
            line=line if line is not None else raw.line,
            sql=text,
            node_type=raw.node_type,
            node=raw.node,
            via=via,
            comment=comment if isinstance(comment, str) else comment(raw),
            param_rows=param_rows,
            raw=raw,
        )
        if raw.node_type == "DoStmt":
            result.extend(_expand_do(stmt, display, findings))
        else:
            result.append(stmt)
    return result


def _comment_above(lines: list[str], line: int, marker: str) -> str:
    """The run of comment lines right above ``line`` plus a comment at its end."""
    parts: list[str] = []
    above = line - 1
    while above >= 1 and lines[above - 1].lstrip().startswith(marker):
        parts.append(lines[above - 1].strip()[len(marker) :].strip())
        above -= 1
    parts.reverse()
    current = lines[line - 1] if 0 < line <= len(lines) else ""
    if marker in current and not current.lstrip().startswith(marker):
        parts.append(current.split(marker, 1)[1].strip())
    return "\n".join(p for p in parts if p and not p.startswith("safe-migrate:"))


# -- SQL files ----------------------------------------------------------------------------


def extract_sql(path: pathlib.Path, display: str, text: str) -> Extracted:
    """Units and findings of one ``.sql`` file (its up part; the down part is syntax-checked)."""
    out = Extracted()
    out.all_allows = _suppress.scan(text, python=False)
    out.allows = _suppress.attach(text, out.all_allows, python=False)
    # The runner's header reader does not know verify's allow comments; hide
    # them from it (same length, so offsets stay put).
    masked_lines = text.split("\n")
    for allow in out.all_allows:
        masked_lines[allow.line - 1] = re.sub(
            r"safe-migrate\s*:", "safe_migrate_", masked_lines[allow.line - 1]
        )
    masked = "\n".join(masked_lines)
    try:
        header = _scan_header(masked, display)
    except MigrationSourceError as exc:
        out.findings.append(_source_error(exc, display, _error_line(exc, display, 1)))
        header = _scan_header("", display)
    up = text if header.up_end is None else text[: header.up_end]
    lines = text.split("\n")

    def comment(raw: Statement) -> str:
        return _comment_above(lines, raw.line, "--")

    def statements_of(sql: str, line_offset: int = 0) -> list[SqlStatement]:
        parsed, errors = _parse(sql, display, line_offset)
        for bad in errors:
            out.findings.append(
                _source_error(bad.error, display, bad.line or _error_line(bad.error, display, 1))
            )
        return _wrap(parsed, display, "migration", out.findings, comment=comment)

    statements = statements_of(up)
    down: list[SqlStatement] = []
    if header.down_start is not None:
        down = statements_of(text[header.down_start :], header.down_line or 0)
    out.units.append(
        Unit(
            path=display,
            label=path.stem,
            kind="sql",
            group=display.rsplit("/", 1)[0] if "/" in display else ".",
            transactional=header.transactional,
            statements=tuple(statements),
            down=tuple(down),
        )
    )
    return out


# -- Python files -------------------------------------------------------------------------


@dataclasses.dataclass
class PyModule:
    """A parsed Python file and what the point checks need to know about it."""

    path: str
    text: str
    is_migration: bool
    migration_scope: bool
    retry_names: frozenset[str]
    package_names: frozenset[str]
    lines: list[str]
    index: ModuleIndex

    @property
    def tree(self) -> ast.Module:
        """The module's syntax tree."""
        return self.index.tree

    @property
    def parents(self) -> dict[ast.AST, ast.AST]:
        """Every node's parent (the module has none)."""
        return self.index.parents

    def segment(self, node: ast.AST, limit: int = 400) -> str:
        """The source of ``node`` on one line, at most ``limit`` characters.

        :func:`ast.get_source_segment` splits the whole file on every call,
        which made verify quadratic in the calls of a file; this slices the
        lines split once (AST columns are UTF-8 byte offsets).
        """
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        first_col, end_col = (
            getattr(node, "col_offset", None),
            getattr(node, "end_col_offset", None),
        )
        if start is None or end is None or first_col is None or end_col is None:
            return ""
        pieces: list[str] = []
        size = 0
        for number in range(start, min(end, len(self.lines)) + 1):
            line = self.lines[number - 1]
            if number == start or number == end:
                data = line.encode("utf-8")
                data = data[:end_col] if number == end else data
                data = data[first_col:] if number == start else data
                line = data.decode("utf-8", errors="replace")
            pieces.append(line)
            size += len(line)
            if size > limit * 2:
                break
        flat = " ".join(" ".join(pieces).split())
        return flat[:limit]

    def top_function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The outermost function (or method) around ``node``."""
        found = None
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found = current
            current = self.parents.get(current)
        return found

    def on_migration_parameter(self, call: ast.Call) -> bool:
        """A method call on the parameter of a migration's ``upgrade(m)`` / ``downgrade(m)``."""
        func = call.func
        if not self.is_migration or not isinstance(func, ast.Attribute):
            return False
        top = self.top_function(call)
        return (
            top is not None
            and bool(top.args.args)
            and isinstance(func.value, ast.Name)
            and func.value.id == top.args.args[0].arg
        )

    def in_retry_definition(self, node: ast.AST) -> bool:
        """Inside the body of a retry function (its SQL comes from its callers, checked there)."""
        return any(
            isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef))
            and parent.name in self.retry_names
            for parent in self.index.ancestors(node)
        )

    def comment_for(self, line: int) -> str:
        """The ``#`` comments on or right above ``line``."""
        return _comment_above(self.lines, line, "#")

    def is_retry_call(self, call: ast.Call) -> bool:
        """A call to a retry executor (configured name, or an alias of one)."""
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self.retry_names
        return isinstance(func, ast.Attribute) and func.attr in self.retry_names


def parse_python(
    path: pathlib.Path, display: str, text: str, retry_functions: t.Sequence[str]
) -> PyModule:
    """Parse a Python file, or raise :class:`BadInputError` (exit 2) when it does not parse."""
    try:
        tree = ast.parse(text, filename=display)
    except SyntaxError as exc:
        raise BadInputError(
            f"{display}:{exc.lineno}: Python syntax error: {exc.msg}; verify reads Python "
            "files without importing them, but they must parse"
        ) from exc
    index = ModuleIndex(tree)
    retry = set(retry_functions)
    package: set[str] = set()
    for node in index.imports_from:
        for alias in node.names:
            if alias.name in retry_functions or alias.name == "run_with_retry":
                local = alias.asname or alias.name
                retry.add(local)
                if (node.module or "").split(".")[0] == "flask_safe_migrate":
                    package.add(local)
    is_migration = MIGRATION_NAME.match(path.name) is not None
    return PyModule(
        path=display,
        text=text,
        is_migration=is_migration,
        migration_scope=is_migration or "migrat" in path.stem.lower(),
        retry_names=frozenset(retry),
        package_names=frozenset(package),
        lines=_LINE_BREAK.split(text),
        index=index,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Dynamic:
    """SQL whose text is decided at run time; ``how`` completes "SQL built with ..."."""

    how: str


@dataclasses.dataclass(frozen=True, slots=True)
class Unknown:
    """A value verify cannot read; ``what`` says what it is, ``text`` whether it is SQL text."""

    what: str
    text: bool = False


Resolved = list[str] | Dynamic | Unknown  # literal SQL texts | built at run time | unreadable

_CHAIN_METHODS = frozenset({"bindparams", "columns", "execution_options", "strip", "dedent"})


def _lines(bindings: t.Sequence[Binding]) -> str:
    return ", ".join(str(b.position[0]) for b in bindings)


class _Resolver:
    """Follows an SQL argument back to string literals, through names bound in scope."""

    def __init__(self, module: PyModule) -> None:
        self.module = module
        self.index = module.index

    def resolve(self, expr: ast.expr, at: ast.AST, depth: int = 0) -> Resolved:
        if depth > 8:
            return Unknown("a value bound through too many names")
        if isinstance(expr, ast.Constant):
            if isinstance(expr.value, str):
                return [expr.value]
            return Unknown(f"the constant {expr.value!r}")
        if isinstance(expr, ast.JoinedStr):
            if all(isinstance(v, ast.Constant) for v in expr.values):
                return ["".join(str(t.cast(ast.Constant, v).value) for v in expr.values)]
            return Dynamic("an f-string")
        if isinstance(expr, ast.BinOp):
            if isinstance(expr.op, ast.Add):
                left = self.resolve(expr.left, at, depth + 1)
                right = self.resolve(expr.right, at, depth + 1)
                if (
                    isinstance(left, list)
                    and isinstance(right, list)
                    and len(left) == len(right) == 1
                ):
                    return [left[0] + right[0]]
                if (
                    isinstance(left, Unknown)
                    and isinstance(right, Unknown)
                    and not (left.text or right.text)
                ):
                    return Unknown("a sum of values that are not SQL text")
                return Dynamic("'+' concatenation")
            if isinstance(expr.op, ast.Mod):
                left = self.resolve(expr.left, at, depth + 1)
                if isinstance(left, Unknown) and not left.text:
                    return Unknown("a '%' expression")
                return Dynamic("'%' formatting")
            return Unknown("an arithmetic expression")
        if isinstance(expr, ast.Call):
            return self._call(expr, at, depth)
        if isinstance(expr, ast.Name):
            return self._name(expr, at, depth)
        return Unknown(f"a {type(expr).__name__} expression")

    def _call(self, expr: ast.Call, at: ast.AST, depth: int) -> Resolved:
        func = expr.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "format" and isinstance(func, ast.Attribute):
            base = self.resolve(func.value, at, depth + 1)
            if isinstance(base, Unknown) and not base.text:
                return Unknown("the result of .format()")
            return Dynamic("'.format()'")
        if name in _TEXT_FUNCS:
            if not expr.args:
                return Unknown(f"{name}() without a literal argument", text=True)
            inner = self.resolve(expr.args[0], at, depth + 1)
            if isinstance(inner, Unknown):
                return Unknown(inner.what, text=True)
            return inner
        if name in _CHAIN_METHODS and isinstance(func, ast.Attribute):
            # text("...").bindparams(x=1), .columns(...), .execution_options(...)
            base = self.resolve(func.value, at, depth + 1)
            if not isinstance(base, Unknown) or base.text:
                return base
        shown = self.module.segment(expr.func, 60) or "a function"
        return Unknown(f"the result of {shown}()")

    def _bindings(self, name: ast.Name, at: ast.AST) -> list[Binding]:
        """The bindings of ``name`` whose value may be the one seen at ``at``."""
        scope = self.index.scope(at)
        if name.id in scope.bindings:
            return self.index.reaching(name.id, at)
        for outer in self.index.outer_scopes(scope):
            if name.id in outer.bindings:
                # an enclosing function or the module: bound before the call runs
                return list(outer.bindings[name.id])
        return []

    def _name(self, name: ast.Name, at: ast.AST, depth: int) -> Resolved:
        bindings = self._bindings(name, at)
        if not bindings:
            return Unknown(f"the name {name.id!r}, bound nowhere in this file")
        growing = [b for b in bindings if b.kind == "augassign"]
        if growing:
            op = t.cast(ast.AugAssign, growing[0].node).op
            symbol = {ast.Add: "+=", ast.Mod: "%="}.get(type(op), "an augmented assignment")
            return Dynamic(f"{symbol!r} on {name.id!r} (line {_lines(growing)})")
        if len(bindings) == 1:
            return self._binding(bindings[0], name, at, depth)
        values = [self._binding(b, name, at, depth) for b in bindings]
        if all(isinstance(v, list) for v in values):
            merged: list[str] = []
            for value in values:
                merged.extend(x for x in t.cast(list[str], value) if x not in merged)
            return merged
        return Dynamic(
            f"{name.id!r} taking a value chosen at run time (bound at lines "
            f"{_lines(sorted(bindings, key=lambda b: b.position))}, not all to literal SQL)"
        )

    def _binding(self, binding: Binding, name: ast.Name, at: ast.AST, depth: int) -> Resolved:
        if binding.kind == "param":
            function = t.cast(ast.FunctionDef, binding.node)
            return Unknown(f"the parameter {name.id!r} of {function.name}()")
        if binding.kind == "for" and binding.value is not None:
            return self._items(binding.value, at, depth)
        if binding.kind == "assign" and binding.value is not None:
            return self.resolve(binding.value, binding.node, depth + 1)
        return Unknown(f"{name.id!r} as bound at line {binding.position[0]}")

    def _value(self, name: ast.Name, at: ast.AST) -> ast.expr | None:
        """The expression ``name`` is bound to at ``at``, when exactly one assignment reaches it."""
        bindings = self._bindings(name, at)
        if len(bindings) == 1 and bindings[0].kind == "assign":
            return bindings[0].value
        return None

    def _items(self, iterable: ast.expr, at: ast.AST, depth: int) -> Resolved:
        if isinstance(iterable, ast.Name):
            value = self._value(iterable, at)
            if value is None:
                return Unknown(f"the items of {iterable.id!r}")
            iterable = value
        if isinstance(iterable, (ast.List, ast.Tuple)):
            result: list[str] = []
            for element in iterable.elts:
                item = self.resolve(element, at, depth + 1)
                if not isinstance(item, list):
                    return item
                result.extend(item)
            return result
        return Unknown("the items of an iterable that is not a literal list")

    def rows(self, expr: ast.expr | None, at: ast.AST, depth: int = 0) -> int | None:
        """How many parameter sets a call passes (1 for none or a dict)."""
        if expr is None or isinstance(expr, ast.Dict):
            return 1
        if isinstance(expr, ast.Constant) and expr.value is None:
            return 1
        if isinstance(expr, (ast.List, ast.Tuple)):
            if all(isinstance(e, (ast.Dict, ast.Tuple, ast.List)) for e in expr.elts):
                return len(expr.elts) if isinstance(expr, ast.List) or expr.elts else 1
            return 1  # a tuple of positional values
        if isinstance(expr, ast.Call) and getattr(expr.func, "id", "") == "dict":
            return 1
        if isinstance(expr, ast.Name) and depth < 4:
            value = self._value(expr, at)
            return self.rows(value, at, depth + 1) if value is not None else None
        return None


def _sql_arguments(
    module: PyModule, call: ast.Call
) -> tuple[Via, ast.expr, ast.expr | None] | None:
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if module.is_retry_call(call):
        sql = keywords.get("sql") or keywords.get("statement") or keywords.get("query")
        params = keywords.get("params") or keywords.get("parameters")
        if sql is None:
            if len(call.args) >= 2:
                sql = call.args[1]
                params = params or (call.args[2] if len(call.args) > 2 else None)
            elif call.args:
                sql = call.args[0]
        if sql is None:
            return None
        via: Via = "migration" if module.is_migration else "retry"
        return via, sql, params
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "backfill":
        receiver = func.value
        if module.is_migration or (isinstance(receiver, ast.Name) and receiver.id == "m"):
            return _backfill_as_sql(call, keywords)
    if isinstance(func, ast.Attribute) and func.attr in _EXECUTE_ATTRS and call.args:
        params = call.args[1] if len(call.args) > 1 else keywords.get("parameters")
        return ("migration" if module.is_migration else "execute"), call.args[0], params
    return None


def _backfill_as_sql(
    call: ast.Call, keywords: dict[str, ast.expr]
) -> tuple[Via, ast.expr, ast.expr | None] | None:
    """``m.backfill(table, set=..., where=...)`` checked as the UPDATE each batch runs.

    The helper is the safe way to do a mass UPDATE (batched, resumable, its
    WHERE guard makes it idempotent), so it is documented by construction.
    """
    table = call.args[0] if call.args else keywords.get("table")
    parts = [table, keywords.get("set"), keywords.get("where")]
    if not all(isinstance(p, ast.Constant) and isinstance(p.value, str) for p in parts):
        return None
    name, assignment, guard = (str(t.cast(ast.Constant, p).value) for p in parts)
    sql = (
        "-- m.backfill: batched, resumable one-time backfill\n"
        f"UPDATE {name} SET {assignment} WHERE {guard}"
    )
    return "migration", ast.copy_location(ast.Constant(sql), call), None


_UNVERIFIABLE_FIX = (
    "pass the SQL as a string literal or a module-level constant; if this function only "
    "forwards its callers' SQL, name it a retry function (--retry-function NAME or "
    "SAFE_MIGRATE_VERIFY_RETRY_FUNCTIONS) so that the SQL of its callers is checked; or accept "
    "it with '# safe-migrate: allow[unverifiable-sql] <reason>'"
)


def _executor_argument(module: PyModule, call: ast.Call) -> bool:
    """Whether ``call`` is the retry executor or ``m.execute``: its argument is always SQL."""
    func = call.func
    return (
        module.is_retry_call(call)
        or (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "m"
        )
        or module.on_migration_parameter(call)
    )


def _retried(module: PyModule, call: ast.Call) -> bool:
    """Whether ``call`` runs inside a hand-written retry: a retry function's body, or an
    attempt loop (``while``, or ``for ... in range(...)``) with a ``try``/``except`` around it.
    """
    if module.in_retry_definition(call):
        return True
    child: ast.AST = call
    guarded = False
    for parent in module.index.ancestors(call):
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return False
        if isinstance(parent, ast.Try) and parent.handlers and child in parent.body:
            guarded = True
        if guarded and isinstance(parent, ast.While):
            return True
        if (
            guarded
            and isinstance(parent, (ast.For, ast.AsyncFor))
            and isinstance(parent.iter, ast.Call)
            and call_name(parent.iter) == "range"
        ):
            return True
        child = parent
    return False


def _unverifiable(module: PyModule, call: ast.Call, unknown: Unknown) -> Finding:
    return Finding(
        UNVERIFIABLE_SQL,
        module.path,
        call.lineno,
        f"the SQL passed here is {unknown.what}: verify reads only literal SQL, so what this "
        "call runs is not checked",
        _UNVERIFIABLE_FIX,
        module.segment(call, 120),
        Severity.WARNING,
    )


def extract_python(module: PyModule) -> Extracted:
    """Units (per migration file, or per function of an application module) and findings."""
    out = Extracted(module=module)
    out.all_allows = _suppress.scan(module.text, python=True)
    out.allows = _suppress.attach(module.text, out.all_allows, python=True)
    resolver = _Resolver(module)
    units: dict[str, tuple[list[SqlStatement], list[SqlStatement]]] = {}
    order: list[str] = []
    for call in module.index.calls:
        found = _sql_arguments(module, call)
        if found is None:
            continue
        via, sql_expr, params = found
        resolved = resolver.resolve(sql_expr, call)
        if isinstance(resolved, Unknown):
            if (
                resolved.text or _executor_argument(module, call)
            ) and not module.in_retry_definition(call):
                out.findings.append(_unverifiable(module, call, resolved))
            continue
        snippet = module.segment(call, 120)
        if isinstance(resolved, Dynamic):
            out.findings.append(
                Finding(
                    DYNAMIC_SQL,
                    module.path,
                    call.lineno,
                    f"SQL built with {resolved.how} cannot be verified, and interpolating values "
                    "into SQL is an SQL-injection risk",
                    DYNAMIC_SQL.fix,
                    snippet,
                )
            )
            continue
        if via == "execute" and _retried(module, call):
            via = "retry"
        top = module.top_function(call)
        if module.is_migration:
            label = pathlib.PurePath(module.path).stem
            is_down = top is not None and top.name == "downgrade"
        else:
            label = f"{pathlib.PurePath(module.path).name}:{top.name if top else '<module>'}"
            is_down = False
        if label not in units:
            units[label] = ([], [])
            order.append(label)
        rows = resolver.rows(params, call)
        comment = module.comment_for(call.lineno)
        for sql in resolved:
            rewritten = rewrite_placeholders(sql)
            parsed, errors = _parse(rewritten, module.path)
            for bad in errors:
                message = str(bad.error)
                message = message.split(": ", 1)[1] if message.startswith(module.path) else message
                out.findings.append(
                    Finding(
                        SQL_SYNTAX_ERROR,
                        module.path,
                        call.lineno,
                        message,
                        SQL_SYNTAX_ERROR.fix,
                        snippet,
                    )
                )
            sql_comments = "\n".join(
                line.strip()[2:].strip()
                for line in sql.split("\n")
                if line.strip().startswith("--")
            )
            statements = _wrap(
                parsed,
                module.path,
                via,
                out.findings,
                line=call.lineno,
                comment="\n".join(p for p in (comment, sql_comments) if p),
                original=(rewritten, sql),
                param_rows=rows,
            )
            units[label][1 if is_down else 0].extend(statements)
    transactional: bool | None = None
    if module.is_migration:
        transactional = True
        for stmt in module.tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and any(isinstance(x, ast.Name) and x.id == "transaction" for x in stmt.targets)
                and isinstance(stmt.value, ast.Constant)
            ):
                transactional = bool(stmt.value.value)
    group = module.path
    if module.is_migration:
        group = module.path.rsplit("/", 1)[0] if "/" in module.path else "."
    for label in order:
        up, down = units[label]
        out.units.append(
            Unit(
                path=module.path,
                label=label,
                kind="py-migration" if module.is_migration else "python",
                group=group,
                transactional=transactional,
                statements=tuple(up),
                down=tuple(down),
            )
        )
    if module.is_migration and not order:
        out.units.append(
            Unit(
                module.path,
                pathlib.PurePath(module.path).stem,
                "py-migration",
                group,
                transactional,
                (),
            )
        )
    return out
