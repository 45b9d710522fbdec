"""Renderers: a :class:`~._finding.Report` as text, JSON or SARIF 2.1.0.

Pure functions, no click: the command decides where the text goes and
whether it may carry colour (only on a terminal).
"""

from __future__ import annotations

import collections
import textwrap
import typing as t
import unicodedata

from ._finding import CATEGORIES
from ._finding import Finding
from ._finding import Report
from ._finding import Rule
from ._finding import Severity

WIDTH = 80
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def _width(text: str) -> int:
    """Terminal columns of ``text`` (emoji and East Asian wide characters take two)."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or char == "\ufe0f":
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


class _Text:
    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, text: str, *styles: str) -> str:
        if not self.colour or not styles:
            return text
        codes = ";".join(_COLOURS[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def banner(self, *rows: str, style: str = "bold") -> None:
        inner = WIDTH - 2
        self.lines.append("╔" + "═" * inner + "╗")
        for row in rows:
            pad = inner - _width(row)
            left = pad // 2
            self.lines.append("║" + " " * left + self.paint(row, style) + " " * (pad - left) + "║")
        self.lines.append("╚" + "═" * inner + "╝")

    def box(self, title: str, body: list[tuple[str, tuple[str, ...]]]) -> None:
        inner = WIDTH - 2
        head = f"─ {title} "
        self.lines.append("┌" + head + "─" * max(0, inner - _width(head)) + "┐")
        self.row("", ())
        for text, styles in body:
            indent = len(text) - len(text.lstrip(" "))
            bullet = 2 if text.lstrip().startswith(("• ", "❌ ", "✅ ", "☑ ")) else 0
            wrapped = textwrap.wrap(
                text.strip(),
                width=inner - 3 - indent,
                subsequent_indent=" " * bullet,
                break_long_words=True,
                break_on_hyphens=False,
            ) or [""]
            for piece in wrapped:
                self.row(" " * indent + piece, styles)
        self.row("", ())
        self.lines.append("└" + "─" * inner + "┘")

    def row(self, text: str, styles: tuple[str, ...]) -> None:
        inner = WIDTH - 2
        pad = max(0, inner - 2 - _width(text))
        self.lines.append("│  " + self.paint(text, *styles) + " " * max(0, pad - 1) + " │")


def render_text(report: Report, *, colour: bool = False) -> str:
    """The terminal report, in the spirit of the hand-written one it replaces."""
    out = _Text(colour)
    passed = all(point.ok for point in report.points)
    failed = sum(1 for point in report.points if not point.ok)
    verdict = "All ✅" if passed else f"{failed} ❌"
    out.banner(
        "MIGRATION STABILITY VERIFICATION",
        f"3 Critical Points - {verdict}",
        style="green" if passed else "red",
    )
    errors = [f for f in report.findings if f.fails]
    warnings = [f for f in report.findings if f.suppressed is None and f.level is Severity.WARNING]
    accepted = [f for f in report.findings if f.suppressed is not None]
    out.lines.append(
        f"  {report.files} file(s), {report.statements} SQL statement(s): {report.ddl} DDL, "
        f"{len(report.dml)} DML"
    )
    out.lines.append("")
    for point in report.points:
        status = "✅ VERIFIED" if point.ok else "❌ FAILED"
        body: list[tuple[str, tuple[str, ...]]] = [
            (f"Status: {status}", ("green",) if point.ok else ("red", "bold")),
            ("", ()),
        ]
        if point.id == 3:
            body.extend(_dml_body(report))
        else:
            for line in point.evidence:
                styles: tuple[str, ...] = ("red",) if line.startswith("❌") else ()
                text = line if line.startswith(("  ", "❌")) else f"• {line}"
                body.append((text, styles))
        out.box(f"Point {point.id}: {point.title}", body)
        out.lines.append("")
    lock = [f for f in report.findings if f.rule.point == 0]
    lock_errors = sum(1 for f in lock if f.fails)
    lock_warnings = sum(1 for f in lock if f.suppressed is None and f.level is Severity.WARNING)
    lock_body: list[tuple[str, tuple[str, ...]]] = [
        (
            f"Status: {'✅' if not lock_errors else '❌'} {lock_errors} error(s), "
            f"{lock_warnings} warning(s), {sum(1 for f in lock if f.suppressed)} accepted",
            ("green",) if not lock_errors else ("red", "bold"),
        ),
        ("", ()),
        ("• the runner sets lock_timeout on every migration (not checked here)", ()),
    ]
    for rule, count in sorted(
        collections.Counter(f.rule for f in lock).items(), key=lambda x: x[0].code
    ):
        lock_body.append((f"• {rule.name} ({rule.code}): {count}", ()))
    out.box("Lock safety (point 0)", lock_body)
    out.lines.append("")
    if report.findings:
        out.lines.append(out.paint("FINDINGS", "bold"))
        out.lines.append("")
        for finding in report.findings:
            out.lines.extend(_finding_lines(out, finding))
    summary = f"{len(errors)} error(s), {len(warnings)} warning(s), {len(accepted)} accepted"
    if report.ok:
        out.lines.append(out.paint(f"✅ Verified: {summary}.", "green", "bold"))
    else:
        out.lines.append(out.paint(f"❌ Not verified: {summary}.", "red", "bold"))
    return "\n".join(out.lines)


def _dml_body(report: Report) -> list[tuple[str, tuple[str, ...]]]:
    body: list[tuple[str, tuple[str, ...]]] = []
    unsafe = [e for e in report.dml if not e.safe and e.accepted is None]
    accepted = [e for e in report.dml if not e.safe and e.accepted is not None]
    body.append((f"Found: {len(report.dml)} DML operation(s)", ()))
    if not accepted:
        verdict = "All SAFE" if not unsafe else f"{len(unsafe)} UNSAFE"
    elif not unsafe:
        verdict = f"no unsafe DML left; {len(accepted)} accepted with a reason"
    else:
        verdict = f"{len(unsafe)} UNSAFE; {len(accepted)} more accepted with a reason"
    body.append((f"Analysis: {verdict}", ("green",) if not unsafe else ("red", "bold")))
    body.append(("", ()))
    number = 0
    for category, meaning in CATEGORIES.items():
        entries = [e for e in report.dml if e.category == category]
        if not entries:
            continue
        number += 1
        body.append((f"{number}. {meaning}: {len(entries)}", ("bold",)))
        for entry in entries:
            body.append((f"   • {entry.path}:{entry.line}", ()))
            body.append((f"       {entry.reason}", ("dim",)))
    if accepted:
        body.append((f"Accepted with a reason: {len(accepted)}", ("bold",)))
        for entry in accepted:
            body.append((f"   ☑ {entry.path}:{entry.line}", ()))
            body.append((f"       accepted: {entry.accepted}", ("green",)))
    if unsafe:
        body.append((f"Unsafe: {len(unsafe)}", ("red", "bold")))
        for entry in unsafe:
            body.append((f"   ❌ {entry.path}:{entry.line}", ("red",)))
            body.append((f"       {entry.reason}", ()))
    return body


def _finding_lines(out: _Text, finding: Finding) -> list[str]:
    styles: tuple[str, ...]
    if finding.suppressed is not None:
        mark, styles = "☑", ("dim",)
    elif finding.level is Severity.ERROR:
        mark, styles = "❌", ("red", "bold")
    else:
        mark, styles = "⚠️", ("yellow", "bold")
    head = (
        f"{mark} {finding.path}:{finding.line}  {finding.rule.name} ({finding.rule.code}, "
        f"{finding.level.value}, point {finding.rule.point})"
    )
    lines = [out.paint(head, *styles)]
    lines.extend(
        textwrap.wrap(finding.message, WIDTH - 4, initial_indent="    ", subsequent_indent="    ")
    )
    if finding.snippet:
        lines.append(out.paint(f"    > {finding.snippet}", "dim"))
    lines.extend(
        textwrap.wrap(
            f"fix: {finding.fix}", WIDTH - 4, initial_indent="    ", subsequent_indent="         "
        )
    )
    if finding.suppressed is not None:
        lines.append(out.paint(f"    accepted: {finding.suppressed}", "green"))
    lines.append("")
    return lines


def document(report: Report) -> dict[str, t.Any]:
    """The JSON document (``schema_version`` is added by the CLI)."""
    return {
        "points": [point.document() for point in report.points],
        "findings": [finding.document() for finding in report.findings],
        "dml": [entry.document() for entry in report.dml],
    }


def sarif(report: Report, rules: t.Sequence[Rule], *, version: str) -> dict[str, t.Any]:
    """SARIF 2.1.0 for GitHub code scanning: every rule, every finding (waivers as suppressions)."""
    index = {rule.name: number for number, rule in enumerate(rules)}
    descriptors = []
    for rule in rules:
        descriptors.append(
            {
                "id": rule.name,
                "name": "".join(part.capitalize() for part in rule.name.split("-")),
                "shortDescription": {"text": rule.summary},
                "fullDescription": {"text": rule.summary + ". Fix: " + rule.fix},
                "help": {
                    "text": rule.doc.strip() or rule.fix,
                    "markdown": rule.doc.strip() or rule.fix,
                },
                "defaultConfiguration": {"level": rule.severity.value},
                "properties": {"code": rule.code, "point": rule.point, "tags": ["migrations"]},
            }
        )
    results = []
    seen: collections.Counter[str] = collections.Counter()
    for finding in report.findings:
        # line-independent (alerts survive edits above), yet distinct for two
        # identical statements of one file: the n-th occurrence is numbered
        key = f"{finding.rule.code}:{finding.path}:{' '.join(finding.snippet.split())[:80]}"
        seen[key] += 1
        result: dict[str, t.Any] = {
            "ruleId": finding.rule.name,
            "ruleIndex": index[finding.rule.name],
            "level": finding.level.value,
            "message": {"text": f"{finding.message}. Fix: {finding.fix}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": finding.path},
                        "region": {"startLine": finding.line},
                    }
                }
            ],
            "partialFingerprints": {"safeMigrate/v1": f"{key}:{seen[key]}"},
        }
        if finding.suppressed is not None:
            result["suppressions"] = [{"kind": "inSource", "justification": finding.suppressed}]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "flask-safe-migrate",
                        "semanticVersion": version,
                        "rules": descriptors,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
