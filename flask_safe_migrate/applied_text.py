"""What an edited, already-applied migration file said when it was applied.

The ledger keeps only a checksum of each applied file, never its text, so
``repair`` cannot show what changed from the database alone. Most projects
keep their migrations in git, though: the commit of the file whose content
has the ledger's checksum holds the applied text. This module looks for it
(the file's recent history, newest first) and returns it, or ``None`` when
git is absent, the file is not in a repository, or no recent commit matches;
``repair`` then says so instead of guessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import subprocess

from .loader import checksum_bytes

#: How many commits of the file's history are searched.
MAX_COMMITS = 50


@dataclasses.dataclass(frozen=True, slots=True)
class AppliedText:
    """The applied content of a file and the commit it was found in."""

    commit: str
    text: str


def _git(directory: str, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", "-C", directory, *args], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def find_applied_text(path: str, checksum: str) -> AppliedText | None:
    """The version of ``path`` in its git history whose checksum is ``checksum``."""
    directory, name = os.path.split(os.path.abspath(path))
    log = _git(directory, "log", f"-n{MAX_COMMITS}", "--format=%H", "--", name)
    if not log:
        return None
    for commit in log.decode().split():
        data = _git(directory, "show", f"{commit}:./{name}")
        if data is None:
            continue
        if checksum_bytes(data) == checksum:  # the ledger's checksum, from the loader
            return AppliedText(commit[:12], data.decode("utf-8", errors="replace"))
    return None


def unified_diff(applied: AppliedText, path: str, *, limit: int = 60) -> list[str]:
    """The change from the applied text to the file now, at most ``limit`` lines."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        current = handle.read()
    name = os.path.basename(path)
    lines = list(
        difflib.unified_diff(
            applied.text.splitlines(),
            current.splitlines(),
            fromfile=f"{name} (applied, git {applied.commit})",
            tofile=f"{name} (now)",
            lineterm="",
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... {len(lines) - limit} more diff lines"]
    return lines
