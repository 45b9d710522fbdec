"""Generate a realistic migration history of any length (shared by the benchmarks).

:func:`generate` writes it as flask-safe-migrate SQL files; :func:`generate_alembic`
writes the same SQL, statement for statement, as a Flask-Migrate (Alembic)
history: ``flask db init`` layout plus one revision file per migration, chained
by ``down_revision``, each doing ``op.execute(<the same SQL>)``.
"""

from __future__ import annotations

import os
import typing as t

#: What each of a table's 10 steps does, in order (the report describes the history with it).
STEP_KINDS = (
    "create table",
    "add column",
    "seed insert (3 rows)",
    "index",
    "backfill update",
    "add column",
    "comment",
    "column default",
    "index",
    "check constraint (NOT VALID)",
)


def census(count: int) -> dict[str, int]:
    """How many statements of each kind a ``count``-migration history holds."""
    kinds: dict[str, int] = {}
    for _, sql in steps(count):
        body = " ".join(line for line in sql.splitlines() if not line.startswith("--"))
        words = body.split()
        key = " ".join(words[:2]) if words[0] in ("CREATE", "ALTER") else words[0]
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def steps(count: int = 1000) -> t.Iterator[tuple[int, str]]:
    """``(number, sql)`` for each of ``count`` migrations: 10 steps per table."""
    tables = max(1, (count + 9) // 10)
    number = 0
    for table in range(tables):
        for step in (
            f"CREATE TABLE t{table} (id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());\n",
            f"ALTER TABLE t{table} ADD COLUMN score integer;\n",
            f"INSERT INTO t{table} (name, score) VALUES ('a', 1), ('b', 2), ('c', 3);\n",
            f"CREATE INDEX t{table}_name_idx ON t{table} (name);\n",
            f"-- one-time backfill\nUPDATE t{table} SET score = score * 10 WHERE score < 10;\n",
            f"ALTER TABLE t{table} ADD COLUMN note text;\n",
            f"COMMENT ON TABLE t{table} IS 'generated table {table}';\n",
            f"ALTER TABLE t{table} ALTER COLUMN note SET DEFAULT '';\n",
            f"CREATE INDEX t{table}_score_idx ON t{table} (score);\n",
            f"ALTER TABLE t{table} ADD CONSTRAINT t{table}_score_positive CHECK (score >= 0) NOT VALID;\n",
        ):
            number += 1
            if number > count:
                return
            yield number, step


def generate(directory: str, count: int = 1000) -> str:
    """Write ``count`` SQL migrations: tables, columns, indexes, seed rows, backfills."""
    os.makedirs(directory, exist_ok=True)
    for number, sql in steps(count):
        with open(os.path.join(directory, f"{number:04d}_step_{number}.sql"), "w") as fh:
            fh.write(sql)
    return directory


ALEMBIC_REVISION = '''"""step {number}

Revision ID: {revision}
Revises: {down}
"""
from alembic import op

revision = {revision!r}
down_revision = {down_value}
branch_labels = None
depends_on = None


def upgrade():
    op.execute({sql!r})


def downgrade():
    pass
'''


def generate_alembic(versions: str, count: int = 1000) -> str:
    """Write the same ``count`` migrations as chained Alembic revisions into ``versions``."""
    os.makedirs(versions, exist_ok=True)
    previous: str | None = None
    for number, sql in steps(count):
        revision = f"r{number:04d}"
        with open(os.path.join(versions, f"{revision}_step_{number}.py"), "w") as fh:
            fh.write(
                ALEMBIC_REVISION.format(
                    number=number,
                    revision=revision,
                    down=previous or "",
                    down_value=repr(previous),
                    sql=sql,
                )
            )
        previous = revision
    return versions
