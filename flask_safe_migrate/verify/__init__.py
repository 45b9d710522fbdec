"""``verify``: prove the three critical points statically, classify DML, catch lock-unsafe DDL.

This package is imported only by the ``verify`` command, never by the
runner: it pulls in ``pgparse`` (through :mod:`flask_safe_migrate.sqlsplit`)
and walks every file it is given.

The registry is explicit, as in Alembic: :data:`LOCK_RULES` lists the
lock-safety rule modules in the order they run, :data:`RULES` every rule
with its id. Adding a rule means writing a module with ``RULE`` and
``check(stmt, ctx)`` and listing it here; nothing is discovered by name.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import typing as t

from . import check_not_valid
from . import cluster
from . import concurrent_index_retry
from . import concurrently_in_transaction
from . import dml
from . import drop_column_or_table
from . import foreign_key_not_valid
from . import inputs
from . import lock_table
from . import no_transaction_not_idempotent
from . import rename_column_or_table
from . import require_concurrent_index
from . import retry_executor
from . import rewriting_type_change
from . import set_not_null
from . import transactions
from . import unique_constraint_without_index
from . import vacuum_full
from . import volatile_default
from ._context import Context
from ._context import Schema
from ._extract import Extracted
from ._extract import collect
from ._extract import display_path
from ._extract import extract_python
from ._extract import extract_sql
from ._extract import parse_python
from ._extract import read_text
from ._finding import CATEGORIES
from ._finding import DmlEntry
from ._finding import Finding
from ._finding import Point
from ._finding import Report
from ._finding import Rule
from ._finding import Severity
from ._model import SqlStatement
from ._sql import created_table
from ._sql import is_dml
from ._sql import is_query

__all__ = [
    "CATEGORIES",
    "LOCK_RULES",
    "RULES",
    "DmlEntry",
    "Finding",
    "Point",
    "Report",
    "Rule",
    "Severity",
    "verify_paths",
]


class LockRule(t.Protocol):
    """What a lock-safety rule module provides."""

    RULE: Rule

    def check(self, stmt: SqlStatement, ctx: Context) -> t.Iterator[Finding]: ...


#: Lock-safety rules (point 0), one module each, in the order they run.
LOCK_RULES: tuple[LockRule, ...] = (
    require_concurrent_index,
    concurrently_in_transaction,
    concurrent_index_retry,
    foreign_key_not_valid,
    check_not_valid,
    set_not_null,
    rewriting_type_change,
    volatile_default,
    unique_constraint_without_index,
    drop_column_or_table,
    rename_column_or_table,
    vacuum_full,
    cluster,
    lock_table,
    no_transaction_not_idempotent,
)

#: Every rule, by point: 1 (retry executor), 2 (transactions), 3 (DML), 0 (lock safety, input).
RULES: tuple[Rule, ...] = (
    *retry_executor.RULES,
    *transactions.RULES,
    *dml.RULES,
    *(module.RULE for module in LOCK_RULES),
    *inputs.RULES,
)

_BY_KEY: dict[str, Rule] = {key: rule for rule in RULES for key in (rule.name, rule.code)}

_TITLES = {
    1: "the retry executor opens a NEW connection each retry",
    2: "no outer engine.begin() around the executor, no db.session",
    3: "DDL only, or safe DML",
}


def rule(key: str) -> Rule | None:
    """The rule with id or code ``key``."""
    return _BY_KEY.get(key)


def verify_paths(
    paths: t.Sequence[str | os.PathLike[str]],
    *,
    seed_max_rows: int = 10,
    retry_functions: t.Sequence[str] = ("execute_with_retry",),
    cwd: str | None = None,
) -> Report:
    """Verify the ``.sql`` and ``.py`` files under ``paths``.

    ``retry_functions`` names the functions that retry database work, in
    addition to ``execute_with_retry`` (which always counts).

    :raises BadInputError: a path does not exist or cannot be read, or a
        Python file does not parse (the CLI exits 2). Everything about the
        *content* (SQL that does not parse included) is a finding instead.
    """
    cwd = cwd or os.getcwd()
    # execute_with_retry always counts; configured names add to it
    retry_functions = tuple(dict.fromkeys(("execute_with_retry", *retry_functions)))
    extracted: list[Extracted] = []
    for path in collect(paths):
        display = display_path(path, cwd)
        text = read_text(path)
        if path.suffix == ".sql":
            extracted.append(extract_sql(path, display, text))
        else:
            extracted.append(extract_python(parse_python(path, display, text, retry_functions)))
    units = [unit for ex in extracted for unit in ex.units]
    findings = [finding for ex in extracted for finding in ex.findings]

    checked: list[retry_executor.Checked] = []
    executor_calls = 0
    for ex in extracted:
        if ex.module is None:
            continue
        found, functions = retry_executor.check_definitions(ex.module)
        findings.extend(found)
        checked.extend(functions)
        findings.extend(retry_executor.check_calls(ex.module))
        checker = transactions.Checker(ex.module)
        findings.extend(checker.run())
        executor_calls += checker.executor_calls

    schema = Schema()
    classifier = dml.Classifier(units, seed_max_rows=seed_max_rows)
    entries: list[DmlEntry] = []
    statements = ddl = 0
    for unit_index, unit in enumerate(units):
        created: set[str] = set()
        for index, stmt in enumerate(unit.statements):
            statements += 1
            ctx = Context(unit, index, schema, frozenset(created))
            if stmt.node_type == "TransactionStmt" and ctx.migration:
                findings.append(
                    ctx.finding(
                        transactions.TRANSACTION_CONTROL,
                        stmt,
                        "transaction control in a migration: the runner owns the transaction",
                    )
                )
            for module in LOCK_RULES:
                findings.extend(module.check(stmt, ctx))
            if is_dml(stmt.node_type, stmt.node):
                category, reason = classifier.classify(unit_index, index)
                entries.append(DmlEntry(stmt.path, stmt.line, stmt.short(400), category, reason))
                if category is None:
                    findings.append(ctx.finding(dml.UNSAFE_DML, stmt, reason))
            elif not is_query(stmt.node_type):
                ddl += 1
            schema.learn(stmt)
            table = created_table(stmt.node_type, stmt.node)
            if table:
                created.add(table)
        for index, stmt in enumerate(unit.down):
            ctx = Context(unit, index, schema, frozenset())
            findings.extend(no_transaction_not_idempotent.check(stmt, ctx))

    findings = _suppress_findings(findings, extracted)
    order = {ex_path: n for n, ex_path in enumerate(_paths(extracted))}
    findings.sort(key=lambda f: (order.get(f.path, len(order)), f.line, f.rule.code))
    entries.sort(key=lambda e: (order.get(e.path, len(order)), e.line))
    accepted = {(f.path, f.line): f.suppressed for f in findings if f.rule is dml.UNSAFE_DML}
    entries = [
        dataclasses.replace(e, reason=f"{e.reason} (accepted: {waiver})", accepted=waiver)
        if not e.safe and (waiver := accepted.get((e.path, e.line))) is not None
        else e
        for e in entries
    ]
    points = (
        _point_one(findings, checked),
        _point_two(findings, executor_calls),
        _point_three(findings, entries, statements, ddl),
    )
    return Report(points, tuple(findings), tuple(entries), statements, ddl, len(extracted))


def _paths(extracted: list[Extracted]) -> list[str]:
    paths: list[str] = []
    for ex in extracted:
        path = ex.module.path if ex.module else (ex.units[0].path if ex.units else "")
        paths.append(path)
    return paths


def _suppress_findings(findings: list[Finding], extracted: list[Extracted]) -> list[Finding]:
    by_path = {path: ex for path, ex in zip(_paths(extracted), extracted, strict=True)}
    result: list[Finding] = []
    for ex_path, ex in by_path.items():
        for allow in ex.all_allows:
            unknown = [name for name in allow.rules if rule(name) is None]
            problem = None
            if not allow.rules:
                problem = "names no rule"
            elif unknown:
                problem = f"names unknown rule {unknown[0]!r}"
            elif not allow.reason:
                problem = "gives no reason; the reason is required, and shown in every report"
            if problem:
                result.append(
                    Finding(
                        inputs.BAD_SUPPRESSION,
                        ex_path,
                        allow.line,
                        f"this allow comment {problem}, so it accepts nothing",
                        inputs.BAD_SUPPRESSION.fix,
                    )
                )
    for finding in findings:
        source = by_path.get(finding.path)
        reason = None
        if source is not None:
            for allow in source.allows.get(finding.line, []):
                names = {rule(n) for n in allow.rules}
                if allow.reason and finding.rule in names:
                    reason = allow.reason
                    break
        result.append(finding if reason is None else _with_reason(finding, reason))
    return result


def _with_reason(finding: Finding, reason: str) -> Finding:
    return Finding(
        finding.rule,
        finding.path,
        finding.line,
        finding.message,
        finding.fix,
        finding.snippet,
        finding.severity,
        reason,
    )


def _counts(findings: list[Finding], point: int) -> tuple[list[Finding], int]:
    failing = [f for f in findings if f.rule.point == point and f.fails]
    accepted = sum(1 for f in findings if f.rule.point == point and f.suppressed is not None)
    return failing, accepted


def _accepted(accepted: int) -> str:
    return f"; {accepted} finding(s) accepted with a reason" if accepted else ""


def _point_one(findings: list[Finding], checked: list[retry_executor.Checked]) -> Point:
    failing, accepted = _counts(findings, 1)
    own = (
        "flask_safe_migrate's executor and runner satisfy it by construction: a new "
        "connection and transaction per attempt, the pool disposed on a disconnect, bounded "
        "attempts with full-jitter backoff"
    )
    evidence = [own]
    for item in checked:
        evidence.append(f"{item.name}() at {item.path}:{item.line}:")
        evidence.extend(f"  {line}" for line in item.evidence)
    if not checked:
        summary = f"no hand-written retry function in the scanned code; {own}"
    else:
        names = ", ".join(f"{c.name}() at {c.path}:{c.line}" for c in checked)
        verdict = "all checks pass" if not failing else f"{len(failing)} finding(s)"
        summary = f"{len(checked)} retry function(s) checked ({names}): {verdict}"
    for finding in failing:
        evidence.append(f"❌ {finding.path}:{finding.line}: {finding.message}")
    return Point(1, _TITLES[1], not failing, summary + _accepted(accepted), tuple(evidence))


def _point_two(findings: list[Finding], executor_calls: int) -> Point:
    failing, accepted = _counts(findings, 2)
    kinds = collections.Counter(f.rule.name for f in failing)
    if failing:
        summary = f"{len(failing)} finding(s): " + ", ".join(
            f"{n} {k}" for k, n in sorted(kinds.items())
        )
    else:
        summary = (
            f"{executor_calls} executor call(s) checked, none inside an outer transaction; no "
            "db.session, Session or commit/rollback in migration code"
        )
    evidence = [
        f"{executor_calls} call(s) to the retry executor / m.execute checked",
        "the executor manages its own transaction per attempt",
    ]
    for finding in failing:
        evidence.append(f"❌ {finding.path}:{finding.line}: {finding.message}")
    return Point(2, _TITLES[2], not failing, summary + _accepted(accepted), tuple(evidence))


def _point_three(
    findings: list[Finding], entries: list[DmlEntry], statements: int, ddl: int
) -> Point:
    failing, accepted = _counts(findings, 3)
    counts: collections.Counter[str] = collections.Counter(
        e.category for e in entries if e.category
    )
    unsafe = sum(1 for e in entries if not e.safe and e.accepted is None)
    waived = sum(1 for e in entries if not e.safe and e.accepted is not None)
    parts = [f"{counts[c]} {c}" for c in CATEGORIES if counts[c]]
    if unsafe:
        parts.append(f"{unsafe} unsafe")
    if waived:
        parts.append(f"{waived} unsafe but accepted with a reason")
    detail = f" ({', '.join(parts)})" if parts else ""
    summary = f"{statements} SQL statement(s): {ddl} DDL, {len(entries)} DML{detail}"
    others = collections.Counter(f.rule.name for f in failing if f.rule is not dml.UNSAFE_DML)
    if others:
        summary += "; " + ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
    evidence = [
        f"{len(entries)} DML operation(s) found, {len(entries) - unsafe - waived} in a safe "
        f"category, {waived} accepted with a reason"
    ]
    return Point(3, _TITLES[3], not failing, summary + _accepted(accepted), tuple(evidence))
