"""Run server binaries as an unprivileged user, since initdb/pg_ctl/pgbouncer refuse root."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import typing as t


def as_service_user(argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``runuser -u postgres --`` when running as root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", service_user(), "--", *argv]
    return argv


def service_user() -> str:
    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("no 'postgres' system user to run server binaries as")


def give_to_service_user(path: str) -> None:
    """Hand a directory tree to the service user (only needed as root)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(service_user())
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(argv: list[str], **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def which_postgres_bin(name: str) -> str | None:
    """Find a Postgres server binary (Debian keeps them outside PATH)."""
    found = shutil.which(name)
    if found:
        return found
    base = "/usr/lib/postgresql"
    if os.path.isdir(base):
        for version in sorted(
            os.listdir(base), key=lambda v: int(v) if v.isdigit() else 0, reverse=True
        ):
            candidate = os.path.join(base, version, "bin", name)
            if os.path.exists(candidate):
                return candidate
    return None
