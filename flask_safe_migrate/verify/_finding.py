"""The values a verification produces: rules, findings, DML entries, points.

All frozen: a :class:`Report` is computed once and then only rendered, and
frozen values can be compared in tests without caring how they were built.
"""

from __future__ import annotations

import dataclasses
import enum
import typing as t


class Severity(enum.StrEnum):
    """How bad a finding is; only unsuppressed ``error`` findings fail the command."""

    ERROR = "error"
    WARNING = "warning"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What a rule is called, which point it proves, and how to fix what it finds.

    ``name`` is the id used everywhere (JSON ``rule``, SARIF ``ruleId``,
    suppression comments); ``code`` is a short alias accepted in suppressions.
    ``point`` is 1, 2 or 3 for the three critical points, 0 for lock safety
    and for problems with the input itself. ``doc`` is the rule module's
    docstring (what it does, why it is bad, the safe alternative).
    """

    code: str
    name: str
    point: int
    severity: Severity
    summary: str
    fix: str
    doc: str = dataclasses.field(default="", repr=False, compare=False)


def rule_doc(name: str, code: str, *, what: str, why: str, instead: str) -> str:
    """A rule's documentation in the shape every rule has: what, why, and the safe alternative.

    The lock-safety rules are one module each, whose docstring has this
    shape; rules that share a module (points 1-3, input) build it with this.
    """
    return (
        f"{name} ({code})\n\n## What it does\n{what.strip()}\n\n## Why is this bad?\n"
        f"{why.strip()}\n\n## Use instead\n{instead.strip()}\n"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One problem at one place.

    ``line`` is 1-based: the line of the SQL statement's first token, or of
    the Python call or construct. ``snippet`` is what is at that place, on
    one line. ``suppressed`` holds the reason of a ``safe-migrate: allow``
    comment that accepts the finding, or ``None``.
    """

    rule: Rule
    path: str
    line: int
    message: str
    fix: str
    snippet: str = ""
    severity: Severity | None = None
    suppressed: str | None = None

    @property
    def level(self) -> Severity:
        """The finding's severity: its own, else its rule's."""
        return self.severity if self.severity is not None else self.rule.severity

    @property
    def fails(self) -> bool:
        """Whether this finding makes the verification fail (exit 1)."""
        return self.suppressed is None and self.level is Severity.ERROR

    def document(self) -> dict[str, t.Any]:
        """The finding as the JSON contract spells it."""
        doc: dict[str, t.Any] = {
            "point": self.rule.point,
            "rule": self.rule.name,
            "severity": self.level.value,
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }
        if self.suppressed is not None:
            doc["suppressed"] = True
            doc["reason"] = self.suppressed
        return doc


Category = t.Literal["dedup", "seed", "backfill", "orphan_cleanup"]

#: The safe DML categories, in report order, with what they mean.
CATEGORIES: dict[str, str] = {
    "dedup": "deduplication before a unique index or constraint",
    "seed": "small seed data (literal rows)",
    "backfill": "documented, idempotent one-time backfill",
    "orphan_cleanup": "orphan cleanup before a foreign key",
}


@dataclasses.dataclass(frozen=True, slots=True)
class DmlEntry:
    """One data-changing statement and the verdict on it, with the evidence.

    ``accepted`` is the reason of an allow comment that accepts an unsafe
    statement (it stays unsafe, and is shown as accepted rather than failed).
    """

    path: str
    line: int
    statement: str
    category: Category | None
    reason: str
    accepted: str | None = None

    @property
    def safe(self) -> bool:
        """A DML statement is safe exactly when it falls in a safe category."""
        return self.category is not None

    def document(self) -> dict[str, t.Any]:
        """The entry as the JSON contract spells it."""
        return {
            "path": self.path,
            "line": self.line,
            "statement": self.statement,
            "category": self.category,
            "safe": self.safe,
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """The verdict on one critical point: ``summary`` for JSON, ``evidence`` for people."""

    id: int
    title: str
    ok: bool
    summary: str
    evidence: tuple[str, ...] = ()

    def document(self) -> dict[str, t.Any]:
        """The point as the JSON contract spells it."""
        return {"id": self.id, "ok": self.ok, "summary": self.summary}


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Everything one verification found, ready to render."""

    points: tuple[Point, ...]
    findings: tuple[Finding, ...]
    dml: tuple[DmlEntry, ...]
    statements: int
    ddl: int
    files: int

    @property
    def ok(self) -> bool:
        """No unsuppressed error finding: the command exits 0."""
        return not any(finding.fails for finding in self.findings)

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1
