"""What a lock-safety rule knows when it looks at one statement.

Rules see the statement, its unit (transactional or not, what ran before
it) and a :class:`Schema` learnt from every statement scanned so far:
column types (to tell a rewriting type change from a binary-coercible one)
and validated ``CHECK (col IS NOT NULL)`` constraints (which make ``SET NOT
NULL`` skip its scan).
"""

from __future__ import annotations

import dataclasses
import typing as t

from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._model import Node
from ._model import SqlStatement
from ._model import Unit
from ._sql import alter_commands
from ._sql import column_ref
from ._sql import constraints_of
from ._sql import created_table
from ._sql import relname
from ._sql import type_name
from ._sql import walk


class Schema:
    """Column types and NOT NULL checks seen so far (by table, lower-case names)."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
        self.checks: dict[str, tuple[str, str, bool]] = {}  # name -> (table, column, validated)

    def not_null_checked(self, table: str, column: str) -> bool:
        """Whether a validated ``CHECK (column IS NOT NULL)`` exists on ``table``."""
        return any(t_ == table and c == column and valid for t_, c, valid in self.checks.values())

    def learn(self, stmt: SqlStatement) -> None:
        """Record what ``stmt`` tells about the schema."""
        kind, node = stmt.node_type, stmt.node
        if kind == "CreateStmt":
            table = created_table(kind, node)
            if table:
                columns = self.types.setdefault(table, {})
                for element in node.get("tableElts") or []:
                    column = element.get("ColumnDef")
                    if column and column.get("colname"):
                        columns[str(column["colname"]).lower()] = type_name(column.get("typeName"))
        elif kind == "AlterTableStmt":
            table = relname(node.get("relation"))
            if not table:
                return
            columns = self.types.setdefault(table, {})
            for cmd in alter_commands(node):
                subtype = cmd.get("subtype")
                definition = cmd.get("def") or {}
                if subtype == "AT_AddColumn" and "ColumnDef" in definition:
                    column = definition["ColumnDef"]
                    columns[str(column.get("colname", "")).lower()] = type_name(
                        column.get("typeName")
                    )
                elif (
                    subtype == "AT_AlterColumnType"
                    and "ColumnDef" in definition
                    and cmd.get("name")
                ):
                    columns[str(cmd["name"]).lower()] = type_name(
                        definition["ColumnDef"].get("typeName")
                    )
                elif subtype == "AT_AddConstraint" and "Constraint" in definition:
                    constraint = definition["Constraint"]
                    column = not_null_column(constraint)
                    if (
                        constraint.get("contype") == "CONSTR_CHECK"
                        and column
                        and constraint.get("conname")
                    ):
                        self.checks[str(constraint["conname"]).lower()] = (
                            table,
                            column,
                            not constraint.get("skip_validation"),
                        )
                elif subtype == "AT_ValidateConstraint" and cmd.get("name"):
                    name = str(cmd["name"]).lower()
                    if name in self.checks:
                        known_table, column, _ = self.checks[name]
                        self.checks[name] = (known_table, column, True)


def not_null_column(constraint: Node) -> str | None:
    """``col`` for a ``CHECK (col IS NOT NULL)`` constraint."""
    for kind, node in walk({"x": constraint.get("raw_expr")}):
        if kind == "NullTest" and node.get("nulltesttype") == "IS_NOT_NULL":
            ref = column_ref(node.get("arg"))
            if ref:
                return ref[1]
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """One statement's surroundings: its unit, position, and the schema so far."""

    unit: Unit
    index: int
    schema: Schema
    created: frozenset[str]

    @property
    def migration(self) -> bool:
        """Whether the runner runs this unit (a ``.sql`` or ``.py`` migration)."""
        return self.unit.kind in ("sql", "py-migration")

    def existing(self, table: str | None) -> bool:
        """Whether ``table`` existed before this migration (not created in it)."""
        return table is not None and table not in self.created

    def earlier(self) -> t.Sequence[SqlStatement]:
        """The statements of the unit before this one."""
        return self.unit.statements[: self.index]

    def later(self) -> t.Sequence[SqlStatement]:
        """The statements of the unit after this one."""
        return self.unit.statements[self.index + 1 :]

    def added_earlier(self, name: str, contype: str) -> SqlStatement | None:
        """The earlier statement of this unit that added constraint ``name`` of ``contype``.

        A ``VALIDATE CONSTRAINT`` in the same transaction as its ``ADD ... NOT
        VALID`` keeps the add's strong lock for the whole scan, which is what
        splitting the two was meant to avoid.
        """
        for earlier in self.earlier():
            if earlier.node_type != "AlterTableStmt":
                continue
            for added in alter_commands(earlier.node):
                definition = (added.get("def") or {}).get("Constraint") or {}
                if (
                    definition.get("contype") == contype
                    and str(definition.get("conname") or "").lower() == name
                ):
                    return earlier
        return None

    @staticmethod
    def finding(
        rule: Rule, stmt: SqlStatement, message: str, *, severity: Severity | None = None
    ) -> Finding:
        """A finding of ``rule`` at ``stmt``."""
        return Finding(rule, stmt.path, stmt.line, message, rule.fix, stmt.short(), severity)


def column_constraints(node: Node) -> t.Iterator[tuple[str, Node]]:
    """``(column, Constraint)`` for every constraint of every ``ADD COLUMN`` in an ALTER TABLE."""
    for cmd in alter_commands(node):
        column = (cmd.get("def") or {}).get("ColumnDef")
        if cmd.get("subtype") == "AT_AddColumn" and column:
            for constraint in constraints_of(column):
                yield str(column.get("colname", "")).lower(), constraint
