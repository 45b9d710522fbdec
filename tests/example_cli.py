"""The example app's real command line, run as a user would, in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys

#: The repository root, where ``example_app`` is importable.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Variables that configure the example app; a test sets the ones it means.
_APP_SETTINGS = ("CRM_", "FLASK_", "SAFE_MIGRATE_")


def example_app_env(**env: str) -> dict[str, str]:
    """This process's environment without the app's settings or ``DATABASE_URL``, plus ``env``."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith(_APP_SETTINGS)
    }
    return {**clean, **env}


def example_app_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``flask --app example_app ARGS`` (the installed console script), with :func:`example_app_env`."""
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    return subprocess.run(
        [flask, "--app", "example_app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=example_app_env(**env),
        timeout=120,
    )
