"""Point 2: no outer transaction around the retry executor, no session in migrations.

``retry-inside-transaction`` (SM011)
    A call to the retry executor (or ``m.execute`` in a migration) inside
    ``with engine.begin()`` / ``engine.connect()`` / ``session.begin()`` or
    after an explicit ``.begin()``, directly or through a function of the
    same module that reaches it. The executor opens its own connection per
    attempt; an outer transaction is another connection whose work the
    retry cannot redo, and which dies with the network just the same.
``session-in-migration`` (SM012)
    ``db.session``, ``Session(...)``, ``scoped_session`` or ``sessionmaker``
    in migration code (a migration file, a module named like ``*migrat*``,
    or a function that calls the retry executor). The session runs on the
    app's pool, outside the migration's transaction and retry: exactly the
    connection that breaks behind a pooler.
``transaction-control`` (SM013)
    ``commit()`` / ``rollback()`` in migration code, or ``BEGIN`` /
    ``COMMIT`` / ``ROLLBACK`` / ``SAVEPOINT`` statements in a migration: the
    runner (or the executor) owns the transaction; committing half of a
    migration makes it impossible to retry or roll back as a whole.
"""

from __future__ import annotations

import ast
import typing as t

from ._extract import PyModule
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._finding import rule_doc
from ._scopes import call_name

RETRY_INSIDE_TRANSACTION = Rule(
    code="SM011",
    name="retry-inside-transaction",
    point=2,
    severity=Severity.ERROR,
    summary="the retry executor is called inside an outer transaction",
    fix=(
        "call execute_with_retry(engine, ...) on its own, outside any 'with engine.begin()' "
        "block: it opens and commits its own transaction per attempt"
    ),
    doc=rule_doc(
        "retry-inside-transaction",
        "SM011",
        what="Flags a call to the retry executor (or ``m.execute`` in a migration) inside ``with engine.begin()`` / ``engine.connect()`` / ``session.begin()``, after an explicit ``.begin()``, or through a function of the same module that reaches the executor.",
        why="The executor opens its own connection per attempt; the outer transaction is another connection whose work the retry cannot redo, and it dies with the network just the same.",
        instead="Call ``execute_with_retry(engine, ...)`` on its own, outside any transaction block: it opens and commits its own transaction per attempt.",
    ),
)
SESSION_IN_MIGRATION = Rule(
    code="SM012",
    name="session-in-migration",
    point=2,
    severity=Severity.ERROR,
    summary="db.session / Session used in migration code",
    fix=(
        "run the SQL through execute_with_retry(engine, sql, params) (m.execute(sql, params) "
        "in a migration file); never through db.session or the models"
    ),
    doc=rule_doc(
        "session-in-migration",
        "SM012",
        what="Flags ``db.session``, ``Session(...)``, ``scoped_session`` and ``sessionmaker`` in migration code (a migration file, a module named like ``*migrat*``, or a function that calls the retry executor).",
        why="The session runs on the app's pool, outside the migration's transaction and retry: exactly the connection that breaks behind a pooler, and whose half-done work nobody rolls back.",
        instead="Run the SQL through ``execute_with_retry(engine, sql, params)`` (``m.execute(sql, params)`` in a migration file), never through ``db.session`` or the models.",
    ),
)
TRANSACTION_CONTROL = Rule(
    code="SM013",
    name="transaction-control",
    point=2,
    severity=Severity.ERROR,
    summary="commit / rollback / BEGIN inside migration code",
    fix=(
        "remove it: the runner (or the executor) owns the transaction; split the work into "
        "two migrations if it must commit in between"
    ),
    doc=rule_doc(
        "transaction-control",
        "SM013",
        what="Flags ``commit()`` / ``rollback()`` in migration code, and ``BEGIN`` / ``COMMIT`` / ``ROLLBACK`` / ``SAVEPOINT`` statements in a migration.",
        why="The runner (or the executor) owns the transaction: committing half of a migration makes it impossible to retry or to roll back as a whole.",
        instead="Remove it; split the work into two migrations if it really must commit in between.",
    ),
)

RULES = (RETRY_INSIDE_TRANSACTION, SESSION_IN_MIGRATION, TRANSACTION_CONTROL)

_TXN_OPENERS = frozenset({"begin", "connect", "begin_nested", "transaction", "atomic"})
_SESSION_CALLS = frozenset({"Session", "scoped_session", "sessionmaker"})

Func = ast.FunctionDef | ast.AsyncFunctionDef


def _snippet(module: PyModule, node: ast.AST) -> str:
    flat = module.segment(node, 101)
    return flat if len(flat) <= 100 else flat[:99] + "…"


def _migration_parameter(module: PyModule, call: ast.Call) -> bool:
    """``m.execute`` / ``m.scalar`` where ``m`` is the argument of ``upgrade(m)``."""
    return (
        isinstance(call.func, ast.Attribute)
        and call.func.attr in ("execute", "scalar")
        and module.on_migration_parameter(call)
    )


class Checker:
    """Point-2 checks of one module; :attr:`executor_calls` counts what was checked."""

    def __init__(self, module: PyModule) -> None:
        self.module = module
        self.executor_calls = 0
        self.findings: list[Finding] = []
        self._reported: set[tuple[int, str]] = set()
        self.functions: dict[str, Func] = {f.name: f for f in module.index.functions()}
        self.reaching = self._reaching()

    def _is_executor(self, call: ast.Call) -> bool:
        return self.module.is_retry_call(call) or _migration_parameter(self.module, call)

    def _reaching(self) -> dict[str, ast.Call]:
        """Functions of this module that call the executor, directly or through each other."""
        calls: dict[str, list[ast.Call]] = {}
        for name, function in self.functions.items():
            if name not in self.module.retry_names:
                calls[name] = sorted(
                    (c for c in ast.walk(function) if isinstance(c, ast.Call)),
                    key=lambda c: (c.lineno, c.col_offset),
                )
        reach: dict[str, ast.Call] = {}
        for name, found in calls.items():
            direct = next((c for c in found if self._is_executor(c)), None)
            if direct is not None:
                reach[name] = direct
        changed = True
        while changed:
            changed = False
            for name, found in calls.items():
                if name in reach:
                    continue
                through = next(
                    (c for c in found if isinstance(c.func, ast.Name) and c.func.id in reach),
                    None,
                )
                if through is not None:
                    reach[name] = through
                    changed = True
        return reach

    def migration_code(self, node: ast.AST) -> bool:
        """Whether ``node`` is in migration code (see the module docstring)."""
        if self.module.migration_scope:
            return True
        function = self.module.top_function(node)
        if function is None:
            return False
        return function.name in self.reaching or function.name in ("upgrade", "downgrade")

    def run(self) -> list[Finding]:
        """Run every point-2 check of the module."""
        module = self.module
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Call):
                self._call(node)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "session"
                and isinstance(node.value, ast.Name)
                and node.value.id in ("db", "database")
                and self.migration_code(node)
            ):
                self._add(
                    SESSION_IN_MIGRATION,
                    node,
                    "db.session in migration code runs on the app's pool, outside the "
                    "migration's transaction and retry",
                )
        return self.findings

    def _add(self, rule: Rule, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 1)
        if (line, rule.code) not in self._reported:
            self._reported.add((line, rule.code))
            self.findings.append(
                Finding(
                    rule, self.module.path, line, message, rule.fix, _snippet(self.module, node)
                )
            )

    def _call(self, call: ast.Call) -> None:
        name = call_name(call)
        if name in _SESSION_CALLS and self.migration_code(call):
            self._add(
                SESSION_IN_MIGRATION,
                call,
                f"{name}(...) in migration code opens an ORM session outside the migration's "
                "transaction and retry",
            )
        if (
            name in ("commit", "rollback")
            and isinstance(call.func, ast.Attribute)
            and self.migration_code(call)
            and not self.module.in_retry_definition(call)
        ):
            self._add(
                TRANSACTION_CONTROL,
                call,
                f"{name}() in migration code: the runner or the executor owns the transaction",
            )
        direct = self._is_executor(call)
        through = isinstance(call.func, ast.Name) and call.func.id in self.reaching
        if not direct and not through:
            return
        if direct:
            self.executor_calls += 1
        if self.module.in_retry_definition(call):
            return
        outer = self._outer_transaction(call)
        if outer is None:
            return
        what = _snippet(self.module, call.func)
        if through and not direct:
            helper = t.cast(ast.Name, call.func).id
            inner = self.reaching[helper]
            what = (
                f"{helper}() (which calls {_snippet(self.module, inner.func)} at line "
                f"{inner.lineno})"
            )
        self._add(
            RETRY_INSIDE_TRANSACTION,
            call,
            f"{what} runs inside {outer}: the retry cannot redo the outer transaction's work, "
            "and the outer connection dies with the network just the same",
        )

    def _outer_transaction(self, call: ast.Call) -> str | None:
        module = self.module
        current = module.parents.get(call)
        while current is not None and not isinstance(
            current, (ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            if isinstance(current, (ast.With, ast.AsyncWith)):
                for item in current.items:
                    expr = item.context_expr
                    if isinstance(expr, ast.Call) and (
                        call_name(expr) in _TXN_OPENERS or call_name(expr) in _SESSION_CALLS
                    ):
                        return f"'with {_snippet(module, expr)}' (line {current.lineno})"
            current = module.parents.get(current)
        opened = module.index.scope(call).open_before.get(call)
        if opened is not None:
            return f"the transaction opened by {_snippet(module, opened)} (line {opened.lineno})"
        return None
