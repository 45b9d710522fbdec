"""Generate a realistic migration history of any length (shared by the benchmarks)."""

from __future__ import annotations

import os


def generate(directory: str, count: int = 1000) -> str:
    """Write ``count`` SQL migrations: tables, columns, indexes, seed rows, backfills."""
    os.makedirs(directory, exist_ok=True)
    tables = max(1, count // 10)
    number = 0
    for table in range(tables):
        steps = [
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
        ]
        for step in steps:
            number += 1
            if number > count:
                return directory
            path = os.path.join(directory, f"{number:04d}_step_{number}.sql")
            with open(path, "w") as fh:
                fh.write(step)
    return directory
