"""`plan | head`, `history | head`: a reader that goes away ends the command quietly.

Real processes and a real pipe: the read end is closed before the command
writes, so its first write fails with EPIPE (BrokenPipeError in Python).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import make_app
from tests.helpers import write_migrations

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {f"{n:04d}_t{n}.sql": f"CREATE TABLE t{n} (a integer);\n" for n in range(1, 30)}


def run_with_closed_stdout(args: list[str], cwd: str, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    stderr = proc.stderr.read()
    return proc.wait(timeout=60), stderr


def test_plan_and_history_into_a_closed_pipe(pg_url, tmp_path) -> None:
    first = dict(list(FILES.items())[:3])
    directory = write_migrations(tmp_path / "m", first)
    app, ext = make_app(pg_url, directory)
    ext.upgrade(app)  # history has rows, and plan has 26 migrations to show
    write_migrations(directory, FILES)
    (tmp_path / "pipe_app.py").write_text(
        f"from tests.helpers import make_app\napp, _ = make_app({pg_url!r}, {directory!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)])}
    flask = [sys.executable, "-m", "flask", "--app", "pipe_app", "safe-migrate"]
    for command in (["plan"], ["history"], ["history", "--json"]):
        code, stderr = run_with_closed_stdout([*flask, *command], str(tmp_path), env)
        assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, (command, stderr)
        assert code == 1, (command, code, stderr)
    dry = [sys.executable, "-m", "flask_safe_migrate", "run", "--dry-run"]
    code, stderr = run_with_closed_stdout(
        [*dry, "--url", pg_url, "--directory", directory], str(tmp_path), env
    )
    assert code == 1 and "Traceback" not in stderr, stderr
