"""Point 3: migrations are DDL, or DML in one of four known-safe categories.

Every statement that changes rows is classified, with evidence:

``dedup``
    A ``DELETE`` of duplicate rows (a self-join on the key columns, or a
    ``GROUP BY`` / ``PARTITION BY`` of them) followed by a ``CREATE UNIQUE
    INDEX`` or unique constraint on the same table and columns, later in the
    same migration or function, or in the next migration on that table. An
    ``UPDATE`` that first re-points references from the duplicates onto the
    kept row (``PARTITION BY`` the same key, before such a ``DELETE``) is
    part of the same dedup.
``seed``
    An ``INSERT ... VALUES`` of at most ``SAFE_MIGRATE_SEED_MAX_ROWS``
    (default 10) literal rows (counting every parameter set of an
    ``executemany``-style call).
``backfill``
    An ``UPDATE`` whose ``WHERE`` makes it idempotent (``col IS NULL`` on a
    column it sets, ``col <> v`` when it sets ``col = v``...), documented by
    a comment on or right above it.
``orphan_cleanup``
    A ``DELETE`` of rows whose reference is missing (``NOT EXISTS``,
    ``NOT IN``, or an anti-join), or an ``UPDATE`` setting that reference to
    ``NULL``, followed by a foreign key on that table and column (added, or
    validated).

Anything else is unsafe DML (rule ``unsafe-dml``): a migration can run on a
table of any size, while the app serves traffic, and be retried; an
unbounded or non-idempotent data change belongs in a batched job.
``TRUNCATE`` counts as DML (it deletes every row, under ``ACCESS
EXCLUSIVE``) and is always unsafe: accept it with a reason for a staging or
scratch table.

``dynamic-sql``: SQL built at run time (f-strings, ``+``, ``%``,
``.format``) cannot be verified, and interpolating values into SQL is an
SQL-injection risk; pass values as bound parameters instead.

``sql-syntax-error``: a statement PostgreSQL's grammar rejects. It fails at
run time, and nothing can be proven about it.

``unverifiable-sql``: a ``DO`` block whose body cannot be read (it does not
parse, or runs ``EXECUTE`` of a built string): an error. Also, as a warning,
SQL passed to the retry executor or ``m.execute`` (or inside ``text(...)``)
that is neither a literal nor a name bound to one: a function parameter, the
result of a call. Nothing is known about it, so nothing about it is proven.
"""

from __future__ import annotations

import typing as t

from ._finding import Category
from ._finding import Rule
from ._finding import Severity
from ._finding import rule_doc
from ._model import Node
from ._model import SqlStatement
from ._model import Unit
from ._sql import alter_commands
from ._sql import column_ref
from ._sql import conjuncts
from ._sql import operator
from ._sql import relname
from ._sql import strings
from ._sql import target_table
from ._sql import truncated_tables
from ._sql import walk

UNSAFE_DML = Rule(
    code="SM021",
    name="unsafe-dml",
    point=3,
    severity=Severity.ERROR,
    summary="DML outside the safe categories (dedup, seed, backfill, orphan_cleanup)",
    fix=(
        "make it one of the safe categories (see docs/verify.md); for a mass UPDATE use "
        "m.backfill(table, set=..., where=...) in a `transaction = False` .py migration "
        "(batched, resumable); or accept it with '-- safe-migrate: allow unsafe-dml -- <reason>'"
    ),
    doc=rule_doc(
        "unsafe-dml",
        "SM021",
        what="Flags a data change that falls in none of the safe categories (``dedup``, ``seed``, ``backfill``, ``orphan_cleanup``): a ``DELETE``/``UPDATE`` without their evidence, an unguarded mass ``UPDATE``, ``INSERT ... SELECT``, ``MERGE``, ``COPY ... FROM``, a data-modifying ``WITH``, ``TRUNCATE``.",
        why="A migration runs on a table of any size while the app serves traffic, and may be retried: an unbounded or non-idempotent data change holds locks for as long as it takes, and a retry changes rows twice.",
        instead="Make it one of the safe categories (see docs/verify.md); for a mass ``UPDATE`` use ``m.backfill(table, set=..., where=...)`` in a ``transaction = False`` migration (batched, resumable); or accept it with ``-- safe-migrate: allow unsafe-dml -- <reason>``.",
    ),
)
DYNAMIC_SQL = Rule(
    code="SM022",
    name="dynamic-sql",
    point=3,
    severity=Severity.ERROR,
    summary="SQL built at run time cannot be verified and risks SQL injection",
    fix="write the SQL as one string literal (or a module-level constant) and pass values as bound parameters (:name)",
    doc=rule_doc(
        "dynamic-sql",
        "SM022",
        what="Flags SQL built at run time: f-strings, ``+`` or ``+=`` with non-literals, ``%`` formatting, ``.format()``, or a name bound to non-literal SQL on some path to the call.",
        why="What it runs cannot be verified, and interpolating values into SQL is an SQL-injection risk.",
        instead="Write the SQL as one string literal (or a module-level constant) and pass values as bound parameters (``:name``).",
    ),
)
SQL_SYNTAX_ERROR = Rule(
    code="SM023",
    name="sql-syntax-error",
    point=3,
    severity=Severity.ERROR,
    summary="PostgreSQL's grammar rejects this SQL",
    fix="fix the statement so that PostgreSQL can parse it (try it in psql inside BEGIN; ... ROLLBACK;)",
    doc=rule_doc(
        "sql-syntax-error",
        "SM023",
        what="Flags a statement PostgreSQL's own grammar rejects (the other statements of the file are still checked).",
        why="It fails at run time, half-way through the migration, and nothing can be proven about it.",
        instead="Fix the statement so that PostgreSQL parses it (try it in psql inside ``BEGIN; ... ROLLBACK;``).",
    ),
)
UNVERIFIABLE_SQL = Rule(
    code="SM024",
    name="unverifiable-sql",
    point=3,
    severity=Severity.ERROR,
    summary=(
        "SQL that cannot be read: a DO block running EXECUTE of a built string (error), or a "
        "Python argument that is not literal SQL (warning)"
    ),
    fix="write the statements as plain SQL, or keep the DO body free of EXECUTE of built strings",
    doc=rule_doc(
        "unverifiable-sql",
        "SM024",
        what="Flags SQL whose statements cannot be read: a ``DO`` block that does not parse as PL/pgSQL or runs ``EXECUTE`` of a built string (an error), and, as a warning, SQL passed to the retry executor, ``m.execute`` or ``text()`` that is a function parameter or the result of a call.",
        why="Nothing is known about what it runs, so none of the three points or the lock rules can be proven for it; ``EXECUTE`` of a built string is also an SQL-injection risk.",
        instead="Write the statements as plain SQL literals (or module-level constants); name a helper that only forwards its callers' SQL as a retry function (``--retry-function``, ``SAFE_MIGRATE_VERIFY_RETRY_FUNCTIONS``) so that the callers' SQL is checked.",
    ),
)

RULES = (UNSAFE_DML, DYNAMIC_SQL, SQL_SYNTAX_ERROR, UNVERIFIABLE_SQL)


class Catalog:
    """Names seen anywhere in the scanned migrations: indexes and constraints.

    ``VALIDATE CONSTRAINT leads_owner_id_fkey`` only says a name; the
    catalog says it is the foreign key on ``leads (owner_id)`` added two
    migrations earlier.
    """

    def __init__(self, units: t.Sequence[Unit]) -> None:
        self.indexes: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.constraints: dict[str, tuple[str, Node]] = {}
        for unit in units:
            for stmt in unit.statements:
                if stmt.node_type == "IndexStmt":
                    table = relname(stmt.node.get("relation"))
                    name = stmt.node.get("idxname")
                    if table and name:
                        self.indexes[str(name).lower()] = (table, index_columns(stmt.node))
                elif stmt.node_type == "AlterTableStmt":
                    table = relname(stmt.node.get("relation"))
                    for cmd in alter_commands(stmt.node):
                        constraint = (cmd.get("def") or {}).get("Constraint")
                        if table and constraint and constraint.get("conname"):
                            name = str(constraint["conname"]).lower()
                            self.constraints[name] = (table, constraint)


def index_columns(index: Node) -> tuple[str, ...]:
    """The plain column names of an ``IndexStmt`` (expressions are left out)."""
    columns = []
    for param in index.get("indexParams") or []:
        name = param.get("IndexElem", {}).get("name")
        if name:
            columns.append(str(name).lower())
    return tuple(columns)


# -- the classifier ---------------------------------------------------------------


class Classifier:
    """Classify each DML statement of the scanned units (see the module docstring)."""

    def __init__(self, units: t.Sequence[Unit], *, seed_max_rows: int) -> None:
        self.units = units
        self.seed_max_rows = seed_max_rows
        self.catalog = Catalog(units)

    def classify(self, unit_index: int, index: int) -> tuple[Category | None, str]:
        """``(category, evidence)``, or ``(None, why it is unsafe)``."""
        stmt = self.units[unit_index].statements[index]
        kind, node = stmt.node_type, stmt.node
        table = target_table(kind, node) or "?"
        if kind == "InsertStmt":
            return self._insert(stmt, table)
        if kind == "DeleteStmt":
            return self._delete(unit_index, index, table)
        if kind == "UpdateStmt":
            return self._update(unit_index, index, table)
        if kind == "MergeStmt":
            return None, "MERGE changes an unbounded number of rows"
        if kind == "CopyStmt":
            return None, "COPY ... FROM loads an unbounded number of rows"
        if kind == "TruncateStmt":
            return None, _truncate_reason(node)
        return None, "a query that writes rows (SELECT INTO, or a data-modifying WITH)"

    # -- seed -------------------------------------------------------------------------

    def _insert(self, stmt: SqlStatement, table: str) -> tuple[Category | None, str]:
        select = (stmt.node.get("selectStmt") or {}).get("SelectStmt")
        if select is None:
            values: list[t.Any] = [{}]  # INSERT ... DEFAULT VALUES
        else:
            values = select.get("valuesLists") or []
            if not values or select.get("withClause"):
                return None, (
                    f"INSERT ... SELECT into {table} copies an unbounded number of rows "
                    "(a seed is INSERT ... VALUES with literal rows)"
                )
        for kind, _ in walk(values):
            if kind in ("SubLink", "ColumnRef", "SelectStmt"):
                return (
                    None,
                    f"INSERT into {table} whose VALUES are not literals (a sub-query or column)",
                )
        if stmt.param_rows is None:
            return None, (
                f"INSERT into {table} with parameters that are not a literal list: "
                "the number of rows cannot be proven"
            )
        rows = len(values) * stmt.param_rows
        if rows > self.seed_max_rows:
            return None, (
                f"INSERT of {rows} rows into {table}: more than SAFE_MIGRATE_SEED_MAX_ROWS "
                f"({self.seed_max_rows}); bulk data does not belong in a migration"
            )
        return "seed", (
            f"INSERT of {rows} literal row{'s' if rows != 1 else ''} into {table} "
            f"(at most {self.seed_max_rows})"
        )

    # -- DELETE -------------------------------------------------------------------------

    def _delete(self, unit_index: int, index: int, table: str) -> tuple[Category | None, str]:
        stmt = self.units[unit_index].statements[index]
        keys = duplicate_keys(stmt.node, table)
        for key in keys:
            found = self._unique_after(unit_index, index, table, key)
            if found:
                return "dedup", (
                    f"deletes duplicate {table} rows ({', '.join(key)}) before {found}"
                )
        orphan = missing_reference(stmt.node, table)
        if orphan:
            column, parent, form = orphan
            found = self._foreign_key_after(unit_index, index, table, column)
            if found:
                return "orphan_cleanup", (
                    f"deletes {table} rows whose {column} has no match in {parent} ({form}) "
                    f"before {found}"
                )
            return None, (
                f"deletes {table} rows whose {column} has no match in {parent}, but no foreign "
                f"key on {table} ({column}) follows in this migration or the next one on {table}"
            )
        if keys:
            shown = " or ".join(f"({', '.join(k)})" for k in keys)
            return None, (
                f"deletes duplicate {table} rows {shown}, but no unique index or constraint on "
                f"{table} {shown} follows in this migration or the next one on {table}"
            )
        if not stmt.node.get("whereClause") and not stmt.node.get("usingClause"):
            return None, f"DELETE without WHERE removes every row of {table}"
        return None, (
            f"DELETE from {table} is neither a dedup (duplicates of the columns of a later "
            "unique index) nor an orphan cleanup (rows whose reference is missing, before a "
            "foreign key on that column)"
        )

    # -- UPDATE -------------------------------------------------------------------------

    def _update(self, unit_index: int, index: int, table: str) -> tuple[Category | None, str]:
        unit = self.units[unit_index]
        stmt = unit.statements[index]
        node = stmt.node
        sets: dict[str, t.Any] = {}
        for target in node.get("targetList") or []:
            res = target.get("ResTarget", {})
            if res.get("name"):
                sets[str(res["name"]).lower()] = res.get("val")
        # orphan cleanup by unassigning: SET ref = NULL WHERE the referenced row is missing
        orphan = missing_reference(node, table)
        if orphan and _is_null(sets.get(orphan[0])):
            column, parent, form = orphan
            found = self._foreign_key_after(unit_index, index, table, column)
            if found:
                return "orphan_cleanup", (
                    f"sets {table}.{column} to NULL where it has no match in {parent} ({form}) "
                    f"before {found}"
                )
        # the merge step of a dedup: re-point references from duplicates onto the kept row
        for other, key in partition_keys(node, exclude=table):
            for later in range(index + 1, len(unit.statements)):
                candidate = unit.statements[later]
                if candidate.node_type != "DeleteStmt":
                    continue
                if relname(candidate.node.get("relation")) != other:
                    continue
                if key not in duplicate_keys(candidate.node, other):
                    continue
                found = self._unique_after(unit_index, later, other, key)
                if found:
                    return "dedup", (
                        f"re-points {table} rows from duplicate {other} rows "
                        f"({', '.join(key)}) onto the kept row, before the dedup DELETE at "
                        f"{candidate.path}:{candidate.line} and {found}"
                    )
        where = node.get("whereClause")
        if not where:
            return None, f"UPDATE without WHERE rewrites every row of {table}"
        guard = idempotency_guard(where, sets)
        if guard is None:
            return None, (
                f"UPDATE of {table} has no WHERE guard that makes it idempotent (e.g. "
                "'WHERE col IS NULL' on a column it sets): a retry or re-run changes rows again"
            )
        comment = " ".join(stmt.comment.split())
        if not comment:
            return None, (
                f"UPDATE of {table} is guarded ({guard}) but not documented: add a comment on "
                "or right above it saying why this one-time backfill is needed"
            )
        if len(comment) > 80:
            comment = comment[:79] + "…"
        return "backfill", f"UPDATE of {table} guarded by {guard}, documented: {comment!r}"

    # -- look-ahead ---------------------------------------------------------------------

    def _after(
        self, unit_index: int, index: int, table: str
    ) -> t.Iterator[tuple[Unit, SqlStatement]]:
        """Statements after ``index`` in the unit, then those of the next unit on ``table``."""
        unit = self.units[unit_index]
        for stmt in unit.statements[index + 1 :]:
            yield unit, stmt
        for later in self.units[unit_index + 1 :]:
            if later.group != unit.group:
                continue
            if any(_touches(stmt, table) for stmt in later.statements):
                for stmt in later.statements:
                    yield later, stmt
                return

    def _unique_after(
        self, unit_index: int, index: int, table: str, key: tuple[str, ...]
    ) -> str | None:
        wanted = set(key)
        for _, stmt in self._after(unit_index, index, table):
            node = stmt.node
            if stmt.node_type == "IndexStmt" and node.get("unique"):
                if relname(node.get("relation")) == table and set(index_columns(node)) == wanted:
                    name = node.get("idxname") or "(unnamed)"
                    return (
                        f"the unique index {name} on {table} ({', '.join(key)}) at "
                        f"{stmt.path}:{stmt.line}"
                    )
            if stmt.node_type == "AlterTableStmt" and relname(node.get("relation")) == table:
                for cmd in alter_commands(node):
                    constraint = (cmd.get("def") or {}).get("Constraint") or {}
                    if constraint.get("contype") not in ("CONSTR_UNIQUE", "CONSTR_PRIMARY"):
                        continue
                    columns = set(strings(constraint.get("keys")))
                    if not columns and constraint.get("indexname"):
                        columns = set(
                            self.catalog.indexes.get(
                                str(constraint["indexname"]).lower(), ("", ())
                            )[1]
                        )
                    if columns == wanted:
                        name = constraint.get("conname") or "(unnamed)"
                        return (
                            f"the unique constraint {name} on {table} ({', '.join(key)}) at "
                            f"{stmt.path}:{stmt.line}"
                        )
        return None

    def _foreign_key_after(
        self, unit_index: int, index: int, table: str, column: str
    ) -> str | None:
        for _, stmt in self._after(unit_index, index, table):
            if stmt.node_type != "AlterTableStmt" or relname(stmt.node.get("relation")) != table:
                continue
            for cmd in alter_commands(stmt.node):
                constraint = (cmd.get("def") or {}).get("Constraint") or {}
                verb = "the foreign key"
                if cmd.get("subtype") == "AT_ValidateConstraint" and cmd.get("name"):
                    known = self.catalog.constraints.get(str(cmd["name"]).lower())
                    if known is None or known[0] != table:
                        continue
                    constraint = known[1]
                    verb = "validating the foreign key"
                if constraint.get("contype") != "CONSTR_FOREIGN":
                    continue
                if column in strings(constraint.get("fk_attrs")):
                    name = constraint.get("conname") or "(unnamed)"
                    return f"{verb} {name} on {table} ({column}) at {stmt.path}:{stmt.line}"
        return None


def _truncate_reason(node: Node) -> str:
    names = truncated_tables(node)
    tables = ", ".join(names) or "?"
    cascade = (
        f", and CASCADE empties every table that references {'them' if len(names) > 1 else 'it'}"
        if node.get("behavior") == "DROP_CASCADE"
        else ""
    )
    return (
        f"TRUNCATE {tables} deletes every row under ACCESS EXCLUSIVE (reads and writes wait)"
        f"{cascade}; no safe category covers it: accept it with a reason only for a table "
        "that holds nothing the app needs (staging, scratch)"
    )


def _touches(stmt: SqlStatement, table: str) -> bool:
    return target_table(stmt.node_type, stmt.node) == table


def _is_null(value: t.Any) -> bool:
    return isinstance(value, dict) and bool(value.get("A_Const", {}).get("isnull"))


def _strip_locations(value: t.Any) -> t.Any:
    if isinstance(value, dict):
        return {k: _strip_locations(v) for k, v in value.items() if k != "location"}
    if isinstance(value, list):
        return [_strip_locations(v) for v in value]
    return value


def idempotency_guard(where: Node, sets: dict[str, t.Any]) -> str | None:
    """The WHERE term that stops matching once the UPDATE has run, as text."""
    for term in conjuncts(where):
        test = term.get("NullTest")
        if test:
            ref = column_ref(test.get("arg"))
            if ref and ref[1] in sets:
                if test.get("nulltesttype") == "IS_NULL" and not _is_null(sets[ref[1]]):
                    return f"{ref[1]} IS NULL"
                if test.get("nulltesttype") == "IS_NOT_NULL" and _is_null(sets[ref[1]]):
                    return f"{ref[1]} IS NOT NULL"
        expr = term.get("A_Expr")
        if expr and (
            (expr.get("kind") == "AEXPR_OP" and operator(expr) in ("<>", "!="))
            or expr.get("kind") == "AEXPR_DISTINCT"
        ):
            for side, other in (("lexpr", "rexpr"), ("rexpr", "lexpr")):
                ref = column_ref(expr.get(side))
                if ref and ref[1] in sets:
                    if _strip_locations(expr.get(other)) == _strip_locations(sets[ref[1]]):
                        op = "IS DISTINCT FROM" if expr["kind"] == "AEXPR_DISTINCT" else "<>"
                        return f"{ref[1]} {op} the value it sets"
    return None


def _aliases(range_var: Node, table: str) -> set[str]:
    names = {table}
    alias = (range_var.get("alias") or {}).get("aliasname")
    if alias:
        names.add(str(alias).lower())
    return names


def _alias(range_var: Node, table: str) -> str:
    alias = (range_var.get("alias") or {}).get("aliasname")
    return str(alias).lower() if alias else table


def duplicate_keys(node: Node, table: str) -> list[tuple[str, ...]]:
    """Candidate key columns a DELETE deduplicates ``table`` on (sorted tuples)."""
    keys: list[tuple[str, ...]] = []
    target = _alias(node.get("relation") or {}, table)
    # self-join: DELETE FROM t a USING t b WHERE a.k = b.k AND a.id > b.id
    for using in node.get("usingClause") or []:
        other = using.get("RangeVar")
        if not other or relname(other) != table:
            continue
        peer = _alias(other, table)
        if peer == target:
            continue
        equal: list[str] = []
        ordered = False
        for term in conjuncts(node.get("whereClause")):
            expr = term.get("A_Expr") or {}
            left, right = column_ref(expr.get("lexpr")), column_ref(expr.get("rexpr"))
            if not left or not right or {left[0], right[0]} != {target, peer}:
                continue
            op = operator(expr) if expr.get("kind") == "AEXPR_OP" else ""
            if left[1] == right[1] and (op == "=" or expr.get("kind") == "AEXPR_NOT_DISTINCT"):
                equal.append(left[1])
            elif op in ("<", ">", "<>", "!="):
                ordered = True
        if equal and ordered:
            keys.append(tuple(sorted(set(equal))))
    # GROUP BY / PARTITION BY over the same table in a sub-query or CTE
    for other, key in partition_keys(node, exclude=None):
        if other == table and key not in keys:
            keys.append(key)
    return keys


def partition_keys(node: Node, *, exclude: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """``(table, columns)`` for each sub-select over one table that groups or partitions it."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for kind, select in walk(node):
        if kind != "SelectStmt":
            continue
        tables = [
            relname(item["RangeVar"])
            for item in select.get("fromClause") or []
            if "RangeVar" in item
        ]
        if len(tables) != 1 or tables[0] is None or tables[0] == exclude:
            continue
        groups = [column_ref(g) for g in select.get("groupClause") or []]
        if groups and all(groups):
            found.append((tables[0], tuple(sorted({g[1] for g in groups if g}))))
        for call_kind, call in walk(select.get("targetList")):
            window = call.get("over") if call_kind == "FuncCall" else None
            if not window:
                continue
            parts = [column_ref(p) for p in window.get("partitionClause") or []]
            if parts and all(parts):
                found.append((tables[0], tuple(sorted({p[1] for p in parts if p}))))
    return found


def missing_reference(node: Node, table: str) -> tuple[str, str, str] | None:
    """``(column, parent, form)`` when a WHERE keeps only rows whose reference is missing."""
    own = _aliases(node.get("relation") or {}, table)
    for term in conjuncts(node.get("whereClause")):
        boolean = term.get("BoolExpr") or {}
        if boolean.get("boolop") != "NOT_EXPR":
            continue
        for arg in boolean.get("args") or []:
            link = arg.get("SubLink") if isinstance(arg, dict) else None
            if not link:
                continue
            select = (link.get("subselect") or {}).get("SelectStmt") or {}
            parents = [
                item["RangeVar"] for item in select.get("fromClause") or [] if "RangeVar" in item
            ]
            if len(parents) != 1:
                continue
            parent = relname(parents[0]) or "?"
            theirs = _aliases(parents[0], parent)
            if link.get("subLinkType") == "ANY_SUBLINK":
                ref = column_ref(link.get("testexpr"))
                if ref and (ref[0] is None or ref[0] in own):
                    return ref[1], parent, "NOT IN"
            if link.get("subLinkType") == "EXISTS_SUBLINK":
                for inner in conjuncts(select.get("whereClause")):
                    expr = inner.get("A_Expr") or {}
                    if expr.get("kind") != "AEXPR_OP" or operator(expr) != "=":
                        continue
                    left, right = column_ref(expr.get("lexpr")), column_ref(expr.get("rexpr"))
                    for mine, other in ((left, right), (right, left)):
                        if mine and other and mine[0] in own and other[0] in theirs:
                            return mine[1], parent, "NOT EXISTS"
    # anti-join: ... WHERE id IN (SELECT c.id FROM t c LEFT JOIN p ON p.x = c.col WHERE p.x IS NULL)
    for kind, join in walk(node.get("whereClause")):
        if kind != "JoinExpr" or join.get("jointype") != "JOIN_LEFT":
            continue
        left = (join.get("larg") or {}).get("RangeVar")
        right = (join.get("rarg") or {}).get("RangeVar")
        if not left or not right or relname(left) != table:
            continue
        parent = relname(right) or "?"
        child_names, parent_names = _aliases(left, table), _aliases(right, parent)
        for term in conjuncts(join.get("quals")):
            expr = term.get("A_Expr") or {}
            a, b = column_ref(expr.get("lexpr")), column_ref(expr.get("rexpr"))
            for ours, other in ((a, b), (b, a)):
                if ours and other and ours[0] in child_names and other[0] in parent_names:
                    return ours[1], parent, "anti-join"
    return None
