"""A self-signed certificate for the TLS cluster and PgBouncer (made with the openssl CLI)."""

from __future__ import annotations

import os
import shutil

from .procs import run


def make_self_signed(directory: str) -> tuple[str, str]:
    """Write ``server.crt``/``server.key`` for CN=localhost into ``directory``."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl")
    cert = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ]
    )
    os.chmod(key, 0o600)
    return cert, key
