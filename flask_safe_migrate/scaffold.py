"""``init`` and ``new``: create the migrations directory and the next migration file.

Numbering is ``highest existing version + 1`` (never ``count + 1``), so a
deleted or squashed file leaves a gap that stays a gap instead of being
reused under a new meaning. Two branches that both created the same number
meet at merge time as two files with one version: :func:`~.loader.discover`
refuses that with a message naming both files, and ``new`` reports it
before writing anything. Files are created with ``O_EXCL`` so two ``new``
calls racing in one checkout never overwrite each other.
"""

from __future__ import annotations

import os
import pathlib
import re

from .errors import BadInputError
from .loader import MIGRATION_NAME
from .loader import discover

#: Width of the version prefix for a directory that has no migrations yet.
DEFAULT_WIDTH = 4

README_STUB = """\
# Migrations (flask-safe-migrate)

Files named `NNNN_name.sql` or `NNNN_name.py`, applied in version order,
each exactly once, by `flask safe-migrate run`.

- Create the next one with `flask safe-migrate new <name>` (`--py` for Python,
  `--autogenerate` to diff the models against the database).
- Never edit a file once it is applied somewhere: add a new one.
- `-- safe-migrate: no-transaction` in the header runs the statements one by one
  outside a transaction (for `CREATE INDEX CONCURRENTLY`); they must be idempotent.
- `-- safe-migrate: down` on its own line starts the part `rollback` runs.
"""

SQL_TEMPLATE = """\
-- {title}
-- Header directives (optional): -- safe-migrate: lock-timeout=2s
--                               -- safe-migrate: no-transaction

-- Write the upgrade SQL here.


-- safe-migrate: down
-- Write the SQL that reverts it here (used by `flask safe-migrate rollback`),
-- or delete the line above if it cannot be reverted.
"""

PY_TEMPLATE = '''\
"""{title}

``m.execute(sql, params)`` and ``m.scalar(sql, params)`` run SQLAlchemy ``text()``
SQL in this migration's transaction. Never use ``db.session`` or the app's models
here: they run on another connection and describe the final schema, not this step.
"""

# transaction = False          # run outside a transaction (idempotent statements only)
# lock_timeout = "2s"
# statement_timeout = "0"


def upgrade(m):
    pass


# Uncomment to make this migration revertible by `flask safe-migrate rollback`.
# Without a downgrade, rollback refuses up front, before anything is reverted.
#
# def downgrade(m):
#     m.execute("...")
'''


def init_directory(directory: str | os.PathLike[str]) -> list[str]:
    """Create ``directory`` and its README stub; return what was created (empty: nothing).

    Idempotent and never overwrites: an existing README (or any other file)
    is left alone, so running it in an existing project is harmless.

    :raises MigrationSourceError: ``directory`` is an Alembic / Flask-Migrate
        one (the default ``migrations`` often is): the same error ``new`` and
        ``status`` give, rather than "nothing to do" and a failure later.
    """
    from .loader import _refuse_alembic

    root = pathlib.Path(directory)
    created: list[str] = []
    if root.exists() and not root.is_dir():
        raise BadInputError(f"{root}: exists and is not a directory")
    if root.is_dir():
        with os.scandir(root) as entries:
            _refuse_alembic(root, list(entries))
    if not root.exists():
        root.mkdir(parents=True)
        created.append(str(root) + os.sep)
    readme = root / "README.md"
    if not any(p.name[:6].upper() == "README" for p in root.iterdir()):
        try:
            with open(readme, "x", encoding="utf-8") as handle:
                handle.write(README_STUB)
        except FileExistsError:  # created meanwhile: still never overwritten
            pass
        else:
            created.append(str(readme))
    return created


def slugify(raw: str) -> str:
    """A file-name slug: lower case, runs of other characters turned into ``_``.

    :raises BadInputError: nothing usable is left (``"--"``, ``"!!!"``).
    """
    slug = re.sub(r"[^a-z0-9]+", "_", raw.strip().lower()).strip("_")
    if not slug:
        raise BadInputError(
            f"{raw!r}: not a usable migration name; use letters, digits and '_' "
            "(e.g. add_users_email_index)"
        )
    return slug


def next_version(directory: str | os.PathLike[str]) -> str:
    """The version of the next file: highest existing + 1, zero-padded like the others.

    :raises MigrationSourceError: the directory is malformed, including two
        files with the same version (a clash between branches).
    """
    migrations = discover(directory)
    if not migrations:
        return "1".zfill(DEFAULT_WIDTH)
    highest = migrations[-1]
    width = max(len(m.version) for m in migrations)
    return str(highest.number + 1).zfill(width)


def new_migration(
    directory: str | os.PathLike[str],
    slug: str,
    *,
    kind: str = "sql",
    body: str | None = None,
    version: str | None = None,
) -> pathlib.Path:
    """Write the next migration file and return its path.

    :param body: the file's text; default: a commented template.
    :param version: force a version (the autogenerator writes two files in a row).
    :raises BadInputError: bad slug, or the file appeared meanwhile.
    :raises MigrationSourceError: the directory is malformed (e.g. a version clash).
    """
    name = slugify(slug)
    number = version or next_version(directory)
    filename = f"{number}_{name}.{kind}"
    if MIGRATION_NAME.match(filename) is None:  # pragma: no cover - slugify guarantees it
        raise BadInputError(f"{filename!r} is not a valid migration file name")
    path = pathlib.Path(directory) / filename
    title = name.replace("_", " ").capitalize()
    text = body
    if text is None:
        text = (PY_TEMPLATE if kind == "py" else SQL_TEMPLATE).format(title=title)
    try:
        with open(path, "x", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except FileExistsError:
        raise BadInputError(
            f"{path}: already exists (created by someone else meanwhile?); run `new` again"
        ) from None
    except FileNotFoundError:
        raise BadInputError(
            f"{directory}: the migrations directory does not exist; run "
            "`flask safe-migrate init` first"
        ) from None
    return path
