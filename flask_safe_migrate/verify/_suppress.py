"""``safe-migrate: allow`` comments: accept a finding, and say why.

SQL: ``-- safe-migrate: allow <rule>[, <rule>...] -- <reason>``. Python:
``# safe-migrate: allow[<rule>, ...] <reason>``. The comment goes at the end
of the statement's (or call's) first line, or on a comment line directly
above it (no blank line in between). A rule is named by its id or code.

The reason is required and is printed in every report, so that a reviewer
can audit each waiver; an allow comment without one, or naming a rule that
does not exist, accepts nothing and is itself a finding. (``allow
non-idempotent`` belongs to the runner; see :mod:`flask_safe_migrate.sqlsplit`.)
"""

from __future__ import annotations

import dataclasses
import re

SQL_FORM = "-- safe-migrate: allow <rule> -- <reason>"
PYTHON_FORM = "# safe-migrate: allow[<rule>] <reason>"

_SQL = re.compile(
    r"--\s*safe-migrate\s*:\s*allow\s+(?!non-idempotent\b)(?P<rules>[\w\s,-]*?)"
    r"\s*(?:--\s*(?P<reason>.*?))?\s*$"
)
_PY = re.compile(r"#\s*safe-migrate\s*:\s*allow\s*\[(?P<rules>[^\]]*)\]\s*(?P<reason>.*?)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Allow:
    """One allow comment: the line it is on, the rules it names, its reason."""

    line: int
    rules: tuple[str, ...]
    reason: str


def scan(text: str, *, python: bool) -> list[Allow]:
    """Every allow comment in ``text`` (1-based lines), well-formed or not."""
    marker = "#" if python else "--"
    if "safe-migrate" not in text:
        return []
    pattern = _PY if python else _SQL
    found = []
    for number, content in enumerate(text.split("\n"), start=1):
        if "safe-migrate" not in content or marker not in content:
            continue
        match = pattern.search(content)
        if match is None:
            continue
        rules = tuple(r.strip() for r in match["rules"].split(",") if r.strip())
        found.append(Allow(number, rules, (match["reason"] or "").strip()))
    return found


def attach(text: str, allows: list[Allow], *, python: bool) -> dict[int, list[Allow]]:
    """Map each code line to the allow comments that apply to it.

    A comment applies to its own line, and, when it sits on a comment-only
    line, to the first line below the run of comment lines it is part of.
    """
    if not allows:
        return {}
    marker = "#" if python else "--"
    lines = text.split("\n")
    result: dict[int, list[Allow]] = {}
    for allow in allows:
        result.setdefault(allow.line, []).append(allow)
        if lines[allow.line - 1].lstrip().startswith(marker):
            below = allow.line + 1
            while below <= len(lines) and lines[below - 1].lstrip().startswith(marker):
                below += 1
            if below <= len(lines):
                result.setdefault(below, []).append(allow)
    return result
